"""Flow-DPO for TLPO (experts and gate share it):

    l(x)  = mean over (C, F, H, W) of  M * (v_model(x_t, t, c) - v)^2        (masked mean with a lip mask)
    L     = -log sigmoid( -beta/2 * [ (l_theta(x_w) - l_ref(x_w)) - (l_theta(x_l) - l_ref(x_l)) ] )

Winner and loser share t and the noise; the reference is the same network with the experts off.

Optional winner penalty (DPO-Positive, Pal et al. 2024), off by default: with lambda > 0 the bracket gains
lambda * max(0, l_theta(x_w) - l_ref(x_w)), so the loss can no longer fall by making the winner worse as long as
the loser gets worse faster; that is how plain DPO walks off the data (measured in the miniature world).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..models.audio_windows import AudioWindows
from ..sampling.flow import NUM_TRAIN_TIMESTEPS
from .experts import experts_disabled


def flow_matching_loss(velocity: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mean squared velocity error [B]; with `mask` [B, 1, F, H, W] a masked mean over its support."""
    error = (velocity.float() - target.float()).square()
    if mask is None:
        return error.flatten(1).mean(dim=1)
    weights = mask.float().expand_as(error)
    return (error * weights).flatten(1).sum(dim=1) / weights.flatten(1).sum(dim=1).clamp(min=1e-8)


@dataclass
class DPOOutput:
    loss: torch.Tensor  # scalar
    reward_margin: torch.Tensor  # [B] -beta/2 * [...]: positive when the model prefers the winner more than ref
    sigma: torch.Tensor  # [B]

    @property
    def implicit_accuracy(self) -> torch.Tensor:
        return (self.reward_margin > 0).float()


def dpo_loss(theta_w, ref_w, theta_l, ref_l, beta: float, winner_penalty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The Flow-DPO objective from per-sample losses; returns (mean loss, reward margins [B]).

    The margins are the plain DPO ones (their sign is the implicit accuracy); the winner penalty enters the loss only."""
    margin = -beta / 2 * ((theta_w - ref_w) - (theta_l - ref_l))
    penalised = margin - beta / 2 * winner_penalty * (theta_w - ref_w).clamp(min=0)
    return -F.logsigmoid(penalised).mean(), margin


def noisy_pair(winner: torch.Tensor, loser: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor):
    """x_t and the velocity target for winner and loser at the same sigma with the same noise."""
    s = sigma.view(-1, 1, 1, 1, 1)
    x_w, x_l = (1 - s) * winner + s * noise, (1 - s) * loser + s * noise
    return x_w, x_l, noise - winner, noise - loser


def dpo_step(model, batch: dict, sigma: torch.Tensor, noise: torch.Tensor, beta: float, winner_penalty: float = 0.0) -> DPOOutput:
    """One Flow-DPO forward: policy (experts on) and reference (experts off) on winners and losers.

    batch: winner/loser latents [B, C, F, h, w], condition, text, image, audio (AudioWindows), and
    optional loss masks mask_w/mask_l [B, 1, F, h, w] (lip masks). Winner and loser go through the
    network as one batch of 2B. `model` may be wrapped (DDP/FSDP); experts are switched off on the inner module.
    """
    x_w, x_l, v_w, v_l = noisy_pair(batch["winner"], batch["loser"], sigma, noise)
    twice = lambda t: None if t is None else torch.cat([t, t])  # noqa: E731
    audio = batch["audio"]
    inputs = dict(
        latents=torch.cat([x_w, x_l]), condition=twice(batch["condition"]),
        timestep=twice(sigma * NUM_TRAIN_TIMESTEPS), text=twice(batch["text"]), image=twice(batch.get("image")),
        audio=AudioWindows(twice(audio.tokens), audio.lengths),
    )
    mask = torch.cat([batch["mask_w"], batch["mask_l"]]) if batch.get("mask_w") is not None else None
    target = torch.cat([v_w, v_l])
    policy = flow_matching_loss(model(**inputs), target, mask)
    with torch.no_grad(), experts_disabled(getattr(model, "module", model)):
        reference = flow_matching_loss(model(**inputs), target, mask)
    size = x_w.shape[0]
    loss, margin = dpo_loss(policy[:size], reference[:size], policy[size:], reference[size:], beta, winner_penalty)
    return DPOOutput(loss, margin.detach(), sigma.detach())
