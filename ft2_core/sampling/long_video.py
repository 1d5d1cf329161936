"""Talking videos longer than the model's trained length, in windows of that length.

All methods share one latent timeline whose audio windows are cut once for the whole video, so every
frame hears the audio that plays at its time, exactly as in a single long window:

- "sliding": overlapping windows over the timeline, each denoised at every step with its own slice
  of the audio windows; their velocities are fused in the overlap with weights that fall off toward
  window edges (summing to one on every frame). The first window is plain I2V (the video starts on the
  portrait); every later one gets the portrait as an extra first latent frame, held clean on its noisy
  path and dropped from the output: each window is conditioned as the model was trained (portrait
  first, video after it) without any frame of the video being pulled back to the portrait.
- "continuation": one window after another; each starts from the last frames of the one before,
  marked as known through the I2V mask (re-encoded from the decoded frames, as Wan encodes a start
  image) and held on their noisy trajectory at every step, so the video continues without a seam.
- "single": the whole video in one forward (memory and attention grow with length; for comparison).

Memory is that of one window except for "single".
"""
from __future__ import annotations

from typing import Callable, Protocol

import torch

from ..errors import InputError
from ..models.audio_windows import check_frame_count, latent_frame_count
from ..models.conditioning import VAE_TIME_STRIDE, condition_latents, encode_i2v_condition
from .flow import FlowSolver
from .options import SamplerOptions, WindowOptions
from .sampler import Conditioning, GuidedVelocity, StepInfo, StepReporter, denoise, hold_known, initial_noise


class FrameCodec(Protocol):
    """What continuation needs of a VAE: conditioning.WanVAE, pixel_latent.SpaceToDepthVAE or a node's adapter."""

    def encode(self, video: torch.Tensor) -> torch.Tensor: ...  # [1, 3, T, H, W] in -1..1 -> normalised latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...  # normalised latents -> [T, H, W, 3] in 0..1


def fusion_weights(windows: list[tuple[int, int]], latent_frames: int, overlap: int) -> list[torch.Tensor]:
    """Per window, a weight per latent frame: a ramp over `overlap`+1 frames at each inner edge (full weight
    at the video's own ends), normalised so that the windows covering a frame sum to one."""
    raw, total = [], torch.zeros(latent_frames, dtype=torch.float64)
    for start, end in windows:
        position = torch.arange(end - start, dtype=torch.float64)
        rise = torch.ones_like(position) if start == 0 else ((position + 1) / (overlap + 1)).clamp(max=1)
        fall = torch.ones_like(position) if end == latent_frames else ((end - start - position) / (overlap + 1)).clamp(max=1)
        raw.append(torch.minimum(rise, fall))
        total[start:end] += raw[-1]
    return [(weight / total[start:end]).float() for weight, (start, end) in zip(raw, windows)]


@torch.no_grad()
def sample_long(
    model: Callable,
    cond: Conditioning,
    options: SamplerOptions,
    windows: WindowOptions,
    num_frames: int,
    latent_channels: int,
    device="cpu",
    dtype=torch.float32,
    on_step: Callable[[StepInfo], None] | None = None,
    check_interrupt: Callable[[], None] | None = None,
    codec: FrameCodec | None = None,
) -> torch.Tensor:
    """Latents [1, C, F, h, w] of a `num_frames` video. `cond.audio` holds the windows of all F latent
    frames; `cond.condition` is the I2V condition of the first window (windows.first_window_frames long).
    Continuation needs `codec` to turn the end of one window into the start of the next.
    StepInfo counts window steps: windows x steps in all."""
    options.validate()
    windows.validate()
    check_frame_count(num_frames)
    latent_frames = latent_frame_count(num_frames)
    if cond.audio.lengths.shape[0] != latent_frames:
        raise InputError(
            f"audio windows cover {cond.audio.lengths.shape[0]} latent frames; {num_frames} frames need {latent_frames}"
        )
    first = latent_frame_count(windows.first_window_frames(num_frames))
    if cond.condition.shape[2] != first:
        raise InputError(f"the I2V condition has {cond.condition.shape[2]} latent frames; the first window needs {first}")
    plan = windows.windows(num_frames)
    if windows.method == "continuation" and len(plan) > 1 and codec is None:
        raise InputError("continuation needs a VAE to re-encode the end of each window")
    _, _, _, height, width = cond.condition.shape
    noise = initial_noise((1, latent_channels, latent_frames, height, width), options.seed)
    guided = GuidedVelocity(model, cond, options, device, dtype)
    reporter = StepReporter(options.steps * len(plan), on_step, check_interrupt)
    if len(plan) == 1:  # one window (a short video, or "single"): the plain sampler loop
        return denoise(guided, noise, cond.condition, cond.audio, reporter)
    if windows.method == "continuation":
        return continue_windows(guided, noise, cond, plan, windows.overlap_latents, codec, reporter)
    return slide_windows(guided, noise, cond, plan, windows.overlap_latents, reporter)


def slide_windows(guided: GuidedVelocity, noise, cond: Conditioning, plan, overlap: int, reporter: StepReporter) -> torch.Tensor:
    """Every step: each window's velocity on its slice of the timeline, fused with `fusion_weights`. A window
    after the first runs with the portrait's latents in front (held on their noisy path; the audio just
    before the window, as Wan's first latent frame hears), whose velocity is dropped."""
    options = guided.options
    solver = FlowSolver(options.scheduler, options.steps, options.shift)
    latents = noise.to(guided.device)
    portrait = cond.condition[:, -noise.shape[1] :, :1]  # the I2V latents of the portrait: Wan encodes it alone first
    weights = [w.to(guided.device).view(1, 1, -1, 1, 1) for w in fusion_weights(plan, noise.shape[2], overlap)]
    for index, timestep in enumerate(solver.timesteps):
        fused = torch.zeros_like(latents, dtype=torch.float32)
        sigma = float(solver.sigmas[index])
        for (start, end), weight in zip(plan, weights):
            window, first = latents[:, :, start:end], 0
            if start > 0:  # the portrait slot: (1 - sigma) portrait + sigma * (the noise of the video's first frame)
                window, first = torch.cat([hold_known(latents[:, :, :1], portrait, noise, sigma), window], dim=2), 1
            reporter.before_step()
            velocity = guided(window, cond.condition, cond.audio.frames(start - first, end), timestep, index, len(solver))
            reporter.after_step(lambda: solver.denoised(velocity, index, window))
            fused[:, :, start:end] += velocity[:, :, first:] * weight
        latents = solver.step(fused, index, latents)
    return latents.cpu()


def continue_windows(
    guided: GuidedVelocity, noise, cond: Conditioning, plan, known: int, codec: FrameCodec | None, reporter: StepReporter
) -> torch.Tensor:
    """Window by window; each after the first starts from the decoded last frames of the one before."""
    pieces, previous = [], None
    for start, end in plan:
        frames = VAE_TIME_STRIDE * (end - start - 1) + 1
        if previous is None:
            condition, known_latents = cond.condition, None
        else:
            tail = codec.decode(previous)[-(VAE_TIME_STRIDE * (known - 1) + 1) :]  # the frames of its last `known` latents
            condition = encode_i2v_condition(lambda video: codec.encode(video).float(), tail, frames)
            known_latents = condition_latents(condition)[:, :, :known]
        window = denoise(guided, noise[:, :, start:end], condition, cond.audio.frames(start, end), reporter, known_latents)
        pieces.append(window if previous is None else window[:, :, known:])
        previous = window
    return torch.cat(pieces, dim=2)
