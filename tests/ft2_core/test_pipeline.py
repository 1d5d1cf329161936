import json

import numpy as np
import pytest
import torch

from ft2_core.demo_inputs import demo_portrait, demo_speech
from ft2_core.errors import InputError
from ft2_core.io.audio import Audio
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import SamplerOptions, WindowOptions


def test_animate_gives_frames_for_the_audio(tiny_pipeline):
    result = tiny_pipeline.animate(demo_portrait(), demo_speech(1.0), options=SamplerOptions(steps=2), max_side=96)
    # 1.0 s at 23 fps -> 23 // 4 * 4 + 5 = 25 frames; the 64x64 demo portrait -> 96x96
    assert result.frames.shape == (25, 96, 96, 3)
    assert result.fps == 23 and result.latents.shape == (1, 16, 7, 12, 12)


def test_audio_changes_the_video(tiny_pipeline):
    options = SamplerOptions(steps=2, seed=5)
    speech = tiny_pipeline.animate(demo_portrait(), demo_speech(0.5), options=options, max_side=64, num_frames=9)
    other = Audio(np.random.default_rng(0).normal(0, 0.3, (1, 8000)).astype(np.float32), 16000)
    noise = tiny_pipeline.animate(demo_portrait(), other, options=options, max_side=64, num_frames=9)
    assert (speech.latents - noise.latents).abs().max() > 1e-3


def test_model_folder_errors(tmp_path, tiny_dir):
    with pytest.raises(InputError, match="model folder not found"):
        ModelPaths.from_folder(tmp_path / "nope")
    (tmp_path / "transformer").mkdir()
    with pytest.raises(InputError, match="no FantasyTalking audio adapter"):
        ModelPaths.from_folder(tmp_path)
    paths = ModelPaths.from_folder(tiny_dir, vae=tmp_path / "missing_vae")
    with pytest.raises(InputError, match="model files missing: vae"):
        FantasyTalkingPipeline.from_paths(paths)


def test_tiny_manifest_says_it_is_a_demo(tiny_dir):
    manifest = json.loads((tiny_dir / "ft2_model.json").read_text())
    assert "plumbing demo" in manifest["notice"] and "not a talking face" in manifest["notice"]


def test_explicit_frame_count_is_checked(tiny_pipeline):
    with pytest.raises(InputError, match="num_frames must be 4k\\+1"):
        tiny_pipeline.animate(torch.rand(64, 64, 3), demo_speech(1.0), options=SamplerOptions(steps=1), num_frames=10)


def test_progress_covers_the_whole_run_and_cancel_works_during_decode(tiny_pipeline):
    from ft2_core.progress import RunProgress

    seen = []
    progress = RunProgress(lambda done, total, preview: seen.append((done, total, preview is not None)))
    tiny_pipeline.animate(demo_portrait(), demo_speech(0.5), options=SamplerOptions(steps=3), max_side=64, num_frames=9,
                          progress=progress)
    # 4 encoders, 3 steps (each with a preview latent), 3 latent frames decoded one by one
    assert [d for d, _, _ in seen] == list(range(1, 11)) and {t for _, t, _ in seen} == {10}
    assert [p for _, _, p in seen] == [False] * 4 + [True] * 3 + [False] * 3

    class Cancelled(Exception):
        pass

    def cancel_after_first_decoded_frame():
        if progress.done == 8:
            raise Cancelled

    progress = RunProgress(check_interrupt=cancel_after_first_decoded_frame)
    with pytest.raises(Cancelled):
        tiny_pipeline.animate(demo_portrait(), demo_speech(0.5), options=SamplerOptions(steps=3), max_side=64, num_frames=9,
                              progress=progress)
    assert progress.done == 8  # stopped inside the VAE decode, not after it


STAGES = {  # each stage of a run -> the module doing its work
    "text encoder": lambda pipe: pipe.text_encoder.model,
    "image encoder": lambda pipe: pipe.image_encoder.model,
    "VAE encode": lambda pipe: pipe.vae.model.encoder,
    "wav2vec2": lambda pipe: pipe.wav2vec.model,
    "sampling step": lambda pipe: pipe.model.transformer,
    "VAE decode": lambda pipe: pipe.vae.model.decoder,
}


@pytest.mark.parametrize("stage", STAGES)
def test_cancel_is_honoured_inside_every_stage(tiny_pipeline, stage):
    """A cancel that arrives once a stage has begun stops it before its next layer, not at its end."""
    from ft2_core.progress import RunProgress, layers

    class Cancelled(Exception):
        pass

    stage_layers = layers(STAGES[stage](tiny_pipeline))
    ran = []
    handles = [layer.register_forward_hook(lambda *_: ran.append(1)) for layer in stage_layers]

    def cancel_once_the_stage_has_begun():
        if ran:
            raise Cancelled

    try:
        with pytest.raises(Cancelled):
            tiny_pipeline.animate(demo_portrait(), demo_speech(0.5), options=SamplerOptions(steps=2), max_side=64,
                                  num_frames=9, progress=RunProgress(check_interrupt=cancel_once_the_stage_has_begun))
    finally:
        for handle in handles:
            handle.remove()
    assert len(ran) <= 2 < len(stage_layers)  # stopped after its first layer (and the one holding it, if nested)


@pytest.mark.hostile(item=6, ends="refused")
def test_frame_counts_far_beyond_the_audio_are_refused(tiny_pipeline):
    speech = demo_speech(1.0)  # 25 frames at 23 fps (23, rounded up to 4k+1)
    refusal = r"num_frames 121 .* far beyond the audio \(1.0 s, 25 frames\): at most .*\(106 frames\)"
    with pytest.raises(InputError, match=refusal):
        tiny_pipeline.animate(demo_portrait(), speech, options=SamplerOptions(steps=1), num_frames=121, fps=23,
                              windows=WindowOptions("sliding", 81, 16))


@pytest.mark.hostile(item=4, ends="refused")
def test_a_video_that_came_out_nan_is_refused(tiny_pipeline):
    """A finite but absurd LoRA strength overflows the sampler: one sentence instead of a black video."""
    from ft2_core.tlpo.experts import Expert
    from tests.ft2_core.tlpo.test_experts import random_lora

    lora = random_lora(tiny_pipeline.model, rank=2, alpha=2.0, seed=1)
    huge = Expert("lora0", lora, strength=1e30, source="--lora huge.safetensors")
    with pytest.raises(InputError, match="sampling produced NaN or infinite values"):
        tiny_pipeline.animate(demo_portrait(), demo_speech(0.3), options=SamplerOptions(steps=2), max_side=64, num_frames=5,
                              loras=[huge])
