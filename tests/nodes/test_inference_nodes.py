"""The nodes on the tiny model: all-in-one, and the native path fed with ComfyUI-shaped stand-ins."""
import numpy as np
import pytest
import torch

from ft2_core.demo_inputs import demo_portrait, demo_speech
from ft2_core.io.image import fit_image

SAMPLER = dict(steps=3, cfg=4.0, audio_cfg=3.0, audio_cfg_start=0.0, audio_cfg_end=1.0, shift=5.0, scheduler="euler",
               seed=3, audio_scale=1.0)


def comfy_audio(seconds=1.0, rate=44100, channels=2):
    from math import gcd

    from scipy.signal import resample_poly

    clip = demo_speech(seconds)
    divisor = gcd(rate, clip.sample_rate)
    waveform = resample_poly(clip.waveform, rate // divisor, clip.sample_rate // divisor, axis=1).astype(np.float32)
    return {"waveform": torch.from_numpy(np.repeat(waveform, channels, axis=0))[None], "sample_rate": rate}


class ClipVisionOutputStandIn:
    """ComfyUI's `comfy.clip_vision.Output`: attributes, also readable with [] (as the native nodes do)."""

    def __getitem__(self, key):
        return getattr(self, key)

    def __setitem__(self, key, value):
        setattr(self, key, value)


class WanVaeStandIn:
    """ComfyUI's VAE interface for Wan: encode(pixels [T, H, W, 3] in 0..1) -> raw latents [1, 16, F, h, w]."""

    def __init__(self, diffusers_vae):
        self.vae = diffusers_vae

    def encode(self, pixels):
        video = pixels.permute(3, 0, 1, 2)[None] * 2 - 1
        with torch.no_grad():
            return self.vae.encode(video).latent_dist.mode()

    def decode(self, latents):
        """-> [1, T, H, W, 3] in 0..1, as ComfyUI's VAE.decode gives video."""
        with torch.no_grad():
            video = self.vae.decode(latents).sample
        return ((video.permute(0, 2, 3, 4, 1) + 1) / 2).clamp(0, 1)


def comfy_conditioning(text_encoder, prompt):
    """CLIPTextEncode's CONDITIONING for Wan: [[states of the real tokens only [1, L, dim], {...}]]."""
    states = text_encoder.encode([prompt])
    length = int(states[0].abs().sum(-1).gt(0).sum())
    return [[states[:, :length], {"pooled_output": None}]]


def test_all_in_one_nodes_give_frames_and_fitted_audio(ft2):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "auto")
    frames, audio = nodes["FT2Animate"]().animate(
        pipeline, demo_portrait()[None], comfy_audio(1.0), "a person talks", "", 0, 0, 23.0, **SAMPLER)
    # 1 s -> 25 frames; the 320x256 portrait at the tiny model's 128 max side -> 128x112 (102.4 -> 102 -> 112)
    assert frames.shape == (25, 128, 128, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape == (1, 2, round(25 / 23 * 44100))


def test_native_path_matches_all_in_one(ft2, tiny_pipeline):
    nodes = ft2.NODE_CLASS_MAPPINGS
    image = fit_image(demo_portrait(), 128)  # sides already multiples of 16: no resize on either path
    audio = comfy_audio(0.6, rate=16000, channels=1)

    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "fp32")
    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    embeds, fitted, num_frames = nodes["FT2AudioEmbeds"]().encode(wav2vec, audio, 23.0, 0)
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

    from ft2_core.models.audio_adapter import AudioAdapter, ours_to_upstream
    from ft2_core.io.checkpoint_io import save_safetensors

    wide = save_safetensors(ours_to_upstream(AudioAdapter(2, 64, 32, 24).state_dict()), models_dir / "diffusion_models" / "wide.safetensors")
    try:
        with pytest.raises(ValueError, match="this DiT \\(width 32\\).*made for another model"):
            nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "wide.safetensors", "auto")
    finally:
        wide.unlink()

    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    silent = {"waveform": torch.zeros(1, 1, 16000), "sample_rate": 16000}
    with pytest.raises(ValueError, match="audio input: the clip is silent"):
        nodes["FT2AudioEmbeds"]().encode(wav2vec, silent, 23.0, 0)
    blip = {"waveform": torch.full((1, 1, 100), 0.5), "sample_rate": 16000}
    with pytest.raises(ValueError, match="audio input: 0.006 s is too short"):
        nodes["FT2AudioEmbeds"]().encode(wav2vec, blip, 23.0, 0)

    embeds, _, _ = nodes["FT2AudioEmbeds"]().encode(wav2vec, comfy_audio(0.3), 23.0, 0)
    clip_out = ClipVisionOutputStandIn()
    clip_out["penultimate_hidden_states"] = torch.zeros(1, 257, 32)
    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "auto")
    cond = [[torch.zeros(1, 5, 32), {}]]
    with pytest.raises(ValueError, match="start_image: 100x90 sides must be multiples of 16"):
        nodes["FT2Sampler"]().sample(model, cond, cond, clip_out, WanVaeStandIn(tiny_pipeline.vae.model),
                                     torch.rand(1, 90, 100, 3), embeds, **SAMPLER)


def test_errors_read_cleanly_in_comfyui(ft2, tiny_pipeline):
    """ComfyUI shows an exception's module path: ours must be plain ValueErrors, and widths must be named."""
    nodes = ft2.NODE_CLASS_MAPPINGS
    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    embeds, _, _ = nodes["FT2AudioEmbeds"]().encode(wav2vec, comfy_audio(0.3), 23.0, 0)
    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "auto")
    clip_out = ClipVisionOutputStandIn()
    clip_out["penultimate_hidden_states"] = torch.zeros(1, 257, 32)
    umt5 = [[torch.zeros(1, 7, 4096), {}]]  # native umT5-XXL features into a model of text width 32
    with pytest.raises(ValueError) as caught:
        nodes["FT2Sampler"]().sample(model, umt5, umt5, clip_out, WanVaeStandIn(tiny_pipeline.vae.model),
                                     torch.rand(1, 64, 64, 3), embeds, **SAMPLER)
    assert type(caught.value) is ValueError  # a builtin: ComfyUI prints just "ValueError"
    assert "positive conditioning: 4096-wide text features, but this model takes 32" in str(caught.value)
    clip_out["penultimate_hidden_states"] = torch.zeros(1, 257, 1280)
    with pytest.raises(ValueError, match="clip_vision_output: 1280-wide image features, but this model takes 32"):
        nodes["FT2Sampler"]().sample(model, [[torch.zeros(1, 5, 32), {}]], [[torch.zeros(1, 5, 32), {}]], clip_out,
                                     WanVaeStandIn(tiny_pipeline.vae.model), torch.rand(1, 64, 64, 3), embeds, **SAMPLER)


@pytest.mark.parametrize("method", ["sliding", "continuation"])
def test_long_audio_through_both_sampler_nodes(ft2, tiny_pipeline, method):
    """2 s of audio in windows of 9 frames: the whole audio is animated, on the native path and the all-in-one."""
    nodes = ft2.NODE_CLASS_MAPPINGS
    image = fit_image(demo_portrait(), 64)
    audio = comfy_audio(2.0, rate=16000, channels=1)
    long = dict(long_method=method, window_frames=9, overlap_frames=4)
    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    embeds, fitted, num_frames = nodes["FT2AudioEmbeds"]().encode(wav2vec, audio, 23.0, 0)
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
    frames, track = nodes["FT2Animate"]().animate(pipeline, image[None], audio, "a person talks", "", 64, 0, 23.0,
                                                  **SAMPLER, max_seconds=0.0, **long)
    assert frames.shape == (49, 64, 64, 3) and track["waveform"].shape[-1] == round(49 / 23 * 16000)
    capped, _ = nodes["FT2Animate"]().animate(pipeline, image[None], audio, "a person talks", "", 64, 0, 23.0,
                                              **SAMPLER, max_seconds=1.0, **long)
    assert capped.shape[0] == 25


class FakeModelManagement:
    """The parts of ComfyUI's comfy.model_management the nodes call, recording them."""

    def __init__(self, vram_state):
        import enum

        self.VRAMState = enum.Enum("VRAMState", "DISABLED NO_VRAM LOW_VRAM NORMAL_VRAM HIGH_VRAM SHARED")
        self.vram_state = getattr(self.VRAMState, vram_state)
        self.calls = []

    def get_torch_device(self):
        return torch.device("cpu")

    def unet_offload_device(self):
        return torch.device("cpu")

    def free_memory(self, nbytes, device):
        self.calls.append(("free_memory", nbytes, device))

    def soft_empty_cache(self):
        self.calls.append(("soft_empty_cache",))


@pytest.fixture()
def model_management(monkeypatch):
    """Install a stand-in comfy.model_management (comfy.utils stays absent: no progress bar)."""
    import sys
    import types

    def install(vram_state="NORMAL_VRAM"):
        fake = FakeModelManagement(vram_state)
        package = types.ModuleType("comfy")
        package.model_management = fake
        monkeypatch.setitem(sys.modules, "comfy", package)
        monkeypatch.setitem(sys.modules, "comfy.model_management", fake)
        return fake

    return install


def test_runs_make_room_in_comfyuis_memory_and_give_it_back(ft2, model_management):
    from ft2_core.placement import device_bytes

    nodes = ft2.NODE_CLASS_MAPPINGS
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
    fake = model_management()
    nodes["FT2Animate"]().animate(pipeline, demo_portrait()[None], comfy_audio(0.3), "talk", "", 64, 9, 23.0, **SAMPLER)
    largest = max(device_bytes(m) for m in pipeline.modules())  # its parts visit the device one at a time
    assert fake.calls[0] == ("free_memory", largest, torch.device("cpu")) and largest == device_bytes(pipeline)
    assert fake.calls[-1] == ("soft_empty_cache",)


@pytest.mark.parametrize("vram_state, swapped", [("NORMAL_VRAM", 0), ("LOW_VRAM", 1), ("NO_VRAM", 2)])
def test_lowvram_and_novram_swap_blocks_unless_the_user_chose(ft2, model_management, vram_state, swapped):
    nodes = ft2.NODE_CLASS_MAPPINGS
    model_management(vram_state)
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "fp32")
    for loaded in (pipeline.model, model):  # the tiny DiT has 2 blocks
        assert (loaded.block_swap.count if loaded.block_swap else 0) == swapped
    (chosen,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32", 0, 1)
    assert chosen.model.block_swap.count == 1  # the user's number wins
