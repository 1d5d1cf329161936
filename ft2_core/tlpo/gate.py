"""How much each expert contributes, per DiT layer, as a function of the timestep.

`TimestepLayerGate` is TLPO's learned gate: g_l(t) = softmax(P_l e(t)) + b_l with e(t) Wan's 256-d
sinusoidal timestep embedding; zero init gives every expert 1/K. Its fastest components turn every few
timesteps, so a trained gate can jump between neighbouring steps; `min_period` leaves out the components
that turn faster than that many timesteps, which makes the gate smooth in t. Without a gate file, `StaticMix`
applies fixed weights and `ScheduledMix` interpolates weights over the timestep.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

from ..checks import finite_tensors
from ..errors import InputError
from ..io.checkpoint_io import load_state_dict, read_metadata, save_safetensors


def embedding_frequencies(dim: int, device=None) -> torch.Tensor:
    """w_i = 10000^(-i/(dim/2)), i < dim/2, in float64: the angular speeds of the embedding's components."""
    half = dim // 2
    return torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64, device=device) / half)


def timestep_embedding(timestep: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """Wan's sinusoidal embedding: [cos(t w_i), sin(t w_i)] with w_i = 10000^(-i/(dim/2))."""
    angles = timestep.double()[:, None] * embedding_frequencies(dim, timestep.device)[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float()


def slow_components(dim: int, min_period: float) -> torch.Tensor:
    """[dim] 1 where the embedding's component turns no faster than once per `min_period` timesteps (0: all)."""
    keep = (2 * math.pi / embedding_frequencies(dim) >= min_period).float()
    return torch.cat([keep, keep])


class TimestepLayerGate(nn.Module):
    def __init__(self, num_layers: int, num_experts: int = 3, embed_dim: int = 256, experts: tuple[str, ...] = (),
                 min_period: float = 0.0):
        super().__init__()
        if embed_dim < 2 or embed_dim % 2:
            raise InputError(f"gate: embed_dim must be even and at least 2 (sines and cosines in pairs), got {embed_dim}")
        self.proj = nn.Parameter(torch.zeros(num_layers, num_experts, embed_dim))
        self.bias = nn.Parameter(torch.zeros(num_layers, num_experts))
        if min_period < 0:
            raise InputError(f"gate: min_period must be >= 0 timesteps, got {min_period}")
        self.min_period = float(min_period)
        self.register_buffer("components", slow_components(embed_dim, min_period), persistent=False)
        if experts and len(experts) != num_experts:
            raise InputError(f"gate: {len(experts)} expert names for {num_experts} experts")
        self.experts = tuple(experts)  # names in mixing order; empty when unnamed

    @property
    def num_layers(self) -> int:
        return self.proj.shape[0]

    @property
    def num_experts(self) -> int:
        return self.proj.shape[1]

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        """timestep [B] (0..1000) -> weights [B, layers, experts]."""
        emb = (timestep_embedding(timestep, self.proj.shape[2]) * self.components.to(timestep.device)).to(self.proj.dtype)
        logits = torch.einsum("bd,lkd->blk", emb, self.proj)
        return logits.softmax(dim=-1) + self.bias


class StaticMix(nn.Module):
    """The same weight per expert at every layer and timestep (a user's fixed mix)."""

    def __init__(self, weights):
        super().__init__()
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32), persistent=False)
        self.num_experts = self.weights.shape[0]

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        """-> [B, 1, K]: one row that every layer shares."""
        return self.weights.to(timestep.device).expand(timestep.shape[0], 1, -1)


class WithFixedLoras(nn.Module):
    """A mix of the gated experts followed by `count` extra LoRAs at weight 1 everywhere (a step-distillation or
    style LoRA beside the experts; each LoRA's own strength still applies)."""

    def __init__(self, mix: nn.Module, count: int):
        super().__init__()
        self.mix, self.count = mix, count
        self.num_experts = mix.num_experts + count
        if hasattr(mix, "num_layers"):
            self.num_layers = mix.num_layers

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        weights = self.mix(timestep)
        return torch.cat([weights, weights.new_ones(*weights.shape[:-1], self.count)], dim=-1)


class ScheduledMix(nn.Module):
    """Weights per expert that vary with the timestep, linearly between given points (same at every layer)."""

    def __init__(self, timesteps, weights):
        super().__init__()
        order = torch.argsort(torch.as_tensor(timesteps, dtype=torch.float32))
        self.register_buffer("points", torch.as_tensor(timesteps, dtype=torch.float32)[order], persistent=False)
        self.register_buffer("weights", torch.as_tensor(weights, dtype=torch.float32)[order], persistent=False)
        if self.weights.ndim != 2 or self.weights.shape[0] != self.points.shape[0]:
            raise InputError("schedule: give one row of expert weights per timestep point")
        self.num_experts = self.weights.shape[1]

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        t = timestep.float().to(self.points.device).clamp(self.points[0], self.points[-1])
        if len(self.points) == 1:
            mixed = self.weights[0].expand(len(t), -1)
        else:
            upper = torch.searchsorted(self.points, t).clamp(1, len(self.points) - 1)
            lo, hi = self.points[upper - 1], self.points[upper]
            frac = ((t - lo) / (hi - lo)).unsqueeze(-1)
            mixed = self.weights[upper - 1] * (1 - frac) + self.weights[upper] * frac
        return mixed[:, None, :].to(timestep.device)  # [B, 1, K]: shared by every layer


def parse_schedule(text: str, num_experts: int) -> tuple[list[float], list[list[float]]]:
    """'t: w1, w2, w3' per line (t in 0..1000) -> points and weights."""
    points, weights = [], []
    for number, line in enumerate(raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        try:
            t, values = line.split(":")
            row = [float(v) for v in values.split(",")]
            points.append(float(t))
        except ValueError:
            raise InputError(f"schedule line {number + 1}: expected 't: w1, w2, ...', got {line!r}") from None
        if len(row) != num_experts:
            raise InputError(f"schedule line {number + 1}: {len(row)} weights for {num_experts} experts")
        if not all(math.isfinite(value) for value in (points[-1], *row)):
            raise InputError(f"schedule line {number + 1}: {line!r} holds a NaN or infinite number")
        if not 0 <= points[-1] <= 1000:
            raise InputError(f"schedule line {number + 1}: timestep {points[-1]} is outside 0..1000")
        weights.append(row)
    if not points:
        raise InputError("schedule: no 't: weights' lines")
    return points, weights


def save_gate(gate: TimestepLayerGate, path: str | os.PathLike) -> Path:
    metadata = {"ft2.kind": "gate", "ft2.experts": ",".join(gate.experts), "ft2.layers": str(gate.num_layers),
                "ft2.embed_dim": str(gate.proj.shape[2]), "ft2.min_period": str(gate.min_period)}
    return save_safetensors({"proj": gate.proj, "bias": gate.bias}, path, metadata)


def load_gate(path: str | os.PathLike, num_layers: int | None = None) -> TimestepLayerGate:
    what = f"gate {Path(path).name}"
    metadata = read_metadata(path, what)
    if metadata.get("ft2.kind") != "gate":
        raise InputError(f"{what}: not an FT2 gate file (ft2.kind is {metadata.get('ft2.kind')!r})")
    state = load_state_dict(path, what, dtype=torch.float32)
    finite_tensors(state, what)
    if set(state) != {"proj", "bias"} or state["proj"].ndim != 3 or state["bias"].shape != state["proj"].shape[:2]:
        raise InputError(f"{what}: expected tensors proj [layers, experts, dim] and bias [layers, experts]")
    layers, experts, dim = state["proj"].shape
    if num_layers is not None and layers != num_layers:
        raise InputError(f"{what}: made for {layers} layers but the model has {num_layers}")
    names = tuple(metadata["ft2.experts"].split(",")) if metadata.get("ft2.experts") else ()
    gate = TimestepLayerGate(layers, experts, dim, names, float(metadata.get("ft2.min_period", 0)))
    gate.load_state_dict(state)
    return gate
