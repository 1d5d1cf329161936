"""The FantasyTalking sampling loop: batched guidance passes, a flow solver, progress and cancellation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .audio_windows import AudioWindows
from .checks import finite_number
from .errors import InputError
from .flow import SCHEDULERS, FlowSolver
from .guidance import audio_guidance_active, guidance_rows


@dataclass
class SamplerOptions:
    steps: int = 30
    cfg: float = 5.0
    audio_cfg: float = 5.0
    audio_cfg_start: float = 0.0  # fraction of the steps where audio guidance begins
    audio_cfg_end: float = 1.0  # ... and ends (exclusive)
    shift: float = 5.0
    scheduler: str = "euler"
    seed: int = 0
    audio_scale: float = 1.0

    def validate(self) -> "SamplerOptions":
        for name in ("cfg", "audio_cfg", "audio_scale"):
            finite_number(getattr(self, name), name, minimum=0.0)
        finite_number(self.shift, "shift", above=0.0)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise InputError(f"steps must be a whole number, got {self.steps!r}")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if not 0.0 <= self.audio_cfg_start <= self.audio_cfg_end <= 1.0:
            raise InputError(
                f"audio guidance range must satisfy 0 <= start <= end <= 1, got {self.audio_cfg_start}..{self.audio_cfg_end}"
            )
        if self.steps < 1 or self.steps > 1000:
            raise InputError(f"steps must be between 1 and 1000, got {self.steps}")
        return self


@dataclass
class StepInfo:
    """What a progress callback sees after each step."""

    step: int  # 1-based
    total: int
    denoised: torch.Tensor  # x0 estimate [1, C, F, h, w], for previews


@dataclass
class Conditioning:
    """Everything the DiT is conditioned on, for one video (batch of one)."""

    condition: torch.Tensor  # [1, 4+z, F, h, w] I2V mask + first-frame latents
    positive: torch.Tensor  # [1, 512, text_dim]
    negative: torch.Tensor  # [1, 512, text_dim]
    image: torch.Tensor | None  # [1, 257, image_dim] CLIP features
    audio: AudioWindows  # windows for the latent frames

    def batch(self, texts, audio_scales, device, dtype):
        """Stack one row per guidance pass; returns model kwargs for that batch."""
        rows = len(texts)
        return dict(
            condition=self.condition.to(device, dtype).expand(rows, -1, -1, -1, -1),
            text=torch.cat(texts).to(device, dtype),
            image=None if self.image is None else self.image.to(device, dtype).expand(rows, -1, -1),
            audio=AudioWindows(self.audio.tokens.to(device, dtype).expand(rows, -1, -1, -1), self.audio.lengths.to(device)),
            audio_scale=torch.tensor(audio_scales, device=device),
        )


def initial_noise(shape, seed: int) -> torch.Tensor:
    """Seeded on the CPU so a seed gives the same video on any device."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


@torch.no_grad()
def sample(
    model: Callable,
    cond: Conditioning,
    options: SamplerOptions,
    latent_channels: int,
    device="cpu",
    dtype=torch.float32,
    on_step: Callable[[StepInfo], None] | None = None,
    check_interrupt: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Denoise from seeded noise to latents [1, C, F, h, w].

    Each step runs the guidance predictions it needs (see guidance.guidance_rows) as one batch and
    sums them with their weights. `check_interrupt` is called before every step and cancels by raising.
    """
    options.validate()
    _, _, frames, height, width = cond.condition.shape
    latents = initial_noise((1, latent_channels, frames, height, width), options.seed).to(device)
    solver = FlowSolver(options.scheduler, options.steps, options.shift)
    batches = {}
    for audio_step in (True, False):
        rows = guidance_rows(options.cfg, options.audio_cfg, audio_step)
        texts = [cond.positive if row.positive else cond.negative for row in rows]
        scales = [options.audio_scale if row.audio else 0.0 for row in rows]
        weights = torch.tensor([row.weight for row in rows], device=device).view(-1, 1, 1, 1, 1)
        batches[audio_step] = (cond.batch(texts, scales, device, dtype), weights)
    for index, timestep in enumerate(solver.timesteps):
        if check_interrupt is not None:
            check_interrupt()
        kwargs, weights = batches[audio_guidance_active(index, len(solver), options.audio_cfg_start, options.audio_cfg_end)]
        rows = weights.shape[0]
        model_in = latents.to(dtype).expand(rows, -1, -1, -1, -1)
        pred = model(model_in, timestep=timestep.expand(rows).to(device), **kwargs).float()
        velocity = (pred * weights).sum(dim=0, keepdim=True)
        if on_step is not None:
            on_step(StepInfo(index + 1, len(solver), solver.denoised(velocity, index, latents).cpu()))
        latents = solver.step(velocity, index, latents)
    return latents.cpu()
