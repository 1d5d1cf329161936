"""Which pairs a step sees and the noise each pair gets, as pure functions of (seed, step, pair): one process and
many, a straight run and a resumed one, all see the same data."""
from __future__ import annotations

import torch

from ft2_core.errors import InputError
from ft2_core.sampling.flow import shift_sigmas


def mix_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (same on every process and run)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = ((value ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


def global_batch(step: int, dataset_size: int, batch_size: int, seed: int) -> list[int]:
    """Pair indices of global step `step`: a seeded permutation per epoch, cut into batches (last partial dropped)."""
    per_epoch = dataset_size // batch_size
    if per_epoch == 0:
        raise InputError(f"batch size {batch_size} is larger than the {dataset_size} pairs")
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
    return order[offset * batch_size:(offset + 1) * batch_size].tolist()


def pair_noise(indices, step: int, seed: int, shape, sigma_range, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """sigma [B] and noise [B, *shape] per pair, keyed by (seed, step, pair index): independent of how
    the global batch is split across processes, so one process and many give the same run."""
    sigmas, noises = [], []
    for index in indices:
        g = torch.Generator().manual_seed(mix_seed(seed, step, int(index)))
        u = torch.rand((), generator=g, dtype=torch.float64)
        sigmas.append(sigma_range[0] + (sigma_range[1] - sigma_range[0]) * u)
        noises.append(torch.randn(shape, generator=g))
    sigma = shift_sigmas(torch.stack(sigmas), shift).float()
    return sigma, torch.stack(noises)
