"""What a user sets for sampling and for long videos, with upstream FantasyTalking's values as defaults.

Light on purpose (no diffusers, no transformers): the nodes read their widget defaults from these dataclasses
at import time, and the CLI and the pipeline fill in a model's own recommendations over them.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..checks import finite_number
from ..errors import InputError
from ..models.audio_windows import check_frame_count, latent_frame_count
from ..models.conditioning import VAE_TIME_STRIDE
from .flow import SCHEDULERS

FRAME_CAP = 100_001  # the longest video one request may ask for (4k+1)
# What a user may set: the CLI checks these before loading a model, the nodes' widgets take them as min and max.
LIMITS = {
    "steps": (1, 200),
    "cfg": (0.0, 20.0),
    "audio_cfg": (0.0, 20.0),
    "shift": (0.1, 20.0),
    "audio_scale": (0.0, 3.0),
    "fps": (1.0, 60.0),
    "max_side": (16, 1280),
    "num_frames": (5, FRAME_CAP),
    "window_frames": (5, 1001),
    "overlap_frames": (4, 160),
    "max_seconds": (0.0, 3600.0),
    "strength": (-2.0, 3.0),
}


def within(value, name: str, what: str | None = None) -> float:
    """`value` if it is a finite number inside LIMITS[name]; one sentence naming `what` (default: name) otherwise."""
    low, high = LIMITS[name]
    what = what or name
    value = finite_number(value, what)
    if not low <= value <= high:
        raise InputError(f"{what} must be between {low:g} and {high:g}, got {value:g}")
    return value


UPSTREAM_FPS = 23.0
UPSTREAM_MAX_SIDE = 512  # longest image edge; sides are multiples of 16
METHODS = ("sliding", "continuation", "single")
DEFAULT_PROMPT = "A person is talking."
# Wan's standard negative prompt (upstream FantasyTalking uses it verbatim).
DEFAULT_NEGATIVE_PROMPT = (
    "人物静止不动，静止，色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


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
    # memory: same video, less activation memory at some speed (see README "Memory")
    sequential_rows: bool = False  # run the guidance predictions one after another instead of as one batch
    ffn_chunk_tokens: int = 0  # run each block's feed-forward on this many tokens at a time (0: all at once)

    def validate(self) -> "SamplerOptions":
        for name in ("cfg", "audio_cfg", "audio_scale", "shift"):
            within(getattr(self, name), name)
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise InputError(f"steps must be a whole number, got {self.steps!r}")
        within(self.steps, "steps")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if not 0.0 <= self.audio_cfg_start <= self.audio_cfg_end <= 1.0:
            raise InputError(
                f"audio guidance range must satisfy 0 <= start <= end <= 1, got {self.audio_cfg_start}..{self.audio_cfg_end}"
            )
        if isinstance(self.ffn_chunk_tokens, bool) or not isinstance(self.ffn_chunk_tokens, int) or self.ffn_chunk_tokens < 0:
            raise InputError(f"ffn_chunk_tokens must be a whole number >= 0 (0: no chunking), got {self.ffn_chunk_tokens!r}")
        return self


@dataclass(frozen=True)
class WindowOptions:
    """How a video longer than one window is made. Frame counts are video frames: a window is 4k+1
    frames (the model's trained length: 81 for Wan2.1), the overlap a multiple of 4."""

    method: str = "sliding"
    window_frames: int = 81
    overlap_frames: int = 16

    def validate(self) -> "WindowOptions":
        if self.method not in METHODS:
            raise InputError(f"long-video method must be one of {METHODS}, got {self.method!r}")
        check_frame_count(self.window_frames, "window_frames")
        if (isinstance(self.overlap_frames, bool) or not isinstance(self.overlap_frames, int) or self.overlap_frames < 4
                or self.overlap_frames % 4 or self.overlap_frames >= self.window_frames - 1):
            raise InputError(f"overlap_frames must be a multiple of 4, at least 4 and less than window_frames - 1 "
                             f"({self.window_frames - 1}), got {self.overlap_frames!r}")
        return self

    @property
    def window_latents(self) -> int:
        return latent_frame_count(self.window_frames)

    @property
    def overlap_latents(self) -> int:
        return self.overlap_frames // VAE_TIME_STRIDE

    def first_window_frames(self, num_frames: int) -> int:
        """Video frames of the first window: the I2V condition the caller encodes has this length."""
        return num_frames if self.method == "single" else min(num_frames, self.window_frames)

    def windows(self, num_frames: int) -> list[tuple[int, int]]:
        """Latent-frame ranges [start, end) this method runs, in order."""
        latents = latent_frame_count(num_frames)
        if self.method == "single":
            return [(0, latents)]
        if self.method == "sliding":
            return sliding_windows(latents, self.window_latents, self.overlap_latents)
        return continuation_windows(latents, self.window_latents, self.overlap_latents)


def sliding_windows(latent_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Timeline ranges [start, end): the first window covers `window` latent frames; each later one starts
    `overlap` frames before the previous end and covers window - 1 (its first slot holds the portrait);
    the last is pulled back to end on the last frame. One shorter window if the video is."""
    if latent_frames <= window:
        return [(0, latent_frames)]
    windows = [(0, window)]
    while windows[-1][1] < latent_frames:
        start = windows[-1][1] - overlap
        windows.append((start, start + window - 1))
    if windows[-1][1] > latent_frames:
        windows[-1] = (latent_frames - window + 1, latent_frames)
    return windows


def continuation_windows(latent_frames: int, window: int, known: int) -> list[tuple[int, int]]:
    """Each window starts `known` latent frames before the previous one ends; the last may be short."""
    windows = [(0, min(window, latent_frames))]
    while windows[-1][1] < latent_frames:
        start = windows[-1][1] - known
        windows.append((start, min(start + window, latent_frames)))
    return windows
