"""Flow-DPO for TLPO (experts and gate share it):

    l(x)  = mean over (C, F, H, W) of  M * (v_model(x_t, t, c) - v)^2        (masked mean with a lip mask)
    L     = -log sigmoid( -beta/2 * [ (l_theta(x_w) - l_ref(x_w)) - (l_theta(x_l) - l_ref(x_l)) ] )

Winner and loser share t and the noise; the reference is the same network with the experts off.

Optional winner penalty (DPO-Positive, Pal et al. 2024), off by default: with lambda > 0 the bracket gains
lambda * max(0, l_theta(x_w) - l_ref(x_w)), so the loss can no longer fall by making the winner worse as long as
the loser gets worse faster; that is how plain DPO walks off the data (measured in the miniature world).

The loss couples winner and loser only through four scalars per pair, so its gradient is
c_w * grad l_theta(x_w) + c_l * grad l_theta(x_l) with coefficients computed from those scalars: `dpo_step_by_rows`
computes the scalars without gradients, then back-propagates each policy row alone, scaled by its coefficient.
Activation memory is that of one row, at the cost of one more policy forward per row.
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


def pair_inputs(batch: dict, sigma: torch.Tensor, noise: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
    """The model inputs of winners then losers (2B rows), their velocity targets and loss masks."""
    x_w, x_l, v_w, v_l = noisy_pair(batch["winner"], batch["loser"], sigma, noise)
    twice = lambda t: None if t is None else torch.cat([t, t])  # noqa: E731
    audio = batch["audio"]
    inputs = dict(
        latents=torch.cat([x_w, x_l]), condition=twice(batch["condition"]),
        timestep=twice(sigma * NUM_TRAIN_TIMESTEPS), text=twice(batch["text"]), image=twice(batch.get("image")),
        audio=AudioWindows(twice(audio.tokens), audio.lengths),
    )
    mask = torch.cat([batch["mask_w"], batch["mask_l"]]) if batch.get("mask_w") is not None else None
    return inputs, torch.cat([v_w, v_l]), mask


def dpo_step(model, batch: dict, sigma: torch.Tensor, noise: torch.Tensor, beta: float, winner_penalty: float = 0.0) -> DPOOutput:
    """One Flow-DPO forward: policy (experts on) and reference (experts off) on winners and losers.

    batch: winner/loser latents [B, C, F, h, w], condition, text, image, audio (AudioWindows), and
    optional loss masks mask_w/mask_l [B, 1, F, h, w] (lip masks). Winner and loser go through the
    network as one batch of 2B. `model` may be wrapped (DDP/FSDP); experts are switched off on the inner module.
    """
    inputs, target, mask = pair_inputs(batch, sigma, noise)
    policy = flow_matching_loss(model(**inputs), target, mask)
    with torch.no_grad(), experts_disabled(getattr(model, "module", model)):
        reference = flow_matching_loss(model(**inputs), target, mask)
    size = sigma.shape[0]
    loss, margin = dpo_loss(policy[:size], reference[:size], policy[size:], reference[size:], beta, winner_penalty)
    return DPOOutput(loss, margin.detach(), sigma.detach())


def row(inputs: dict, index: int) -> dict:
    """Row `index` of the model inputs (audio windows keep their shared lengths)."""
    audio = inputs["audio"]
    picked = {k: None if v is None else v[index:index + 1] for k, v in inputs.items() if k != "audio"}
    return {**picked, "audio": AudioWindows(audio.tokens[index:index + 1], audio.lengths)}


def dpo_step_by_rows(model, batch: dict, sigma: torch.Tensor, noise: torch.Tensor, beta: float,
                     winner_penalty: float = 0.0, backward=torch.autograd.backward, scale: float = 1.0) -> DPOOutput:
    """`dpo_step`'s loss and its gradient times `scale`, holding one row's activations at a time: the four scalar
    losses of each pair without gradients, then each policy row again with gradients, its backward scaled by
    dL/dl_theta of that row. `backward(tensor)` runs the backward (an accelerator's, for mixed precision and DDP);
    gradients accumulate, so pairs of several calls add up (gradient accumulation)."""
    inputs, target, mask = pair_inputs(batch, sigma, noise)
    inner = getattr(model, "module", model)
    rows = target.shape[0]
    losses = {"policy": [], "reference": []}
    with torch.no_grad():
        for index in range(rows):
            part = row(inputs, index)
            row_mask = None if mask is None else mask[index:index + 1]
            losses["policy"].append(flow_matching_loss(inner(**part), target[index:index + 1], row_mask))
            with experts_disabled(inner):
                losses["reference"].append(flow_matching_loss(inner(**part), target[index:index + 1], row_mask))
    policy, reference = torch.cat(losses["policy"]), torch.cat(losses["reference"])
    size = sigma.shape[0]
    theta_w, theta_l = policy[:size].requires_grad_(), policy[size:].requires_grad_()
    with torch.enable_grad():
        loss, margin = dpo_loss(theta_w, reference[:size], theta_l, reference[size:], beta, winner_penalty)
        coefficients = torch.cat(torch.autograd.grad(loss * scale, (theta_w, theta_l)))  # dL/dl_theta per row, [2B]
    for index in range(rows):  # every row, even one whose coefficient is 0: processes must run the same backwards
        row_mask = None if mask is None else mask[index:index + 1]
        row_loss = flow_matching_loss(model(**row(inputs, index)), target[index:index + 1], row_mask)
        backward((row_loss * coefficients[index]).sum())
    return DPOOutput(loss.detach(), margin.detach(), sigma.detach())
