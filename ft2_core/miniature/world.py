"""The miniature talking-face world: seeded portraits, speech-like audio and the video that belongs to them.

Everything is procedural and exact, so a model trained here can be judged against the truth:
the mouth opens with the audio envelope (lagging it slightly), the eyes blink, the head sways and
the expression drifts. Shapes are drawn from signed distances with one pixel of anti-aliasing, so
sub-pixel motion moves pixels smoothly (no staircase jitter in the ground truth itself).

World rules the oracles rely on (they read pixels, never these parameters): lips are a saturated
red that neither skin, hair nor background uses; the mouth interior is near-black red; the eye
whites are the only near-white pixels; the background is a vertical gradient, plain at the left
and right edges.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.audio import Audio

SAMPLE_RATE = 16000
FPS = 23.0
SIZE = 64
MOUTH_LAG_SECONDS = 0.03  # the mouth follows the sound it makes by about a frame's fraction
BLINK_RATE = 0.35  # blinks per second
BLINK_FRAMES = 5
HELD_OUT_SEEDS_FROM = 10**9  # training draws world seeds below this; the test split: from here to VALIDATION_SEEDS_FROM
VALIDATION_SEEDS_FROM = 2 * 10**9  # the validation split's conditions (settings are chosen on these, never on test)

SKIN = np.array([[0.96, 0.82, 0.72], [0.90, 0.72, 0.58], [0.76, 0.57, 0.42], [0.58, 0.40, 0.28], [0.42, 0.29, 0.21]])
HAIR = np.array([[0.08, 0.07, 0.07], [0.30, 0.20, 0.12], [0.50, 0.36, 0.20], [0.85, 0.72, 0.45], [0.62, 0.62, 0.64],
                 [0.20, 0.25, 0.45]])
LIPS = np.array([[0.80, 0.16, 0.28], [0.72, 0.12, 0.20], [0.86, 0.26, 0.40]])
MOUTH_INSIDE = np.array([0.28, 0.03, 0.06])
EYE_WHITE = np.array([0.97, 0.97, 0.95])
PUPIL = np.array([0.10, 0.08, 0.10])


@dataclass(frozen=True)
class Face:
    """A portrait's identity, in units of the frame size (0..1)."""

    background_top: np.ndarray
    background_bottom: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    lips: np.ndarray
    shirt: np.ndarray
    centre: tuple[float, float]  # face centre (x, y)
    radii: tuple[float, float]  # face half-width, half-height
    eye_height: float  # eye line, relative to the face centre, in face half-heights (negative = up)
    eye_spread: float  # half distance between the eyes, in face half-widths
    eye_radius: float
    mouth_height: float  # mouth line, relative to the face centre, in face half-heights
    mouth_width: float  # half width, in face half-widths
    hair_volume: float


@dataclass(frozen=True)
class Motion:
    """Per-frame state of a clip: head offset (pixels), mouth opening 0..1, eye openness 0..1, smile -1..1."""

    offset_x: np.ndarray
    offset_y: np.ndarray
    mouth: np.ndarray
    eyes: np.ndarray
    smile: np.ndarray


@dataclass(frozen=True)
class Clip:
    face: Face
    audio: Audio
    frames: np.ndarray  # [T, H, W, 3] float32 in 0..1
    portrait: np.ndarray  # [H, W, 3]: the face at rest (the input image)
    mouth_masks: np.ndarray  # [T, H, W] float32 0..1: where the mouth is in each frame (this world's lip mask)
    motion: Motion
    fps: float


def random_face(rng: np.random.Generator) -> Face:
    hue = rng.uniform(0.3, 0.75)  # blues and greens and greys: never the lips' red
    base = np.array([0.5 + 0.2 * np.cos(2 * np.pi * hue), 0.5 + 0.2 * np.cos(2 * np.pi * (hue - 1 / 3)),
                     0.5 + 0.2 * np.cos(2 * np.pi * (hue - 2 / 3))])
    base = np.clip(base * rng.uniform(0.7, 1.15), 0.15, 0.78)
    grey = rng.uniform(0, 0.5)
    base = (1 - grey) * base + grey * base.mean()
    return Face(
        background_top=np.clip(base * 1.12, 0, 0.8), background_bottom=np.clip(base * 0.75, 0, 0.8),
        skin=np.clip(SKIN[rng.integers(len(SKIN))] + rng.normal(0, 0.02, 3), 0, 1),
        hair=np.clip(HAIR[rng.integers(len(HAIR))] + rng.normal(0, 0.02, 3), 0, 1),
        lips=np.clip(LIPS[rng.integers(len(LIPS))] + rng.normal(0, 0.02, 3), 0, 1),
        shirt=rng.uniform(0.1, 0.6, 3) * np.array([0.6, 1.0, 1.0]),
        centre=(0.5 + rng.uniform(-0.04, 0.04), 0.48 + rng.uniform(-0.03, 0.03)),
        radii=(rng.uniform(0.22, 0.28), rng.uniform(0.29, 0.34)),
        eye_height=rng.uniform(-0.3, -0.15), eye_spread=rng.uniform(0.36, 0.46), eye_radius=rng.uniform(0.045, 0.058),
        mouth_height=rng.uniform(0.42, 0.55), mouth_width=rng.uniform(0.32, 0.42), hair_volume=rng.uniform(0.08, 0.16),
    )


# ------------------------------------------------------------------ audio
def speech(rng: np.random.Generator, seconds: float) -> tuple[Audio, np.ndarray]:
    """Speech-like audio (syllables with pitch and loudness, grouped in words, pauses) and its loudness envelope.

    Returns the clip at 16 kHz and the synthesis envelope [samples] (ground truth for the mouth).
    """
    total = int(seconds * SAMPLE_RATE)
    wave = np.zeros(total, np.float64)
    envelope = np.zeros(total, np.float64)
    pitch_base = rng.uniform(95, 230)
    t = rng.uniform(0.0, 0.25)  # a short lead-in
    while t < seconds:
        for _ in range(rng.integers(1, 5)):  # a word of 1-4 syllables
            length = rng.uniform(0.11, 0.26)
            start, stop = int(t * SAMPLE_RATE), min(total, int((t + length) * SAMPLE_RATE))
            if start >= total:
                break
            n = stop - start
            local = np.arange(n) / SAMPLE_RATE
            loudness = rng.uniform(0.35, 1.0)
            rise = np.clip(local / 0.03, 0, 1)
            fall = np.clip((length - local) / 0.06, 0, 1)
            env = loudness * np.sin(0.5 * np.pi * rise) * np.sin(0.5 * np.pi * fall)
            f0 = pitch_base * rng.uniform(0.85, 1.2) * (1 + rng.uniform(-0.15, 0.15) * local / length)
            phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
            formants = rng.uniform([300, 900], [850, 2300])  # a vowel: two formant peaks
            voice = np.zeros(n)
            for k in range(1, 16):
                freq = k * f0.mean()
                gain = sum(np.exp(-((freq - f) / 160) ** 2) for f in formants) + 0.15 / k
                voice += gain * np.sin(k * phase)
            voice /= np.abs(voice).max() + 1e-9
            onset = min(n, int(0.02 * SAMPLE_RATE))  # a consonant burst
            voice[:onset] += rng.normal(0, 0.3, onset) * np.linspace(1, 0, onset)
            wave[start:stop] += env * voice
            envelope[start:stop] = np.maximum(envelope[start:stop], env)
            t += length + rng.uniform(0.0, 0.04)
        t += rng.uniform(0.08, 0.4)  # a pause between words
    wave = 0.5 * wave / (np.abs(wave).max() + 1e-9)
    return Audio(wave[None].astype(np.float32), SAMPLE_RATE), envelope.astype(np.float32)


def mouth_track(envelope: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """Mouth opening per frame: the synthesis envelope around each frame's time, MOUTH_LAG_SECONDS late."""
    opening = np.zeros(num_frames, np.float32)
    half = int(0.5 / fps * SAMPLE_RATE)
    for k in range(num_frames):
        centre = int((k / fps - MOUTH_LAG_SECONDS) * SAMPLE_RATE)
        window = envelope[max(0, centre - half):max(0, centre + half)]
        opening[k] = window.mean() if window.size else 0.0
    return np.clip(opening * 1.2, 0, 1) ** 0.8


def random_motion(rng: np.random.Generator, num_frames: int, fps: float, opening: np.ndarray, size: int) -> Motion:
    t = np.arange(num_frames) / fps
    unit = size / 64.0

    def sway(amplitude):
        return sum(amplitude * rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 2 * np.pi))
                   for _ in range(2)) * unit

    eyes = np.ones(num_frames, np.float32)
    time, blink_shape = 0.2 + rng.exponential(1 / BLINK_RATE) * 0.7, np.sin(np.linspace(0, np.pi, BLINK_FRAMES + 2)[1:-1])
    while time < num_frames / fps:
        start = int(time * fps)
        for i, depth in enumerate(blink_shape):
            if start + i < num_frames:
                eyes[start + i] = 1 - 0.95 * depth
        time += BLINK_FRAMES / fps + rng.exponential(1 / BLINK_RATE)
    smile = 0.3 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 2 * np.pi))
    offset_x, offset_y = sway(1.3), sway(0.5)
    # Frame 0 is the portrait at rest (Wan's I2V keeps the given image as the first frame).
    return Motion((offset_x - offset_x[0]).astype(np.float32), (offset_y - offset_y[0]).astype(np.float32),
                  opening.astype(np.float32), eyes, np.clip(smile - smile[0], -1, 1).astype(np.float32))


# ------------------------------------------------------------------ drawing
def _ellipse(x, y, cx, cy, rx, ry, pixel):
    """Coverage 0..1 of an axis-aligned ellipse, anti-aliased over about one pixel."""
    distance = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) - 1.0
    return np.clip(0.5 - distance * np.minimum(rx, ry) / pixel, 0, 1)


def _paint(canvas, coverage, colour):
    canvas *= 1 - coverage[..., None]
    canvas += coverage[..., None] * colour


def render(face: Face, motion: Motion, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Frames [T, H, W, 3] and mouth masks [T, H, W] for a face in the given per-frame states (vectorised over T)."""
    frames = len(motion.mouth)
    pixel = 1.0 / size
    coords = (np.arange(size) + 0.5) / size
    y, x = coords[None, :, None], coords[None, None, :]
    col = lambda a: np.asarray(a, np.float64)[:, None, None]  # noqa: E731 - per-frame scalars broadcast over pixels
    dx, dy = col(motion.offset_x) * pixel, col(motion.offset_y) * pixel
    cx, cy = face.centre[0] + dx, face.centre[1] + dy
    rx, ry = face.radii
    mix = np.broadcast_to(y, (frames, size, size))
    canvas = (1 - mix[..., None]) * face.background_top + mix[..., None] * face.background_bottom
    canvas = np.array(canvas, np.float64)
    _paint(canvas, _ellipse(x, y, face.centre[0] + 0.5 * dx, 1.08 + 0.5 * dy, rx * 1.7, 0.3, pixel), face.shirt)  # shoulders
    _paint(canvas, _ellipse(x, y, cx, face.centre[1] + 0.55 * ry + dy, rx * 0.42, ry * 0.6, pixel), face.skin * 0.85)  # neck
    hair = _ellipse(x, y, cx, cy - ry * 0.12, rx * (1 + face.hair_volume), ry * (1 + face.hair_volume * 0.8), pixel)
    _paint(canvas, hair * (y < cy + ry * 0.1), face.hair)  # hair behind the face, down to the ears
    _paint(canvas, _ellipse(x, y, cx, cy + ry * 0.06, rx, ry * 0.94, pixel), face.skin)
    _paint(canvas, _ellipse(x, y, cx, cy - ry * 0.85, rx * 0.92, ry * 0.3, pixel) * (y < cy - ry * 0.6), face.hair)  # fringe
    eye_y = cy + face.eye_height * ry
    openness = col(motion.eyes)
    for side in (-1, 1):
        ex = cx + side * face.eye_spread * rx
        r = face.eye_radius
        white = _ellipse(x, y, ex, eye_y, r * 1.35, np.maximum(r * 0.85 * openness, 0.2 * pixel), pixel)
        _paint(canvas, white, EYE_WHITE)
        _paint(canvas, _ellipse(x, y, ex, eye_y, r * 0.55, np.maximum(r * 0.55 * openness, 0.1 * pixel), pixel) * white, PUPIL)
        brow_y = eye_y - r * 1.9 - col(motion.smile) * r * 0.25
        _paint(canvas, _ellipse(x, y, ex, brow_y, r * 1.5, r * 0.32, pixel), face.hair * 0.7)
    mouth_y = cy + face.mouth_height * ry
    half_width = face.mouth_width * rx * (1 + 0.12 * col(motion.smile))
    opening = col(motion.mouth)
    lip_height = 0.018 + 0.07 * opening
    lips = _ellipse(x, y, cx, mouth_y + 0.35 * lip_height * opening, half_width, lip_height, pixel)
    _paint(canvas, lips, face.lips)
    inside_height = np.maximum(0.062 * opening, 0.15 * pixel)
    _paint(canvas, _ellipse(x, y, cx, mouth_y + 0.35 * lip_height * opening, half_width * 0.78, inside_height, pixel)
           * np.clip(opening * 8, 0, 1), MOUTH_INSIDE)
    mask = _ellipse(x, y, cx, mouth_y + 0.35 * lip_height * opening, half_width * 1.25, lip_height * 1.5 + 2 * pixel, pixel)
    return np.clip(canvas, 0, 1).astype(np.float32), mask.astype(np.float32)


def rest_motion(num_frames: int = 1) -> Motion:
    zeros = np.zeros(num_frames, np.float32)
    return Motion(zeros, zeros, zeros, np.ones(num_frames, np.float32), zeros)


def portrait(face: Face, size: int = SIZE) -> np.ndarray:
    """The face at rest: centred, mouth closed, eyes open, neutral expression."""
    return render(face, rest_motion(1), size)[0][0]


def make_clip(seed: int, num_frames: int = 33, size: int = SIZE, fps: float = FPS, face_seed: int | None = None) -> Clip:
    """One talking-face clip, fully determined by `seed` (and `face_seed` for the identity, default the same)."""
    rng = np.random.default_rng([seed, 1])
    face = random_face(np.random.default_rng([seed if face_seed is None else face_seed, 0]))
    audio, envelope = speech(rng, num_frames / fps)
    motion = random_motion(rng, num_frames, fps, mouth_track(envelope, num_frames, fps), size)
    frames, masks = render(face, motion, size)
    return Clip(face, audio, frames, frames[0].copy(), masks, motion, fps)


def speech_clip(seed: int, seconds: float) -> Audio:
    """Speech of any duration, seeded (the demo's and the long-audio tests' input)."""
    return speech(np.random.default_rng([seed, 2]), seconds)[0]


DEGRADATIONS = ("shuffled audio", "frozen first frame", "1 px jitter", "blur", "colour shift", "noise")
# Which of the three dimensions each kind of damage hurts, by construction (a frozen face neither moves nor speaks).
HURTS = {"shuffled audio": ("lipsync",), "frozen first frame": ("motion", "lipsync"), "1 px jitter": ("motion",),
         "blur": ("quality",), "colour shift": ("quality",), "noise": ("quality",)}


def box_blur3(frames: np.ndarray) -> np.ndarray:
    """A 3x3 box blur of [T, H, W, 3] frames (edge-padded)."""
    padded = np.pad(frames, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = frames.shape[1:3]
    return sum(padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)) / 9


def degrade(clip: Clip, kind: str, rng: np.random.Generator, other_audio: Audio) -> tuple[np.ndarray, Audio]:
    """A damaged version of a clip (frames, audio), each kind hurting one dimension: what raters learn to reject."""
    frames = clip.frames
    if kind == "shuffled audio":
        return frames, other_audio
    if kind == "frozen first frame":
        return np.repeat(frames[:1], len(frames), axis=0), clip.audio
    if kind == "1 px jitter":
        shifts = rng.integers(-1, 2, (len(frames), 2))
        return np.stack([np.roll(f, tuple(s), axis=(0, 1)) for f, s in zip(frames, shifts)]), clip.audio
    if kind == "blur":
        return box_blur3(frames), clip.audio
    if kind == "colour shift":
        return np.clip(frames + np.array([0.08, -0.05, 0.0], np.float32), 0, 1), clip.audio
    if kind == "noise":
        return np.clip(frames + rng.normal(0, 0.15, frames.shape), 0, 1).astype(np.float32), clip.audio
    raise ValueError(f"unknown degradation {kind!r}; one of {DEGRADATIONS}")
