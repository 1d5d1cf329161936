"""Weight-free stand-ins for the critic's three scores. They are proxies, not the Talking-Critic:
cheap signals that correlate with what it judges, mapped to 0..1 so curation can use them the same way.

- lip-sync: correlation between mouth opening (face landmarks) and the audio's loudness envelope;
- motion naturalness: there is motion, and it is smooth (little frame-to-frame jitter);
- visual quality: sharpness (Laplacian energy) without flicker (frame-brightness jumps).
"""
from __future__ import annotations

import math

import numpy as np

from ..dimensions import DIMENSION_NAMES
from ..io.audio import Audio, to_mono_16k
from .critic import check_clip

UPPER_INNER_LIP, LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT = 13, 14, 61, 291
MAX_LAG_FRAMES = 2  # speech leads or trails visible mouth motion by up to ~80 ms


def squash(value: float, centre: float, width: float) -> float:
    return 1 / (1 + math.exp(-(value - centre) / width))


def gray(frames: np.ndarray) -> np.ndarray:
    return frames @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def sharpness(frames: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian of the grey frames (0..1 pixel scale)."""
    g = gray(frames)
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    return float((lap ** 2).mean())


def flicker(frames: np.ndarray) -> float:
    """Mean absolute jump of frame brightness between consecutive frames."""
    means = gray(frames).mean(axis=(1, 2))
    return float(np.abs(np.diff(means)).mean()) if len(means) > 1 else 0.0


def motion_stats(frames: np.ndarray) -> tuple[float, float]:
    """(amount of motion, jitter): mean |frame difference| and mean |second difference| relative to it."""
    g = gray(frames)
    if len(g) < 3:
        return 0.0, 0.0
    first = np.abs(np.diff(g, axis=0)).mean()
    second = np.abs(np.diff(g, n=2, axis=0)).mean()
    return float(first), float(second / (first + 1e-6))


def loudness_envelope(audio: Audio, frames: int, fps: float) -> np.ndarray:
    """RMS of the 16 kHz mono audio per video frame."""
    wave = to_mono_16k(audio)
    per_frame = 16000 / fps
    return np.array([np.sqrt(np.mean(wave[int(i * per_frame):int((i + 1) * per_frame)] ** 2) + 1e-12) for i in range(frames)])


def best_lagged_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = MAX_LAG_FRAMES) -> float:
    """Highest Pearson correlation of a and b over shifts of up to max_lag samples (0 when either is flat)."""
    best = -1.0
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b[:len(b) - lag]) if lag >= 0 else (a[:lag], b[-lag:])
        if len(x) < 3 or x.std() < 1e-8 or y.std() < 1e-8:
            continue
        best = max(best, float(np.corrcoef(x, y)[0, 1]))
    return max(best, 0.0) if best > -1 else 0.0


class ProxyScorer:
    """Scores clips like the critic (P(Yes)-like values per dimension) without any learned weights.

    Lip-sync needs MediaPipe's face landmarker; without a face the lip-sync score is None (unknown).
    """

    def __init__(self, masker=None):
        self.masker = masker

    def mouth_opening(self, frames_uint8: np.ndarray) -> np.ndarray | None:
        openings = []
        for frame in frames_uint8:
            points = self.masker.landmarks(frame) if self.masker is not None else None
            if points is None:
                return None
            width = np.linalg.norm(points[MOUTH_RIGHT] - points[MOUTH_LEFT]) + 1e-6
            openings.append(np.linalg.norm(points[LOWER_INNER_LIP] - points[UPPER_INNER_LIP]) / width)
        return np.array(openings)

    def score_clip(self, frames, fps: float, audio: Audio | None, name: str = "clip") -> dict[str, float | None]:
        pixels = check_clip(frames, fps, audio, name).numpy()
        amount, jitter = motion_stats(pixels)
        scores = {
            "motion": squash(amount, 0.004, 0.002) * (1 - squash(jitter, 1.2, 0.2)),
            "quality": squash(math.log10(sharpness(pixels) + 1e-9), -3.0, 0.5) * (1 - squash(flicker(pixels), 0.03, 0.01)),
            "lipsync": None,
        }
        opening = self.mouth_opening((pixels * 255).round().astype(np.uint8))
        if opening is not None:
            correlation = best_lagged_correlation(opening, loudness_envelope(audio, len(pixels), fps))
            scores["lipsync"] = squash(correlation, 0.3, 0.1)
        return {d: scores[d] for d in DIMENSION_NAMES}
