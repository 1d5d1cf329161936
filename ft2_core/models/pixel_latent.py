"""A fixed, exactly invertible latent space: pixels folded space-to-depth with Wan's 1 + 4k frame layout.

The miniature model uses it in place of a trained Wan VAE: it decodes perfectly sharp (nothing to
learn, nothing to blur), and it keeps the layout the rest of the code relies on: latent frame 0 is
video frame 0, latent frame i >= 1 holds video frames 4i-3..4i, space shrinks by `spatial_stride`.
Latent 0 stores frame 0 in all four time slots, so every latent frame has the same channels.
It has the interface of `conditioning.WanVAE` (encode, decode, z_dim) and is chosen by a VAE
folder whose config.json says `"_class_name": "SpaceToDepthVAE"`.

`time_basis = "haar"` stores a latent frame's four time slots as their orthonormal Haar components (the
frames' mean, then their changes), and `latent_std` may give each component its own spread, as a real VAE
normalises each channel: a diffusion model's loss then weighs the changes within a latent frame as much as
the picture itself, instead of the 1/8 of the energy they carry in the plain slots.

`time_basis = "linear"` stores a latent frame's last frame, then each earlier frame minus the straight line from
the previous latent frame's last frame to this one's. A model that cannot tell a latent frame's four frames apart
predicts those differences near zero: it then draws motion along the line between key frames, where in the slots
it holds one picture for four frames (the gaming suite's "key frames on a line" against its "4-frame hold").
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import InputError

CLASS_NAME = "SpaceToDepthVAE"
TIME_STRIDE = 4


TIME_BASES = ("slots", "haar", "linear")
HAAR = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0], [2**0.5, -(2**0.5), 0.0, 0.0],
                     [0.0, 0.0, 2**0.5, -(2**0.5)]]) / 2  # rows: mean, first half minus second, then each half's change


def _line(ends: torch.Tensor) -> torch.Tensor:
    """[B, 3, 1, s, s, F, h, w] each latent frame's last frame -> [B, 3, 3, s, s, F, h, w] the straight line from the
    previous latent frame's last frame (latent 0's own) to it, at the first three time slots."""
    starts = torch.cat([ends[:, :, :, :, :, :1], ends[:, :, :, :, :, :-1]], dim=5)
    steps = torch.arange(1, TIME_STRIDE, dtype=ends.dtype).view(1, 1, -1, 1, 1, 1, 1, 1) / TIME_STRIDE
    return starts + (ends - starts) * steps


class SpaceToDepthVAE:
    def __init__(self, spatial_stride: int = 4, latent_mean: float = 0.0, latent_std: float | list = 0.5,
                 time_basis: str = "slots"):
        if spatial_stride < 1:
            raise InputError(f"spatial_stride must be at least 1, got {spatial_stride}")
        if time_basis not in TIME_BASES:
            raise InputError(f"time_basis must be one of {TIME_BASES}, got {time_basis!r}")
        spreads = [float(latent_std)] * TIME_STRIDE if isinstance(latent_std, (int, float)) else [float(v) for v in latent_std]
        if len(spreads) != TIME_STRIDE or min(spreads) <= 0:
            raise InputError(f"latent_std must be a positive number or {TIME_STRIDE} (one per time component), got {latent_std}")
        self.spatial_stride, self.mean, self.std, self.time_basis = spatial_stride, latent_mean, latent_std, time_basis
        self._spread = torch.tensor(spreads).view(1, 1, TIME_STRIDE, 1, 1, 1, 1, 1)  # over [B, 3, 4, s, s, F, h, w]
        self._basis = HAAR if time_basis == "haar" else torch.eye(TIME_STRIDE)

    @classmethod
    def from_folder(cls, folder) -> "SpaceToDepthVAE":
        config = json.loads((Path(folder) / "config.json").read_text())
        return cls(config["spatial_stride"], config.get("latent_mean", 0.0), config.get("latent_std", 0.5),
                   config.get("time_basis", "slots"))

    def save(self, folder) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "config.json").write_text(json.dumps({
            "_class_name": CLASS_NAME, "spatial_stride": self.spatial_stride, "latent_mean": self.mean,
            "latent_std": self.std, "time_basis": self.time_basis,
        }, indent=2))

    @property
    def z_dim(self) -> int:
        return 3 * TIME_STRIDE * self.spatial_stride ** 2

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, 4k+1, H, W] in -1..1 -> latents [B, z, k+1, H/s, W/s]."""
        batch, channels, frames, height, width = video.shape
        s = self.spatial_stride
        if channels != 3 or frames % TIME_STRIDE != 1 or height % s or width % s:
            raise InputError(f"video for the pixel latent must be [B, 3, 4k+1, H, W] with sides divisible by {s}, "
                             f"got {tuple(video.shape)}")
        video = video.float().cpu()
        padded = torch.cat([video[:, :, :1].expand(-1, -1, TIME_STRIDE - 1, -1, -1), video], dim=2)
        blocks = padded.reshape(batch, 3, -1, TIME_STRIDE, height // s, s, width // s, s)
        slots = blocks.permute(0, 1, 3, 5, 7, 2, 4, 6)  # [B, 3, 4, s, s, F, h, w]
        if self.time_basis == "linear":
            ends = slots[:, :, -1:]
            components = torch.cat([ends, slots[:, :, :-1] - _line(ends)], dim=2)
        else:
            components = torch.einsum("kt,bctxyfhw->bckxyfhw", self._basis, slots)
        return ((components - self.mean) / self._spread).reshape(batch, self.z_dim, -1, height // s, width // s)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [1, z, F, h, w] -> frames [4(F-1)+1, H, W, 3] in 0..1 (latent 0: the mean of its four slots)."""
        if latents.ndim != 5 or latents.shape[0] != 1 or latents.shape[1] != self.z_dim:
            raise InputError(f"pixel latents must be [1, {self.z_dim}, F, h, w], got {tuple(latents.shape)}")
        _, _, count, h, w = latents.shape
        s = self.spatial_stride
        components = latents.float().cpu().reshape(1, 3, TIME_STRIDE, s, s, count, h, w) * self._spread + self.mean
        if self.time_basis == "linear":
            ends = components[:, :, :1]
            slots = torch.cat([components[:, :, 1:] + _line(ends), ends], dim=2)[0]
        else:
            slots = torch.einsum("kt,bckxyfhw->ctxyfhw", self._basis, components)  # the basis is orthonormal: its transpose
        blocks = slots.permute(4, 1, 0, 5, 2, 6, 3)  # F, 4, 3, h, s, w, s
        frames = blocks.reshape(count, TIME_STRIDE, 3, h * s, w * s)
        video = torch.cat([frames[:1].mean(dim=1), frames[1:].flatten(0, 1)], dim=0)  # [T, 3, H, W]
        return ((video.permute(0, 2, 3, 1) + 1) / 2).clamp(0, 1)


def is_pixel_latent_folder(folder) -> bool:
    config = Path(folder) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("_class_name") == CLASS_NAME
