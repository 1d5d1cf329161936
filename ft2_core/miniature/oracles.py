"""Oracles of the talking-face world: lip-sync, motion naturalness and visual quality from pixels and audio.

They play the paper's human raters and its metrics (Sync-C, FVD, the user study). They read the video, its audio,
the condition's face (its portrait and the mouth the world draws for a given sound) and the condition's true video;
never a generator's parameters. They rely on the world's rules (see world.py): lips are a saturated red, the open
mouth is near-black red, eye whites are the only near-white pixels, the background is plain at the left and right
edges. Every score is in 0..1, higher is better. PROTOCOL_VERSION names this set of formulas and constants; every
table says which version made it.

Formulas, protocol 2 (T frames; blur = a 5x5 box blur):
- lip-sync: the expected mouth is the face at rest with the opening world.mouth_track gives for the clip's own
  audio (its synthesis envelope read back as the peak |sample| over 8 ms, doubled). Two per-frame measures, on the
  video and on the expected mouth: the open mouth's near-black-red area (mouth_opening) and the lips' area
  (lip_area: they thicken as the mouth opens). agreement = max(0, Pearson) x (smaller spread / larger spread), so
  timing, shape and amplitude all count; lip-sync = picture gate x sqrt(agreement of the opening x of the lips).
  The picture gate = clip((structure - 0.5) / 0.3), structure = the mean normalised cross-correlation of
  blur(frame) with blur(portrait): noise that echoes the audio scores 0.
- motion: head position h_k = centroid of foreground weight above the mouth; presence = 1 - exp(-sqrt(var(h)) /
  0.15 px); smoothness = exp(-mean |second difference of h| / 0.4 px); blinks: eye openness o_k = eye-white pixels
  in the portrait's eye box / the clip's median, closed if o_k < 0.5; plausible = (1 - clip((0.85 - share open) /
  0.3)) x (1 - clip((closures per s - 1.5) / 1.5)) x (0.5 if a closure lasts over 8 frames) x (MISSED_BLINKS_FACTOR
  if the truth blinks and the video never does); motion = presence x smoothness x plausible.
- quality = sharpness x colour x identity x flicker x liveliness: sharpness = min(r, 1/r)^2, r = mean |pixel
  difference| across x and y of the video over the truth's; colour = exp(-|mean RGB - the portrait's| / 0.1);
  identity = exp(-max(0, drift from the portrait - the truth's drift) / 0.12), drift = mean |blur(frame) -
  blur(portrait)|; flicker = exp(-max(0, mean |second time difference of blur| - the truth's) / FLICKER_SCALE);
  liveliness = min(c, 1/c)^LIVELINESS_POWER, c = mean |frame change of blur| over the truth's (FVD's view: a still
  or damped video is not a good video of a talking face, nor is one that changes too much).

The constants were set on ground truth and the gaming suite (gaming.py) alone, before any model was scored with
this protocol, and are frozen. The suite on 16 validation conditions (`python -m training.miniature.judge_suite`,
training/miniature/results/judge_suite.md), mean lip-sync / motion / quality:

| row | motion naturalness | lip-sync | visual quality |
|---|---|---|---|
| ground truth | 0.837 ± 0.130 | 0.937 ± 0.031 | 0.936 ± 0.032 |
| still first frame | 0.000 ± 0.000 | 0.000 ± 0.000 | 0.000 ± 0.000 |
| motion x0.25 | 0.561 ± 0.245 | 0.235 ± 0.033 | 0.482 ± 0.018 |
| mouth x0.25 | 0.837 ± 0.130 | 0.241 ± 0.031 | 0.750 ± 0.073 |
| mouth 8 frames late | 0.838 ± 0.130 | 0.008 ± 0.033 | 0.872 ± 0.055 |
| loudness rectangle | 0.000 ± 0.000 | 0.000 ± 0.000 | 0.523 ± 0.088 |
| loudness 2x2 patch | 0.000 ± 0.000 | 0.000 ± 0.000 | 0.128 ± 0.026 |
| no blinks | 0.631 ± 0.231 | 0.937 ± 0.031 | 0.894 ± 0.063 |
| 4-frame hold | 0.357 ± 0.116 | 0.474 ± 0.165 | 0.755 ± 0.054 |
| key frames on a line | 0.806 ± 0.159 | 0.573 ± 0.075 | 0.798 ± 0.056 |
| 1 px jitter | 0.001 ± 0.003 | 0.931 ± 0.036 | 0.101 ± 0.031 |
| blur | 0.851 ± 0.132 | 0.715 ± 0.039 | 0.619 ± 0.059 |
| noise | 0.152 ± 0.061 | 0.535 ± 0.097 | 0.000 ± 0.000 |
| colour shift | 0.855 ± 0.158 | 0.636 ± 0.303 | 0.287 ± 0.007 |
| noise echoing the audio | 0.000 ± 0.000 | 0.000 ± 0.000 | 0.000 ± 0.000 |
| shuffled audio | 0.837 ± 0.130 | 0.204 ± 0.171 | 0.936 ± 0.032 |

Known limits: a video that blinks in every clip is never marked down for a missed blink (the world blinks 0.35
times a second, so a 33-frame truth blinks in about 2 of 5 clips); a colour shift also lowers lip-sync (the lips'
threshold is a colour test).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..dimensions import DIMENSION_NAMES
from ..io.audio import Audio, to_mono_16k
from .world import SAMPLE_RATE, Face, Motion, mouth_track, render, rest_motion

PROTOCOL_VERSION = 2
FLICKER_SCALE = 0.03
LIVELINESS_POWER = 0.5
MISSED_BLINKS_FACTOR = 0.5


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


def closed_runs(openness: np.ndarray) -> list[int]:
    """Lengths of the runs of frames with the eyes closed (openness under half the clip's median)."""
    runs, length = [], 0
    for value in openness < 0.5:
        if value:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    return runs + [length] if length else runs


def closures(openness: np.ndarray) -> int:
    return len(closed_runs(openness))


def blink_plausibility(openness: np.ndarray, fps: float) -> float:
    closed = openness < 0.5
    runs = closed_runs(openness)
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


def audio_peak_envelope(audio: Audio) -> np.ndarray:
    """The speech's synthesis envelope read back from its samples: the peak |sample| over 8 ms, doubled (the world
    normalises its speech to a peak of 0.5 and every syllable's voice to a peak of 1), per 16 kHz sample."""
    samples = np.abs(to_mono_16k(audio))
    width = int(0.008 * SAMPLE_RATE)
    whole = len(samples) // width * width
    peaks = np.repeat(samples[:whole].reshape(-1, width).max(axis=1), width)
    return 2.0 * np.concatenate([peaks, np.full(len(samples) - whole, peaks[-1] if whole else 0.0)])


def expected_mouth_frames(face: Face, audio: Audio, num_frames: int, fps: float, size: int) -> np.ndarray:
    """The face at rest with its mouth where the world's rule (world.mouth_track) puts it for this audio."""
    opening = mouth_track(audio_peak_envelope(audio), num_frames, fps)
    rest = rest_motion(num_frames)
    return render(face, Motion(rest.offset_x, rest.offset_y, opening, rest.eyes, rest.smile), size)[0]


def lip_area(frames: np.ndarray, portrait: np.ndarray) -> np.ndarray:
    """Saturated-red (lip) pixels in the mouth box, per frame: the lips thicken as the mouth opens."""
    box = mouth_box(portrait)
    if box is None:
        return np.zeros(len(frames))
    region = frames[:, box[0], box[1]]
    return _clip01((region[..., 0] - region[..., 1:].max(axis=-1) - 0.25) / 0.1).sum(axis=(1, 2))


def agreement(observed: np.ndarray, expected: np.ndarray) -> float:
    """How well a per-frame mouth measure follows the expected one: its correlation (shape and timing, floored at 0)
    times its amplitude (the smaller over the larger of the two spreads). Blind to a constant offset."""
    spread_observed, spread_expected = float(observed.std()), float(expected.std())
    if spread_observed < 1e-6 or spread_expected < 1e-6:
        return 0.0
    correlation = float(np.corrcoef(observed, expected)[0, 1])
    return max(0.0, correlation) * min(spread_observed, spread_expected) / max(spread_observed, spread_expected)


def change_per_frame(blurred: np.ndarray) -> float:
    return float(np.abs(np.diff(blurred, axis=0)).mean()) if len(blurred) > 1 else 0.0


def flicker_amount(blurred: np.ndarray) -> float:
    return float(np.abs(np.diff(blurred, n=2, axis=0)).mean()) if len(blurred) > 2 else 0.0


def score_clip(frames, audio: Audio, fps: float, face: Face, ground_truth: np.ndarray) -> OracleScores:
    """All three oracles for one clip of the condition `face` whose true video is `ground_truth`.

    frames / ground_truth: float [T, H, W, 3] in 0..1. The portrait is the face at rest; lip-sync is judged against
    `audio` (the clip's own soundtrack), motion and quality against what the truth shows."""
    frames = np.asarray(frames, np.float64)
    truth = np.asarray(ground_truth, np.float64)
    size = frames.shape[1] if frames.ndim == 4 else 0
    if frames.ndim != 4 or frames.shape[1:] != (size, size, 3) or truth.shape[1:] != frames.shape[1:]:
        raise ValueError(f"frames {frames.shape} and ground_truth {truth.shape} must be square [T, H, W, 3] of one size")
    portrait = render(face, rest_motion(1), size)[0][0].astype(np.float64)
    blurred, blurred_portrait, blurred_truth = _blur(frames), _blur(portrait[None])[0], _blur(truth)

    # quality: the picture's own qualities, and how much of the truth's life it keeps (a still or damped video
    # loses the latter: FVD's view); stillness earns nothing on identity or flicker beyond what the truth earns
    ratio = sharpness(frames) / sharpness(truth)
    sharp = float(min(ratio, 1 / max(ratio, 1e-9)) ** 2)
    colour = float(np.exp(-np.linalg.norm(frames.mean(axis=(0, 1, 2)) - portrait.mean(axis=(0, 1))) / 0.1))
    drift = float(np.abs(blurred - blurred_portrait).mean() - np.abs(blurred_truth - blurred_portrait).mean())
    identity = float(np.exp(-max(0.0, drift) / 0.12))
    flicker = float(np.exp(-max(0.0, flicker_amount(blurred) - flicker_amount(blurred_truth)) / FLICKER_SCALE))
    life = change_per_frame(blurred) / max(change_per_frame(blurred_truth), 1e-9)
    liveliness = float(min(life, 1 / max(life, 1e-9)) ** LIVELINESS_POWER)
    quality = sharp * colour * identity * flicker * liveliness

    # lip-sync: the mouth's opening and lips against the world's mouth for this audio, behind the picture gate
    gate = float(_clip01((structure(blurred, blurred_portrait) - 0.5) / 0.3))
    expected = expected_mouth_frames(face, audio, len(frames), fps, size).astype(np.float64)
    inside_fit = agreement(mouth_opening(frames, portrait), mouth_opening(expected, portrait))
    lips_fit = agreement(lip_area(frames, portrait), lip_area(expected, portrait))
    lipsync = gate * float(np.sqrt(inside_fit * lips_fit))

    heads = head_positions(blurred, blurred_portrait)
    presence = float(1 - np.exp(-np.sqrt(heads.var(axis=0).sum()) / 0.15))
    jerk = float(np.abs(np.diff(heads, n=2, axis=0)).sum(axis=1).mean()) if len(frames) > 2 else 0.0
    smooth = float(np.exp(-jerk / 0.4))
    openness = eye_openness(_blur(frames, 1), portrait)
    blinks = blink_plausibility(openness, fps)
    if closures(openness) == 0 < closures(eye_openness(_blur(truth, 1), portrait)):
        blinks *= MISSED_BLINKS_FACTOR
    motion = presence * smooth * blinks
    details = dict(inside_fit=inside_fit, lips_fit=lips_fit, picture_gate=gate, presence=presence, smoothness=smooth,
                   blinks=blinks, sharpness=sharp, colour=colour, identity=identity, flicker=flicker, liveliness=liveliness)
    return OracleScores(float(lipsync), float(motion), float(quality), details)
