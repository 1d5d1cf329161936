"""Wan2.1 VAE latent normalisation: the DiT works on (z - mean) / std per channel.

ComfyUI's VAE nodes pass raw latents (its model class normalises internally), so the native path
converts with these published Wan2.1 constants; diffusers folders carry the same values in their VAE config.
"""
from __future__ import annotations

import torch

WAN21_LATENTS_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_LATENTS_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)


def _stats(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=like.device).view(1, -1, 1, 1, 1)


def normalize(raw: torch.Tensor, mean=WAN21_LATENTS_MEAN, std=WAN21_LATENTS_STD) -> torch.Tensor:
    """Raw VAE latents [B, z, F, h, w] -> the DiT's latent space."""
    return (raw.float() - _stats(mean, raw)) / _stats(std, raw)


def denormalize(latents: torch.Tensor, mean=WAN21_LATENTS_MEAN, std=WAN21_LATENTS_STD) -> torch.Tensor:
    """The DiT's latent space -> raw VAE latents (what a VAE decoder takes)."""
    return latents.float() * _stats(std, latents) + _stats(mean, latents)
