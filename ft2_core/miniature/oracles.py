"""Oracles of the talking-face world: lip-sync, motion naturalness and visual quality from pixels and audio.

They play the paper's human raters and its metrics (Sync-C, FVD, the user study). They read only
the video, its audio, the input portrait and (for sharpness) the ground-truth clip; never the
generator's parameters. They rely on the world's rules (see world.py): lips are a saturated red,
the open mouth is near-black red, eye whites are the only near-white pixels, the background is
plain at the left and right edges. Every score is in 0..1, higher is better.

Formulas (T frames, audio envelope a_k = RMS of the 16 kHz audio over frame k's 1/fps):
- mouth opening m_k = sum over the mouth box of inside(p), inside = clip((0.25 - luma)/0.1) * clip((R - G - 0.1)/0.1);
  the box is the portrait's lip pixels (R - max(G, B) > 0.35), widened for head motion and the jaw drop.
- lip-sync = max(0, max over lags -2..2 of Pearson(m_k, a_{k-lag})) x picture gate, where the picture
  gate = clip((structure - 0.5) / 0.3), structure = mean over frames of the normalised cross-correlation
  of blur(frame) with blur(portrait) (blind to colour offset and gain): noise that echoes the audio scores 0.
- head position h_k = centroid of foreground weight (distance from the row's edge colour) above the mouth;
  presence = 1 - exp(-sqrt(var(h_x) + var(h_y)) / 0.15 px);
  smoothness = exp(-mean over frames of (|second difference of h_x| + |... of h_y|) / 0.4 px);
  blinks: eye openness o_k = eye-white pixels in the portrait's eye box / the clip's median, closed if o_k < 0.5;
  plausible = (1 - clip((0.85 - share of open frames) / 0.3)) x (1 - clip((closures per s - 1.5) / 1.5))
  x (0.5 if a closure lasts over 8 frames); motion naturalness = presence x smoothness x plausible.
- sharpness = min(r, 1/r)^2 with r = (mean |x difference| + mean |y difference|) of the video / of the ground truth;
  colour = exp(-||mean RGB of video - of portrait|| / 0.1); identity = exp(-mean |blur(frame) - blur(portrait)| / 0.12);
  flicker = exp(-mean |second time difference of blur(frames)| / 0.03);
  visual quality = sharpness x colour x identity x flicker.
The constants were set on the ground truth and on the perturbations in the tests, before any
model was trained, and are not tuned to any model's output.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..dimensions import DIMENSION_NAMES
from ..io.audio import Audio, to_mono_16k

MAX_LAG = 2


@dataclass
class OracleScores:
    lipsync: float
    motion: float
    quality: float
    details: dict

    def as_dict(self) -> dict:
        return asdict(self)

    def by_dimension(self) -> dict[str, float]:
        """The three scores keyed by dimension name (ft2_core.dimensions), as judgement files store them."""
        return {name: getattr(self, name) for name in DIMENSION_NAMES}


def audio_envelope(audio: Audio, num_frames: int, fps: float) -> np.ndarray:
    """RMS loudness of the audio during each video frame."""
    samples = to_mono_16k(audio)
    per_frame = 16000 / fps
    envelope = np.zeros(num_frames)
    for k in range(num_frames):
        chunk = samples[int(k * per_frame):int((k + 1) * per_frame)]
        envelope[k] = np.sqrt(np.mean(chunk ** 2)) if chunk.size else 0.0
    return envelope


def _clip01(x):
    return np.clip(x, 0.0, 1.0)


def _box(mask: np.ndarray, grow: tuple[int, int, int, int]) -> tuple[slice, slice] | None:
    """Bounding box of a boolean mask, grown by (up, down, left, right) pixels; None if empty."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    height, width = mask.shape
    up, down, left, right = grow
    return (slice(max(0, rows.min() - up), min(height, rows.max() + 1 + down)),
            slice(max(0, cols.min() - left), min(width, cols.max() + 1 + right)))


def _blur(images: np.ndarray, radius: int = 2) -> np.ndarray:
    """Box blur over the two pixel axes of [..., H, W, C] (separable, edge-padded)."""
    out = images
    for axis in (-3, -2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="edge")
        cumulative = np.cumsum(padded, axis=axis)
        zero = np.zeros_like(np.take(cumulative, [0], axis=axis))
        cumulative = np.concatenate([zero, cumulative], axis=axis)
        size = 2 * radius + 1
        out = (np.take(cumulative, np.arange(size, cumulative.shape[axis]), axis=axis)
               - np.take(cumulative, np.arange(0, cumulative.shape[axis] - size), axis=axis)) / size
    return out


def _best_lag_correlation(series: np.ndarray, envelope: np.ndarray) -> tuple[float, int]:
    best, best_lag = 0.0, 0
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        a = series[max(0, lag):len(series) + min(0, lag)]
        b = envelope[max(0, -lag):len(envelope) - max(0, lag)]
        if a.std() < 1e-6 or b.std() < 1e-9:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        if r > best:
            best, best_lag = r, lag
    return best, best_lag


def mouth_box(portrait: np.ndarray) -> tuple[slice, slice] | None:
    """Where the mouth can be in a clip of this portrait: its lip pixels, widened for head motion and the jaw drop."""
    return _box(portrait[..., 0] - portrait[..., 1:].max(axis=-1) > 0.35, (3, 8, 3, 3))


class WorldLipMasker:
    """The world's lip mask for any clip of it (generated ones too): the mouth box of its first frame.

    The interface of lip_mask.LipMasker; used where MediaPipe finds no face (this world's cartoons)."""

    def frame_masks(self, frames: np.ndarray) -> np.ndarray | None:
        first = np.asarray(frames[0], np.float64)
        box = mouth_box(first / 255.0 if np.asarray(frames).dtype == np.uint8 else first)
        if box is None:
            return None
        masks = np.zeros(np.asarray(frames).shape[:3], bool)
        masks[:, box[0], box[1]] = True
        return masks

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def mouth_opening(frames: np.ndarray, portrait: np.ndarray) -> np.ndarray:
    """Near-black-red pixels in the mouth box, per frame (0 everywhere if the portrait shows no lips)."""
    box = mouth_box(portrait)
    if box is None:
        return np.zeros(len(frames))
    region = frames[:, box[0], box[1]]
    luma = region.mean(axis=-1)
    inside = _clip01((0.25 - luma) / 0.1) * _clip01((region[..., 0] - region[..., 1] - 0.1) / 0.1)
    return inside.sum(axis=(1, 2))


def head_positions(frames: np.ndarray, portrait: np.ndarray) -> np.ndarray:
    """[T, 2] centroid (x, y) of the head's foreground weight, in pixels."""
    edge = np.concatenate([portrait[:, :3], portrait[:, -3:]], axis=1).mean(axis=1)  # [H, 3] background per row
    lips = portrait[..., 0] - portrait[..., 1:].max(axis=-1) > 0.35
    rows = np.nonzero(lips)[0]
    bottom = int(rows.max()) + 1 if rows.size else portrait.shape[0] * 3 // 4
    weight = _clip01((np.abs(frames[:, :bottom] - edge[None, :bottom, None]).sum(axis=-1) - 0.1) / 0.15)
    total = weight.sum(axis=(1, 2)) + 1e-6
    ys, xs = np.mgrid[:bottom, :portrait.shape[1]]
    return np.stack([(weight * xs).sum(axis=(1, 2)) / total, (weight * ys).sum(axis=(1, 2)) / total], axis=1)


def eye_openness(frames: np.ndarray, portrait: np.ndarray) -> np.ndarray:
    """Eye-white pixels in the portrait's eye boxes per frame, relative to the clip's median (blinks are dips)."""
    box = _box(_clip01((portrait.min(axis=-1) - 0.8) / 0.1) > 0.5, (3, 3, 3, 3))
    if box is None:
        return np.ones(len(frames))
    skin = np.median(portrait[box[0], box[1]].min(axis=-1))
    region = frames[:, box[0], box[1]].min(axis=-1)
    white = _clip01((region - skin) / max(0.97 - skin, 0.05)).sum(axis=(1, 2))
    return white / max(float(np.median(white)), 1e-6)


def blink_plausibility(openness: np.ndarray, fps: float) -> float:
    closed = openness < 0.5
    runs, length = [], 0
    for value in closed:
        if value:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    if length:
        runs.append(length)
    open_share = 1 - closed.mean()
    closures_per_second = len(runs) / (len(openness) / fps)
    score = (1 - _clip01((0.85 - open_share) / 0.3)) * (1 - _clip01((closures_per_second - 1.5) / 1.5))
    return float(score * (0.5 if runs and max(runs) > 8 else 1.0))


def structure(frames: np.ndarray, portrait: np.ndarray) -> float:
    """Mean over frames of the normalised cross-correlation with the portrait (blind to colour offset and gain)."""
    a = frames - frames.mean(axis=(1, 2), keepdims=True)
    b = portrait - portrait.mean(axis=(0, 1), keepdims=True)
    ncc = (a * b).sum(axis=(1, 2, 3)) / (np.sqrt((a * a).sum(axis=(1, 2, 3)) * (b * b).sum()) + 1e-9)
    return float(ncc.mean())


def sharpness(frames: np.ndarray) -> float:
    return float(np.abs(np.diff(frames, axis=1)).mean() + np.abs(np.diff(frames, axis=2)).mean())


def frame_hold_ratio(frames: np.ndarray) -> float:
    """Mean frame-to-frame change into frames 4k+1 (k >= 1: the first frame of each latent frame) over the mean change
    into every other frame. A diagnostic of Wan's 1 + 4k layout, not a score: about 1 in the world's ground truth, far
    above when a model holds each latent frame's four frames alike and jumps between latent frames."""
    pixels = np.asarray(frames, dtype=np.float64)
    change = np.abs(np.diff(pixels, axis=0)).reshape(len(pixels) - 1, -1).mean(axis=1)  # [t - 1]: change into frame t
    into = np.arange(1, len(pixels))
    at_latent_starts = (into % 4 == 1) & (into > 1)
    return float(change[at_latent_starts].mean() / max(change[~at_latent_starts].mean(), 1e-12))


def score_clip(frames, audio: Audio, fps: float, portrait: np.ndarray, ground_truth: np.ndarray | None = None) -> OracleScores:
    """All three oracles for one clip. frames/portrait/ground_truth: float [T, H, W, 3] / [H, W, 3] in 0..1."""
    frames = np.asarray(frames, np.float64)
    portrait = np.asarray(portrait, np.float64)
    if frames.ndim != 4 or frames.shape[1:] != portrait.shape:
        raise ValueError(f"frames {frames.shape} and portrait {portrait.shape} must be [T, H, W, 3] and [H, W, 3]")
    blurred, blurred_portrait = _blur(frames), _blur(portrait[None])[0]
    identity = float(np.exp(-np.abs(blurred - blurred_portrait).mean() / 0.12))
    colour = float(np.exp(-np.linalg.norm(frames.mean(axis=(0, 1, 2)) - portrait.mean(axis=(0, 1))) / 0.1))
    flicker = float(np.exp(-np.abs(np.diff(blurred, n=2, axis=0)).mean() / 0.03)) if len(frames) > 2 else 1.0
    ratio = sharpness(frames) / sharpness(np.asarray(ground_truth if ground_truth is not None else portrait[None], np.float64))
    sharp = float(min(ratio, 1 / max(ratio, 1e-9)) ** 2)
    quality = sharp * colour * identity * flicker

    gate = float(_clip01((structure(blurred, blurred_portrait) - 0.5) / 0.3))
    correlation, lag = _best_lag_correlation(mouth_opening(frames, portrait), audio_envelope(audio, len(frames), fps))
    lipsync = correlation * gate

    heads = head_positions(blurred, blurred_portrait)
    presence = float(1 - np.exp(-np.sqrt(heads.var(axis=0).sum()) / 0.15))
    jerk = float(np.abs(np.diff(heads, n=2, axis=0)).sum(axis=1).mean()) if len(frames) > 2 else 0.0
    smooth = float(np.exp(-jerk / 0.4))
    blinks = blink_plausibility(eye_openness(_blur(frames, 1), portrait), fps)
    motion = presence * smooth * blinks
    details = dict(sync_correlation=correlation, sync_lag=lag, picture_gate=gate, presence=presence, smoothness=smooth,
                   blinks=blinks, sharpness=sharp, colour=colour, identity=identity, flicker=flicker)
    return OracleScores(float(lipsync), float(motion), float(quality), details)
