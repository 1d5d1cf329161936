"""FantasyTalking's dual classifier-free guidance over prompt and audio."""
from __future__ import annotations

import torch


def dual_guidance(uncond: torch.Tensor, text_only: torch.Tensor, full: torch.Tensor, cfg: float, audio_cfg: float):
    """u + cfg (n - u) + audio_cfg (p - n).

    u: negative prompt, no audio; n: positive prompt, audio off; p: positive prompt with audio.
    """
    return uncond + cfg * (text_only - uncond) + audio_cfg * (full - text_only)


def prompt_guidance(uncond: torch.Tensor, cond: torch.Tensor, cfg: float) -> torch.Tensor:
    """Plain CFG; used outside the audio-guidance steps, with audio on in both predictions (upstream)."""
    return uncond + cfg * (cond - uncond)


def audio_guidance_active(step: int, steps: int, start: float, end: float) -> bool:
    """Whether step `step` of `steps` lies in the chosen [start, end) fraction of the schedule."""
    return start <= step / steps < end
