"""The FantasyTalking sampling loop of one window: batched guidance passes, a flow solver, progress and
cancellation (sampling.long_video.sample_long runs it over a whole video, in windows when it is long)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..models.audio_windows import AudioWindows
from ..models.talking_model import ffn_chunking
from .flow import FlowSolver
from .guidance import audio_guidance_active, guidance_rows
from .options import SamplerOptions


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


def initial_noise(shape, seed: int) -> torch.Tensor:
    """Seeded on the CPU so a seed gives the same video on any device."""
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)


class GuidedVelocity:
    """The guided velocity of one step: the guidance predictions it needs (see guidance.guidance_rows),
    run as one batch and summed with their weights. Text and image rows are stacked once and shared
    by every call; the latents, I2V condition and audio windows are per call (one window of a long video)."""

    def __init__(self, model: Callable, cond: Conditioning, options: SamplerOptions, device, dtype):
        self.model, self.options, self.device, self.dtype = model, options, device, dtype
        self.batches = {}
        for audio_step in (True, False):
            rows = guidance_rows(options.cfg, options.audio_cfg, audio_step)
            text = torch.cat([cond.positive if row.positive else cond.negative for row in rows]).to(device, dtype)
            image = None if cond.image is None else cond.image.to(device, dtype).expand(len(rows), -1, -1)
            scales = torch.tensor([options.audio_scale if row.audio else 0.0 for row in rows], device=device)
            weights = torch.tensor([row.weight for row in rows], device=device).view(-1, 1, 1, 1, 1)
            self.batches[audio_step] = (text, image, scales, weights)

    def __call__(self, latents, condition, audio: AudioWindows, timestep, index: int, steps: int) -> torch.Tensor:
        """latents [1, C, F, h, w] at solver step `index` of `steps` -> velocity [1, C, F, h, w] (float32).
        With `sequential_rows` the predictions run one at a time: the activations of one row, not of all."""
        active = audio_guidance_active(index, steps, self.options.audio_cfg_start, self.options.audio_cfg_end)
        text, image, scales, weights = self.batches[active]
        latents, condition = latents.to(self.device, self.dtype), condition.to(self.device, self.dtype)
        audio = audio.to(self.device, self.dtype)
        groups = [slice(r, r + 1) for r in range(weights.shape[0])] if self.options.sequential_rows else [slice(None)]
        velocity = 0
        with ffn_chunking(self.model, self.options.ffn_chunk_tokens):
            for rows in groups:
                count = weights[rows].shape[0]
                pred = self.model(
                    latents.expand(count, -1, -1, -1, -1), condition=condition.expand(count, -1, -1, -1, -1),
                    timestep=timestep.expand(count).to(self.device), text=text[rows],
                    image=None if image is None else image[rows],
                    audio=AudioWindows(audio.tokens.expand(count, -1, -1, -1), audio.lengths), audio_scale=scales[rows],
                ).float()
                velocity = velocity + (pred * weights[rows]).sum(dim=0, keepdim=True)
        return velocity


class StepReporter:
    """Progress and cancellation over a run of `total` model steps (windows x steps for a long video)."""

    def __init__(self, total: int, on_step: Callable[[StepInfo], None] | None, check_interrupt: Callable[[], None] | None):
        self.total, self.on_step, self.check_interrupt, self.done = total, on_step, check_interrupt, 0

    def before_step(self) -> None:
        if self.check_interrupt is not None:
            self.check_interrupt()

    def after_step(self, denoised: Callable[[], torch.Tensor]) -> None:
        self.done += 1
        if self.on_step is not None:
            self.on_step(StepInfo(self.done, self.total, denoised().cpu()))


def hold_known(latents: torch.Tensor, known: torch.Tensor | None, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Put the leading latent frames that are given (`known`) on their noisy path (1 - sigma) x0 + sigma * noise."""
    if known is None:
        return latents
    count = known.shape[2]
    held = (1 - sigma) * known.to(latents.device, torch.float32) + sigma * noise[:, :, :count].to(latents.device)
    return torch.cat([held.to(latents.dtype), latents[:, :, count:]], dim=2)


@torch.no_grad()
def denoise(guided: GuidedVelocity, noise: torch.Tensor, condition: torch.Tensor, audio: AudioWindows,
            reporter: StepReporter, known: torch.Tensor | None = None) -> torch.Tensor:
    """One window from `noise` [1, C, F, h, w] to clean latents; `known` leading latent frames are held exactly."""
    options = guided.options
    solver = FlowSolver(options.scheduler, options.steps, options.shift)
    noise = noise.to(guided.device)
    latents = noise
    for index, timestep in enumerate(solver.timesteps):
        latents = hold_known(latents, known, noise, float(solver.sigmas[index]))
        reporter.before_step()
        velocity = guided(latents, condition, audio, timestep, index, len(solver))
        reporter.after_step(lambda: solver.denoised(velocity, index, latents))
        latents = solver.step(velocity, index, latents)
    return hold_known(latents, known, noise, 0.0).cpu()
