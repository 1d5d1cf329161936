import numpy as np
import pytest
import torch

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.errors import InputError
from ft2_core.io.audio import Audio
from ft2_core.scoring.critic import VideoSettings, smart_size, video_patches


def clip(frames=16, fps=8.0, seconds=None):
    rng = np.random.default_rng(0)
    video = (rng.random((frames, 60, 80, 3)) * 255).astype(np.uint8)
    seconds = frames / fps if seconds is None else seconds
    audio = Audio((0.2 * rng.standard_normal((1, int(16000 * seconds)))).astype(np.float32), 16000)
    return video, fps, audio


def test_scores_are_probabilities_per_dimension(tiny_critic):
    features = [tiny_critic.features(*clip()), tiny_critic.features(*clip(frames=24))]
    scores = tiny_critic.score(features, batch_size=2)
    assert len(scores) == 2 and all(set(s) == set(DIMENSION_NAMES) for s in scores)
    assert all(0 < p < 1 for s in scores for p in s.values())
    # batching does not change a clip's scores
    alone = tiny_critic.score(features[1:], batch_size=1)[0]
    assert all(abs(alone[d] - scores[1][d]) < 1e-4 for d in DIMENSION_NAMES)


def test_score_is_softmax_of_yes_no_logits_of_the_full_prompt(tiny_critic):
    features = tiny_critic.features(*clip())
    plain = []
    for dimension in DIMENSION_NAMES:  # one whole prompt per question, written out here
        ids = tiny_critic.prefix_ids(features) + tiny_critic.question_ids(tiny_critic.questions[dimension])
        with torch.no_grad():
            logits = tiny_critic.thinker(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                         **tiny_critic._media([features])).logits[0, -1]
        plain.append(torch.softmax(logits[[tiny_critic.yes_id, tiny_critic.no_id]], 0)[0])
    got = tiny_critic.score([features])[0]
    assert np.allclose([got[d] for d in DIMENSION_NAMES], torch.stack(plain).numpy(), atol=1e-5)


def test_shared_prefix_equals_one_prompt_per_question_with_padding_and_gradients(tiny_critic):
    """Clips of different lengths (so prefixes are padded) give the per-question path's logits, and the same
    gradients: training may use the shared prefix."""
    clips = [tiny_critic.features(*clip(frames=f)) for f in (16, 24, 10)]
    weight = tiny_critic.thinker.model.language_model.layers[0].self_attn.q_proj.weight
    results = []
    for path in (tiny_critic.answer_logits, tiny_critic.answer_logits_per_question):
        weight.grad = None
        logits = path(clips)
        logits.square().sum().backward()
        results.append((logits.detach(), weight.grad.clone()))
    weight.grad = None
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-5, rtol=1e-4)


def test_checkpointed_layers_give_the_same_lora_gradients(tiny_dir):
    """With layers recomputed in the backward (and so the plain per-question path), a LoRA's gradients equal those of
    training with every activation kept; the thinker's forward ran under checkpointing."""
    from ft2_core.scoring.critic import TalkingCritic
    from ft2_core.tiny import tiny_critic_dir

    critic = TalkingCritic.from_folder(tiny_critic_dir(tiny_dir.parent))
    torch.manual_seed(0)
    lora = critic.add_lora(4, 8.0)
    for parameter in lora:  # B starts at zero: give it values, so every LoRA matrix gets a gradient
        parameter.data.normal_(0, 0.05)
    clips = [critic.features(*clip(frames=f)) for f in (16, 10)]
    critic.thinker.train()
    gradients = []
    for checkpointed in (False, True):
        if checkpointed:
            critic.checkpoint_layers()
        for parameter in lora:
            parameter.grad = None
        calls = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: calls.append(1) or t, lambda t: t):
            critic.answer_logits(clips).log_softmax(-1)[:, 0].sum().backward()
        gradients.append(([p.grad.clone() for p in lora], len(calls)))
    assert critic.thinker.model.language_model.gradient_checkpointing
    for kept, recomputed in zip(gradients[0][0], gradients[1][0]):
        torch.testing.assert_close(recomputed, kept, rtol=1e-4, atol=1e-6)
    assert gradients[1][1] < gradients[0][1] / 4  # tensors saved for the backward: 50 against 374 (measured)


def test_a_quantised_base_names_what_it_needs(monkeypatch):
    """8/4-bit bases are bitsandbytes' on a CUDA GPU: without either, refused in one sentence before any weight loads."""
    from ft2_core.scoring.critic import quantization

    monkeypatch.setitem(__import__("sys").modules, "bitsandbytes", None)  # as where it is not installed

    with pytest.raises(InputError, match='runs on a CUDA GPU .bitsandbytes.; on cpu use quantize = "none"'):
        quantization("4bit", "cpu", torch.bfloat16)
    with pytest.raises(InputError, match="needs the bitsandbytes package: pip install bitsandbytes"):
        quantization("8bit", "cuda", torch.bfloat16)
    with pytest.raises(InputError, match="quantize must be one of none, 8bit, 4bit"):
        quantization("2bit", "cuda", torch.bfloat16)


def plain_patches(frames, grid_t, grid_h, grid_w):
    """Qwen2-VL's layout written out: for each merged 2x2 block (row-major) and each of its 4 patches,
    the patch's channels x 2 frames x 14 x 14 pixels."""
    rows = []
    for t in range(grid_t):
        for bh in range(grid_h // 2):
            for bw in range(grid_w // 2):
                for mh in range(2):
                    for mw in range(2):
                        y, x = (2 * bh + mh) * 14, (2 * bw + mw) * 14
                        patch = frames[2 * t:2 * t + 2, :, y:y + 14, x:x + 14]  # [2, 3, 14, 14]
                        rows.append(patch.permute(1, 0, 2, 3).reshape(-1))
    return torch.stack(rows)


def test_video_patches_follow_qwen2_vl_layout():
    frames = torch.rand(8, 56, 84, 3)
    settings = VideoSettings(sample_fps=4.0, max_pixels=56 * 84)
    patches, grid, seconds = video_patches(frames, 4.0, settings, mean=(0, 0, 0), std=(1, 1, 1))
    assert grid == (4, 4, 6) and seconds == pytest.approx(0.5)
    torch.testing.assert_close(patches, plain_patches(frames.permute(0, 3, 1, 2), *grid), atol=1e-5, rtol=0)
    assert smart_size(1080, 1920, 28, 28 * 28 * 4, 224 * 224) == (168, 280)


def test_bad_clips_are_named(tiny_critic):
    video, fps, audio = clip()
    with pytest.raises(InputError, match="no audio"):
        tiny_critic.features(video, fps, None, "mute.mp4")
    with pytest.raises(InputError, match="zero frames"):
        tiny_critic.features(video[:0], fps, audio)
    with pytest.raises(InputError, match="is the fps right"):
        tiny_critic.features(video, 30.0, audio, "fast.mp4")  # 16 frames at 30 fps = 0.53 s vs 2 s of audio


def test_a_saved_thinker_loads_with_its_video_settings_and_scores_alike(tiny_critic, tmp_path):
    from ft2_core.scoring.critic import TalkingCritic

    tiny_critic.settings, before = VideoSettings(sample_fps=6.0, max_frames=12), tiny_critic.settings
    try:
        folder = tiny_critic.save_thinker(tmp_path / "thinker")
        loaded = TalkingCritic.from_folder(folder)
        assert loaded.settings == tiny_critic.settings
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
        features = tiny_critic.features(*clip())
        assert np.allclose(list(loaded.score([features])[0].values()), list(tiny_critic.score([features])[0].values()), atol=1e-6)
    finally:
        tiny_critic.settings = before
