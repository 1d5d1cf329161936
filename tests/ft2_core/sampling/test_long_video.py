import pytest
import torch

from ft2_core.demo_inputs import demo_portrait, demo_speech
from ft2_core.errors import InputError
from ft2_core.models.audio_windows import split_windows
from ft2_core.models.conditioning import condition_video, i2v_condition
from ft2_core.models.pixel_latent import SpaceToDepthVAE
from ft2_core.sampling.long_video import fusion_weights, sample_long
from ft2_core.sampling.options import SamplerOptions, WindowOptions, sliding_windows
from ft2_core.sampling.sampler import Conditioning, initial_noise
from tests.conftest import Cancelled, cancel_on_call

CODEC = SpaceToDepthVAE(spatial_stride=1)  # z = 12: an exact codec, so known frames can be compared bit for bit


@pytest.mark.parametrize("frames, window, overlap", [(21, 9, 3), (23, 9, 3), (10, 9, 4), (100, 21, 4), (7, 9, 3)])
def test_fusion_weights_sum_to_one_and_fall_toward_inner_edges(frames, window, overlap):
    plan = sliding_windows(frames, window, overlap)
    weights = fusion_weights(plan, frames, overlap)
    total = torch.zeros(frames)
    for (start, end), weight in zip(plan, weights):
        total[start:end] += weight
        assert weight.min() > 0
    torch.testing.assert_close(total, torch.ones(frames))
    assert torch.equal(weights[0][0], torch.tensor(1.0)) and torch.equal(weights[-1][-1], torch.tensor(1.0))
    for (start, end), weight in zip(plan[1:], weights[1:]):  # an inner window's first frame weighs less than its middle
        assert weight[0] < weight[(end - start) // 2]


# ---------------------------------------------------------------- sampling with a recording model
class Recorder:
    """A stand-in DiT that records what each call sees and moves the latents a little, audio-dependent."""

    def __init__(self):
        self.calls = []

    def __call__(self, latents, condition, timestep, text, image, audio, audio_scale):
        self.calls.append({"frames": latents.shape[2], "tokens": audio.tokens[0].clone(), "lengths": audio.lengths.clone(),
                           "condition": condition[0].clone(), "latents": latents[0].clone(), "timestep": float(timestep[0])})
        return 0.1 * latents + 0.01 * audio.tokens.mean(dim=(2, 3))[:, None, :, None, None]


def index_tokens(num_tokens: int) -> torch.Tensor:
    """[1, L, 2] tokens whose value says where they are: (index + 1, 1); padding stays (0, 0)."""
    index = torch.arange(num_tokens, dtype=torch.float32) + 1
    return torch.stack([index, torch.ones(num_tokens)], dim=-1)[None]


def long_conditioning(num_frames, windows: WindowOptions, num_tokens=None, side=4):
    num_tokens = num_tokens or round(num_frames * 50 / 23)  # wav2vec2's 50 tokens/s at 23 fps
    first = windows.first_window_frames(num_frames)
    portrait = torch.rand(side, side, 3, generator=torch.Generator().manual_seed(0))
    condition = i2v_condition(CODEC.encode(condition_video(portrait, first)), first)
    text = torch.zeros(1, 512, 4)
    return Conditioning(condition, text, text, None, split_windows(index_tokens(num_tokens), num_frames))


OPTIONS = SamplerOptions(steps=3, cfg=1.0, audio_cfg=1.0, shift=3.0, seed=4)  # one guidance row per call


@pytest.mark.parametrize("method", ["sliding", "continuation"])
def test_each_frame_hears_what_one_long_window_gives_it(method):
    num_frames = 4 * 40 + 1  # 41 latent frames, windows of 9
    windows = WindowOptions(method, 33, 8)
    cond = long_conditioning(num_frames, windows)
    recorder = Recorder()
    sample_long(recorder, cond, OPTIONS, windows, num_frames, CODEC.z_dim, codec=CODEC)
    plan = windows.windows(num_frames)
    calls = recorder.calls
    num_tokens, checked = int(cond.audio.tokens[..., 0].max()), set()
    order = [w for _ in range(3) for w in plan] if method == "sliding" else [w for w in plan for _ in range(3)]
    assert len(calls) == len(order)
    for call, (start, end) in zip(calls, order):
        first = start - 1 if method == "sliding" and start > 0 else start  # sliding: the portrait slot hears the audio before
        assert call["frames"] == end - first <= 9  # never more than one window in a forward
        assert torch.equal(call["tokens"], cond.audio.tokens[0, first:end]) and torch.equal(
            call["lengths"], cond.audio.lengths[first:end]
        )
        for local in range(end - first):  # plain check: the window's real tokens are those around its frames' time
            latent = first + local
            valid = call["tokens"][local, : int(call["lengths"][local]), 0] - 1
            assert torch.equal(valid, torch.arange(valid[0], valid[0] + len(valid)))  # contiguous, in order
            if latent >= 1 and 0 < valid[0] and valid[-1] < num_tokens - 1:  # not cut by an end
                frames_time = (4 * latent - 1.5) / 23  # the middle of its four video frames, in seconds
                assert abs(float(valid.float().mean()) - frames_time * 50) <= 1.5
                checked.add(latent)
    assert len(checked) >= 35  # all but the ends


def test_single_method_runs_the_whole_video_in_one_forward():
    num_frames = 4 * 20 + 1
    windows = WindowOptions("single", 33, 8)
    recorder = Recorder()
    sample_long(recorder, long_conditioning(num_frames, windows), OPTIONS, windows, num_frames, CODEC.z_dim)
    assert [c["frames"] for c in recorder.calls] == [21] * 3


def test_later_sliding_windows_start_with_the_portrait_on_its_noisy_path():
    num_frames = 4 * 20 + 1
    windows = WindowOptions("sliding", 33, 8)
    cond = long_conditioning(num_frames, windows)
    recorder = Recorder()
    sample_long(recorder, cond, OPTIONS, windows, num_frames, CODEC.z_dim)
    assert all(torch.equal(c["condition"], cond.condition[0]) for c in recorder.calls)  # the same I2V condition everywhere
    portrait = cond.condition[0, 4:, 0]
    noise = initial_noise((1, CODEC.z_dim, 21, 4, 4), OPTIONS.seed)[0, :, 0]
    plan = windows.windows(num_frames)
    later = [c for step in range(3) for c, (start, _) in zip(recorder.calls[step * len(plan) :], plan) if start > 0]
    assert len(later) == 3 * (len(plan) - 1)
    for call in later:
        sigma = call["timestep"] / 1000
        torch.testing.assert_close(call["latents"][:, 0], (1 - sigma) * portrait + sigma * noise, rtol=0, atol=1e-5)


class SpyCodec:
    """The exact pixel codec, recording what continuation decodes and encodes."""

    def __init__(self):
        self.decoded, self.encoded = [], []

    def decode(self, latents):
        self.decoded.append(CODEC.decode(latents))
        return self.decoded[-1]

    def encode(self, video):
        self.encoded.append(video)
        return CODEC.encode(video)


@pytest.mark.parametrize("overlap_frames", [4, 12])
def test_continuation_reproduces_the_known_frames_it_was_given(overlap_frames):
    num_frames = 4 * 30 + 1
    windows = WindowOptions("continuation", 33, overlap_frames)
    spy = SpyCodec()
    latents = sample_long(
        Recorder(), long_conditioning(num_frames, windows), OPTIONS, windows, num_frames, CODEC.z_dim, codec=spy
    )
    assert latents.shape[2] == 31  # the whole timeline, each latent frame once
    tail = overlap_frames - 3  # the frames of the last overlap_frames / 4 latents
    plan = windows.windows(num_frames)
    assert len(spy.decoded) == len(plan) - 1  # every window but the last hands its end on
    for before, after in zip(spy.decoded, spy.decoded[1:]):
        torch.testing.assert_close(after[:tail], before[-tail:], rtol=0, atol=1e-6)  # the next window starts exactly there
    video = CODEC.decode(latents)
    for (start, _), handed in zip(plan[1:], spy.decoded):  # and the finished video holds those frames where they belong
        torch.testing.assert_close(video[4 * start : 4 * start + tail], handed[-tail:], rtol=0, atol=1e-6)


def test_continuation_without_a_codec_is_refused():
    windows = WindowOptions("continuation", 33, 8)
    with pytest.raises(InputError, match="continuation needs a VAE"):
        sample_long(Recorder(), long_conditioning(81, windows), OPTIONS, windows, 81, CODEC.z_dim)


def test_progress_counts_windows_times_steps_and_cancel_works():
    num_frames = 4 * 20 + 1
    windows = WindowOptions("sliding", 33, 8)
    seen = []
    sample_long(
        Recorder(),
        long_conditioning(num_frames, windows),
        OPTIONS,
        windows,
        num_frames,
        CODEC.z_dim,
        on_step=lambda info: seen.append((info.step, info.total)),
    )
    count = len(windows.windows(num_frames)) * 3
    assert seen == [(i, count) for i in range(1, count + 1)]

    interrupt, _ = cancel_on_call(5)
    with pytest.raises(Cancelled):
        sample_long(
            Recorder(),
            long_conditioning(num_frames, windows),
            OPTIONS,
            windows,
            num_frames,
            CODEC.z_dim,
            check_interrupt=interrupt,
        )


def test_wrong_condition_length_is_named():
    windows = WindowOptions("sliding", 33, 8)
    cond = long_conditioning(81, WindowOptions("single"))
    with pytest.raises(InputError, match="the first window needs 9"):
        sample_long(Recorder(), cond, OPTIONS, windows, 81, CODEC.z_dim)


# ---------------------------------------------------------------- the real pipeline (tiny model)
@pytest.mark.parametrize("method", ["sliding", "continuation"])
def test_long_run_on_the_tiny_model_is_deterministic_and_covers_the_audio(tiny_pipeline, method):
    windows = WindowOptions(method, 9, 4)
    speech = demo_speech(2.0)  # 2 s at 23 fps -> 46 // 4 * 4 + 5 = 49 frames, 13 latent frames in windows of 3

    def run(seed):
        return tiny_pipeline.animate(
            demo_portrait(), speech, options=SamplerOptions(steps=2, seed=seed), max_side=64, windows=windows
        )

    first, again, other = run(1), run(1), run(2)
    assert first.frames.shape == (49, 64, 64, 3) and first.latents.shape[2] == 13
    assert torch.equal(first.latents, again.latents)
    assert (first.latents - other.latents).abs().max() > 1e-3


def test_max_seconds_caps_the_video(tiny_pipeline):
    result = tiny_pipeline.animate(
        demo_portrait(),
        demo_speech(2.0),
        options=SamplerOptions(steps=1),
        max_side=64,
        windows=WindowOptions("sliding", 9, 4),
        max_seconds=1.0,
    )
    assert result.frames.shape[0] == 25  # 23 // 4 * 4 + 5
