"""FantasyTalking's dual classifier-free guidance over prompt and audio, as a weighted sum of predictions.

In the audio-guidance steps: u + cfg (n - u) + audio_cfg (p - n) = (1 - cfg) u + (cfg - audio_cfg) n + audio_cfg p
(u: negative prompt, no audio; n: positive prompt, audio off; p: positive prompt with audio). Outside them,
plain prompt CFG with audio on in both: (1 - cfg) u' + cfg p. A prediction whose weight is zero is not
computed at all: cfg 1 needs no negative-prompt row, cfg = audio_cfg needs no audio-off row (the upstream
default 5/5 runs two rows, not three), cfg 1 with audio_cfg 1 a single row.
"""
from __future__ import annotations

from typing import NamedTuple


class Row(NamedTuple):
    """One prediction of a guidance step: which prompt, whether the audio is on, and its weight."""

    positive: bool
    audio: bool
    weight: float


def guidance_rows(cfg: float, audio_cfg: float, audio_step: bool) -> list[Row]:
    """The predictions a step needs and their weights (rows of weight zero left out)."""
    if audio_step:
        rows = [Row(False, False, 1.0 - cfg), Row(True, False, cfg - audio_cfg), Row(True, True, audio_cfg)]
    else:
        rows = [Row(False, True, 1.0 - cfg), Row(True, True, cfg)]
    kept = [row for row in rows if row.weight != 0.0]
    return kept or [Row(True, True, 0.0)]  # every weight zero: the sum is zero, one row shows its shape


def audio_guidance_active(step: int, steps: int, start: float, end: float) -> bool:
    """Whether step `step` of `steps` lies in the chosen [start, end) fraction of the schedule."""
    return start <= step / steps < end
