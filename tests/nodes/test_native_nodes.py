"""The native path (FT2 Load Model, wav2vec2, Audio Embeds, FT2 Sampler) fed with ComfyUI-shaped stand-ins, against
the all-in-one path."""
import pytest
import torch

from ft2_core.demo_inputs import demo_portrait
from ft2_core.io.image import fit_image
from tests.nodes.stand_ins import (
    SAMPLER,
    ClipVisionOutputStandIn,
    WanVaeStandIn,
    comfy_audio,
    comfy_conditioning,
    native_sampler_inputs,
)


def test_native_path_matches_all_in_one(ft2, tiny_pipeline):
    nodes = ft2.NODE_CLASS_MAPPINGS
    image = fit_image(demo_portrait(), 128)  # sides already multiples of 16: no resize on either path
    audio = comfy_audio(0.6, rate=16000, channels=1)

    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "fp32")
    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    embeds, fitted, num_frames = nodes["FT2AudioEmbeds"]().encode(wav2vec, audio, 23.0, ft2.nodes.sampling_widgets.AUTOMATIC)
    assert num_frames == 17  # 0.6 s * 23 = 13.8 -> 12 + 5
    clip_out = ClipVisionOutputStandIn()
    clip_out["penultimate_hidden_states"] = tiny_pipeline.image_encoder.encode(image)
    (latent,) = nodes["FT2Sampler"]().sample(
        model, comfy_conditioning(tiny_pipeline.text_encoder, "a person talks"),
        comfy_conditioning(tiny_pipeline.text_encoder, "blurry"), clip_out, WanVaeStandIn(tiny_pipeline.vae.model),
        image[None], embeds, **SAMPLER)
    native_frames = tiny_pipeline.vae.model.decode(latent["samples"]).sample[0].permute(1, 2, 3, 0)
    native_frames = ((native_frames + 1) / 2).clamp(0, 1)

    (pipeline,) = nodes["FT2PipelineLoader"]().load("tiny-folder", "fp32")
    frames, _ = nodes["FT2Animate"]().animate(pipeline, image[None], audio, "a person talks", "blurry", 128, 17, 23.0, **SAMPLER)
    assert native_frames.shape == frames.shape == (17, 128, 128, 3)
    torch.testing.assert_close(native_frames, frames, rtol=1e-3, atol=2e-3)
    assert fitted["waveform"].shape[-1] == round(17 / 23 * 16000)

def test_bad_inputs_name_the_problem(ft2, models_dir, tiny_pipeline):
    nodes = ft2.NODE_CLASS_MAPPINGS
    with pytest.raises(FileNotFoundError, match="'gone.safetensors' not found in models/diffusion_models"):
        nodes["FT2ModelLoader"]().load("gone.safetensors", "tiny_fantasytalking.safetensors", "auto")

    from ft2_core.io.checkpoint_io import save_safetensors
    from ft2_core.models.audio_adapter import AudioAdapter, ours_to_upstream

    wide = save_safetensors(
        ours_to_upstream(AudioAdapter(2, 64, 32, 24).state_dict()), models_dir / "diffusion_models" / "wide.safetensors"
    )
    try:
        with pytest.raises(ValueError, match="this DiT \\(width 32\\).*made for another model"):
            nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "wide.safetensors", "auto")
    finally:
        wide.unlink()

    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    silent = {"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000}
    with pytest.raises(ValueError, match="audio input: the clip is silent"):
        nodes["FT2AudioEmbeds"]().encode(wav2vec, silent, 23.0, ft2.nodes.sampling_widgets.AUTOMATIC)
    blip = {"waveform": torch.full((1, 1, 100), 0.5), "sample_rate": 16000}
    with pytest.raises(ValueError, match="audio input: 0.006 s is too short"):
        nodes["FT2AudioEmbeds"]().encode(wav2vec, blip, 23.0, ft2.nodes.sampling_widgets.AUTOMATIC)

    embeds, _, _ = nodes["FT2AudioEmbeds"]().encode(wav2vec, comfy_audio(0.3), 23.0, ft2.nodes.sampling_widgets.AUTOMATIC)
    clip_out = ClipVisionOutputStandIn()
    clip_out["penultimate_hidden_states"] = torch.zeros(1, 257, 32)
    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "auto")
    cond = [[torch.zeros(1, 5, 32), {}]]
    with pytest.raises(ValueError, match="start_image: 100x90 sides must be multiples of 16"):
        nodes["FT2Sampler"]().sample(
            model, cond, cond, clip_out, WanVaeStandIn(tiny_pipeline.vae.model), torch.rand(1, 90, 100, 3), embeds, **SAMPLER
        )

@pytest.mark.parametrize("method", ["sliding", "continuation"])
def test_long_audio_through_both_sampler_nodes(ft2, tiny_pipeline, method):
    """2 s of audio in windows of 9 frames: the whole audio is animated, on the native path and the all-in-one."""
    nodes = ft2.NODE_CLASS_MAPPINGS
    image = fit_image(demo_portrait(), 64)
    audio = comfy_audio(2.0, rate=16000, channels=1)
    long = dict(long_method=method, window_frames=9, overlap_frames=4)
    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    embeds, fitted, num_frames = nodes["FT2AudioEmbeds"]().encode(wav2vec, audio, 23.0, ft2.nodes.sampling_widgets.AUTOMATIC)
    assert num_frames == 49 and fitted["waveform"].shape[-1] == round(49 / 23 * 16000)
    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "fp32")
    clip_out = ClipVisionOutputStandIn()
    clip_out["penultimate_hidden_states"] = tiny_pipeline.image_encoder.encode(image)
    text = comfy_conditioning(tiny_pipeline.text_encoder, "a person talks")
    args = (model, text, text, clip_out, WanVaeStandIn(tiny_pipeline.vae.model), image[None], embeds)
    (first,) = nodes["FT2Sampler"]().sample(*args, **SAMPLER, **long)
    (again,) = nodes["FT2Sampler"]().sample(*args, **SAMPLER, **long)
    assert first["samples"].shape[2] == 13 and torch.equal(first["samples"], again["samples"])

    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
    args = (pipeline, image[None], audio, "a person talks", "", 64, ft2.nodes.sampling_widgets.AUTOMATIC, 23.0)
    frames, track = nodes["FT2Animate"]().animate(*args, **SAMPLER, max_seconds=0.0, **long)
    assert frames.shape == (49, 64, 64, 3) and track["waveform"].shape[-1] == round(49 / 23 * 16000)
    capped, _ = nodes["FT2Animate"]().animate(*args, **SAMPLER, max_seconds=1.0, **long)
    assert capped.shape[0] == 25


@pytest.mark.hostile(item=4, ends="refused")
@pytest.mark.parametrize("broken", ["positive", "clip_vision_output", "start_image"])
def test_nan_conditioning_is_one_sentence_naming_the_input(ft2, tiny_pipeline, broken):
    model, embeds, clip_out = native_sampler_inputs(ft2)
    inputs = {"positive": torch.zeros(1, 5, 32), "clip_vision_output": clip_out["penultimate_hidden_states"],
              "start_image": torch.rand(1, 64, 64, 3)}
    inputs[broken].view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=f"{broken}.*contains NaN or infinite values"):
        ft2.NODE_CLASS_MAPPINGS["FT2Sampler"]().sample(
            model, [[inputs["positive"], {}]], [[torch.zeros(1, 5, 32), {}]], clip_out,
            WanVaeStandIn(tiny_pipeline.vae.model), inputs["start_image"], embeds, **SAMPLER)
