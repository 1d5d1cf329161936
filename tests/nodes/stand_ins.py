"""ComfyUI-shaped inputs and services for the node tests: AUDIO, CLIP vision output, the Wan VAE, CONDITIONING and
comfy.model_management, with the sampler widgets the tests use."""
import numpy as np
import torch

from ft2_core.demo_inputs import demo_speech

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

def native_sampler_inputs(ft2):
    """FT2 Sampler's model, audio embeds (0.3 s of demo speech) and zero CLIP-vision features, from the tiny files."""
    nodes = ft2.NODE_CLASS_MAPPINGS
    (wav2vec,) = nodes["FT2Wav2VecLoader"]().load("tiny-wav2vec2")
    embeds, _, _ = nodes["FT2AudioEmbeds"]().encode(wav2vec, comfy_audio(0.3), 23.0, ft2.nodes.sampling_widgets.AUTOMATIC)
    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "auto")
    clip_out = ClipVisionOutputStandIn()
    clip_out["penultimate_hidden_states"] = torch.zeros(1, 257, 32)
    return model, embeds, clip_out


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

    def throw_exception_if_processing_interrupted(self):
        """ComfyUI's cancel check: raises only after the user cancels, which these tests never do."""
