import inspect

import torch
from diffusers import AutoencoderKLWan

from ft2_core.models.latent_format import WAN21_LATENTS_MEAN, WAN21_LATENTS_STD, denormalize, normalize


def test_constants_are_the_wan21_vae_config():
    defaults = inspect.signature(AutoencoderKLWan.__init__).parameters
    assert list(WAN21_LATENTS_MEAN) == defaults["latents_mean"].default
    assert list(WAN21_LATENTS_STD) == defaults["latents_std"].default


def test_normalize_is_per_channel_and_inverts():
    raw = torch.randn(1, 16, 3, 4, 4)
    norm = normalize(raw)
    torch.testing.assert_close(norm[0, 5], (raw[0, 5] - WAN21_LATENTS_MEAN[5]) / WAN21_LATENTS_STD[5])
    torch.testing.assert_close(denormalize(norm), raw)
