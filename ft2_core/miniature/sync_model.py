"""The world's second lip-sync measure: a small audio-visual sync model read out the way SyncNet's Sync-C and Sync-D
are (the paper's lip-sync metric), on another principle than the oracle's hand-made mouth measures.

Two encoders embed five-frame windows: the mouth (the portrait's mouth region, as a change from the portrait) and the
audio (per-frame loudness and band energies). Trained in the world on true against time-shifted audio
(training.miniature.train_sync), matching windows lie close. For a clip, the mean distance between each video window
and the audio window `offset` frames later is taken for offsets -MAX_OFFSET..MAX_OFFSET: the offset is where it is
least (0 when in sync), the distance that least (Sync-D, lower is better) and the confidence the median over offsets
minus that least (Sync-C, higher is better).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..io.audio import Audio, to_mono_16k
from ..io.checkpoint_io import load_state_dict
from .world import SAMPLE_RATE

WINDOW = 5
MAX_OFFSET = 8
CROP = (16, 20)  # rows, columns around the lips' centre
BANDS = 8
SHIPPED = Path(__file__).parent / "sync"


@dataclass
class SyncReading:
    confidence: float
    offset: int
    distance: float

    def as_scores(self) -> dict:
        """The reading as a judgement's keys: sync_confidence, sync_offset, sync_distance."""
        return {f"sync_{key}": value for key, value in asdict(self).items()}


def mouth_crops(frames: np.ndarray, portrait: np.ndarray) -> np.ndarray:
    """[T, 2, rows, cols]: luma and redness of the region around the portrait's lips, minus the portrait's."""
    lips = portrait[..., 0] - portrait[..., 1:].max(axis=-1) > 0.35
    rows, cols = np.nonzero(lips)
    height, width = portrait.shape[:2]
    centre_row = int(rows.mean()) + 3 if rows.size else height * 3 // 4
    centre_col = int(cols.mean()) if cols.size else width // 2
    top = int(np.clip(centre_row - CROP[0] // 2, 0, height - CROP[0]))
    left = int(np.clip(centre_col - CROP[1] // 2, 0, width - CROP[1]))

    def channels(pixels):
        region = pixels[..., top:top + CROP[0], left:left + CROP[1], :]
        return np.stack([region.mean(axis=-1), region[..., 0] - region[..., 1:].max(axis=-1)], axis=-3)

    return (channels(frames) - channels(portrait)[None]).astype(np.float32)


def audio_frames(audio: Audio, num_frames: int, fps: float) -> np.ndarray:
    """[T, 2 + BANDS]: log peak, log RMS and log band energies of the audio during each video frame."""
    samples = to_mono_16k(audio)
    per_frame = SAMPLE_RATE / fps
    length = int(round(per_frame))
    out = np.zeros((num_frames, 2 + BANDS), np.float32)
    for k in range(num_frames):
        chunk = samples[int(k * per_frame):int(k * per_frame) + length]
        chunk = np.pad(chunk, (0, length - len(chunk)))
        spectrum = np.abs(np.fft.rfft(chunk)) ** 2
        bands = [band.mean() for band in np.array_split(spectrum[1:], BANDS)]
        out[k] = np.log(np.array([np.abs(chunk).max(), np.sqrt((chunk ** 2).mean()), *bands]) + 1e-4)
    return out


def windows(per_frame: torch.Tensor) -> torch.Tensor:
    """[T, ...] -> [T - WINDOW + 1, WINDOW * ...]: every run of WINDOW consecutive frames, flattened."""
    return per_frame.unfold(0, WINDOW, 1).movedim(-1, 1).flatten(1)


def offset_distances(video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Window embeddings [..., W, E] -> [..., W - 2 MAX_OFFSET, offsets]: the distance from each video window that has
    every offset within reach to the audio window `offset` frames earlier, for offsets -MAX_OFFSET..MAX_OFFSET."""
    count = video.shape[-2] - 2 * MAX_OFFSET
    seen = video[..., MAX_OFFSET:MAX_OFFSET + count, :]
    return torch.stack([(seen - audio[..., MAX_OFFSET - o:MAX_OFFSET - o + count, :]).norm(dim=-1)
                        for o in range(-MAX_OFFSET, MAX_OFFSET + 1)], dim=-1)


class SyncModel(nn.Module):
    def __init__(self, hidden: int = 64, embedding: int = 32):
        super().__init__()
        video_in = WINDOW * 2 * CROP[0] * CROP[1]
        self.video = nn.Sequential(nn.Linear(video_in, hidden), nn.GELU(), nn.Linear(hidden, embedding))
        self.audio = nn.Sequential(nn.Linear(WINDOW * (2 + BANDS), hidden), nn.GELU(), nn.Linear(hidden, embedding))
        self.config = {"hidden": hidden, "embedding": embedding}

    def embed(self, video_windows: torch.Tensor, audio_windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened windows (see `windows`) of mouth crops and of audio features -> unit embeddings of each window."""
        return (nn.functional.normalize(self.video(video_windows), dim=-1),
                nn.functional.normalize(self.audio(audio_windows), dim=-1))

    def save(self, folder: Path) -> None:
        from ..io.checkpoint_io import save_safetensors

        folder.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.state_dict(), folder / "sync_model.safetensors")
        (folder / "config.json").write_text(json.dumps(self.config, indent=2))

    @classmethod
    def load(cls, folder: Path = SHIPPED) -> "SyncModel":
        model = cls(**json.loads((Path(folder) / "config.json").read_text()))
        model.load_state_dict(load_state_dict(Path(folder) / "sync_model.safetensors", "sync model"))
        return model.eval()

    @torch.no_grad()
    def read(self, frames: np.ndarray, audio: Audio, fps: float, portrait: np.ndarray) -> SyncReading:
        """Confidence, offset (frames; positive: the mouth moves after its sound) and least distance for one clip."""
        frames = np.asarray(frames, np.float32)
        if len(frames) < WINDOW + 2 * MAX_OFFSET:
            raise ValueError(f"the sync model needs at least {WINDOW + 2 * MAX_OFFSET} frames, got {len(frames)}")
        video, sound = self.embed(windows(torch.from_numpy(mouth_crops(frames, np.asarray(portrait, np.float32)))),
                                  windows(torch.from_numpy(audio_frames(audio, len(frames), fps))))
        distances = offset_distances(video, sound).mean(dim=0)
        least = int(distances.argmin())
        return SyncReading(float(distances.median() - distances[least]), least - MAX_OFFSET, float(distances[least]))
