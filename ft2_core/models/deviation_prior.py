"""The Gaussian prior of the "sample_with_skip" prediction (see FantasyTalkingModel): the clean latents' change from
the reference frame, described by its principal directions and the spread along each.

With the skip, what the DiT does not model is estimated from the noisy latents under this prior, so a generated
video carries the prior's own spread in those directions. One spread for every latent channel (the first try) put
white grain of the largest directions' size into every pixel; along principal directions the many small ones get
their own small spread, so the grain left there is as small as the data's changes in them.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from ..io.checkpoint_io import load_state_dict, save_safetensors


def measure_prior(deviations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(basis [C, C], its rows the principal directions, largest first; spread [C]) of deviations [N, C] about zero,
    the mean the prior assumes."""
    if deviations.ndim != 2 or len(deviations) < deviations.shape[1]:
        raise InputError(f"deviations must be [N, C] with N >= C, got {tuple(deviations.shape)}")
    x = deviations.double()
    variances, vectors = torch.linalg.eigh(x.T @ x / len(x))
    order = variances.argsort(descending=True)
    return vectors[:, order].T.float().contiguous(), variances[order].clamp(min=0).sqrt().float()


def skip_weights(sigma: torch.Tensor, spread: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, scale) [B, C, 1, 1, 1] for sigma [B, 1, 1, 1, 1] and the spread [C] of each direction: the clean deviation
    along a direction is estimated as keep * (the noisy deviation) + scale * (the DiT's output). keep is the best linear
    estimate from the noisy latents alone, scale the spread that estimate leaves (EDM's preconditioning for
    x_t = (1 - sigma) x0 + sigma noise), so the DiT's target has unit spread at every sigma."""
    spread = spread.view(1, -1, 1, 1, 1)
    visible = (1 - sigma).square() * spread.square() + sigma.square()
    return (1 - sigma) * spread.square() / visible, spread * sigma / visible.sqrt()


def save_prior(basis: torch.Tensor, spread: torch.Tensor, path: Path) -> None:
    save_safetensors({"basis": basis.contiguous(), "spread": spread.contiguous()}, path,
                     metadata={"ft2.kind": "deviation_prior"})


def load_prior(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The prior in `path`, checked to hold a square orthonormal basis and a spread per direction (the model checks
    that they fit its channels)."""
    tensors = load_state_dict(path, "deviation prior", torch.float32)
    if set(tensors) != {"basis", "spread"}:
        raise InputError(f"deviation prior {path}: expected tensors basis and spread, found {sorted(tensors)}")
    basis, spread = tensors["basis"], tensors["spread"]
    channels = len(spread)
    if basis.shape != (channels, channels) or spread.shape != (channels,):
        raise InputError(f"deviation prior {path}: expected basis [C, C] and spread [C], got {tuple(basis.shape)} and "
                         f"{tuple(spread.shape)}")
    if not torch.allclose(basis @ basis.T, torch.eye(channels), atol=1e-4) or bool((spread < 0).any()):
        raise InputError(f"deviation prior {path}: the basis must be orthonormal and the spreads at least 0")
    return basis, spread
