"""Frame-level audio windows of FantasyTalking: which audio tokens each latent frame attends to.

Video frames are grouped 1 + 4 + 4 + ... into latent frames (Wan's causal VAE). Latent frame i >= 1
is centred on its four video frames 4i-3..4i; latent 0 takes the window just before latent 1's.
Each window is then widened by `expand` tokens on both sides; tokens outside the sequence are
dropped and the window is right-padded with zeros, with its valid length kept for masking.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError

UPSTREAM_EXPAND = 4


def latent_frame_count(num_frames: int) -> int:
    return (num_frames - 1) // 4 + 1


def check_frame_count(num_frames: int, name: str = "num_frames") -> None:
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 5 or num_frames % 4 != 1:
        raise InputError(f"{name} must be 4k+1 and at least 5 (Wan's VAE groups frames 1+4+4...), got {num_frames!r}")


def window_ranges(num_tokens: int, num_frames: int) -> list[tuple[int, int]]:
    """Inclusive [start, end] token ranges per latent frame, before widening."""
    check_frame_count(num_frames)
    tokens_per_frame = num_tokens / num_frames
    half = int(tokens_per_frame * 4 / 2)
    # Midpoint of the first and last+1 frame positions, in the float order upstream uses (exact ties matter).
    centres = [
        int((tokens_per_frame * (4 * i - 3) + tokens_per_frame * (4 * i + 1)) / 2) - 1
        for i in range(1, latent_frame_count(num_frames))
    ]
    ranges = [(c - half, c + half) for c in centres]
    first_end = ranges[0][0]
    return [(first_end - 2 * half, first_end)] + ranges


@dataclass
class AudioWindows:
    """Projected audio tokens cut into per-latent-frame windows.

    tokens: [B, F_latent, W, C], valid tokens first then zeros; lengths: [F_latent] valid counts.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor

    @property
    def key_mask(self) -> torch.Tensor:
        """[F_latent, W] True where a window position holds a real token."""
        width = self.tokens.shape[2]
        return torch.arange(width, device=self.lengths.device)[None, :] < self.lengths[:, None]

    def to(self, device=None, dtype=None) -> "AudioWindows":
        return AudioWindows(self.tokens.to(device=device, dtype=dtype), self.lengths.to(device))

    def frames(self, start: int, end: int) -> "AudioWindows":
        """The windows of latent frames start..end-1 (one window of a long video)."""
        return AudioWindows(self.tokens[:, start:end], self.lengths[start:end])

    def select(self, rows: torch.Tensor) -> "AudioWindows":
        return AudioWindows(self.tokens.index_select(0, rows), self.lengths)


def split_windows(tokens: torch.Tensor, num_frames: int, expand: int = UPSTREAM_EXPAND) -> AudioWindows:
    """Cut [B, L, C] tokens into the windows of `window_ranges`, widened by `expand` each side."""
    if tokens.ndim != 3 or tokens.shape[1] == 0:
        raise InputError(f"audio tokens must be [batch, tokens>0, channels], got shape {tuple(tokens.shape)}")
    num_tokens = tokens.shape[1]
    ranges = torch.tensor(window_ranges(num_tokens, num_frames), device=tokens.device)
    starts, ends = ranges[:, 0] - expand, ranges[:, 1] + expand
    width = int(ends[0] - starts[0] + 1)
    valid_starts = starts.clamp(min=0)
    lengths = (ends.clamp(max=num_tokens - 1) - valid_starts + 1).clamp(min=0)
    offsets = torch.arange(width, device=tokens.device)
    positions = (valid_starts[:, None] + offsets[None, :]).clamp(max=num_tokens - 1)  # [F, W]
    gathered = tokens[:, positions]  # [B, F, W, C]
    valid = offsets[None, :] < lengths[:, None]
    return AudioWindows(gathered * valid[None, :, :, None].to(tokens.dtype), lengths)
