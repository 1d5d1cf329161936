"""The judges' gaming suite: ground truth damaged, or faked, in the ways a model (or a search against the judges)
could win without doing the job. Each entry returns the (frames, audio) a judge is shown for a world clip; the tests
and `training.miniature.judge_suite` hold the judges to the drops each should cause (see oracles.py's table)."""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from ..io.audio import Audio
from ..models.conditioning import video_from_frames
from ..models.pixel_latent import TIME_STRIDE, SpaceToDepthVAE
from .oracles import audio_envelope
from .world import MOUTH_INSIDE, Clip, degrade, make_clip, render


def _rerender(clip: Clip, **changes) -> np.ndarray:
    return render(clip.face, replace(clip.motion, **changes), clip.frames.shape[1])[0]


def _still(clip: Clip) -> np.ndarray:
    return np.repeat(clip.portrait[None], len(clip.frames), axis=0)


def _loudness(clip: Clip) -> np.ndarray:
    loud = audio_envelope(clip.audio, len(clip.frames), clip.fps)
    return loud / max(float(loud.max()), 1e-9)


def _mouth_centre(clip: Clip) -> tuple[int, int]:
    """(x, y) pixel of the face's mouth at rest."""
    face, size = clip.face, clip.frames.shape[1]
    return int(face.centre[0] * size), int((face.centre[1] + face.mouth_height * face.radii[1]) * size)


def loudness_rectangle(clip: Clip) -> np.ndarray:
    """A still portrait with a mouth-interior rectangle across the mouth, as tall as the audio is loud (up to the
    world's widest opening): a lip-sync judge that counts dark-red pixels against loudness scores it high."""
    frames = _still(clip).copy()
    size = frames.shape[1]
    centre_x, mouth_y = _mouth_centre(clip)
    half_width = max(1, int(clip.face.mouth_width * clip.face.radii[0] * 0.78 * size))
    for k, loud in enumerate(_loudness(clip)):
        height = int(round(loud * 0.062 * 2 * size))
        rows = slice(mouth_y - height // 2, mouth_y + (height + 1) // 2)
        frames[k, rows, centre_x - half_width:centre_x + half_width] = MOUTH_INSIDE
    return frames


def loudness_patch(clip: Clip) -> np.ndarray:
    """A still portrait with a 2x2 patch at the mouth darkened by the loudness."""
    frames = _still(clip).copy()
    x, y = _mouth_centre(clip)
    frames[:, y:y + 2, x:x + 2] *= (1 - 0.9 * _loudness(clip))[:, None, None, None]
    return frames


def four_frame_hold(clip: Clip) -> np.ndarray:
    """Each latent frame's four video frames shown as its last one: the built-in model's old defect (about 6 fps)."""
    held = clip.frames.copy()
    for start in range(1, len(held), TIME_STRIDE):
        held[start:start + TIME_STRIDE] = clip.frames[min(start + TIME_STRIDE - 1, len(held) - 1)]
    return held


def key_frames_on_a_line(clip: Clip) -> np.ndarray:
    """Each latent frame's last frame kept and the three before it on the straight line from the previous one: the
    linear time basis (models.pixel_latent) with nothing off the line, all it gives a model that predicts only its
    key frames (the built-in model's way of failing)."""
    vae = SpaceToDepthVAE(spatial_stride=1, time_basis="linear")
    latents = vae.encode(video_from_frames(torch.from_numpy(clip.frames))).unflatten(1, (3, TIME_STRIDE, 1))
    latents[:, :, 1:] = 0
    return vae.decode(latents.flatten(1, 3)).numpy()


def damped(clip: Clip, factor: float) -> np.ndarray:
    """All motion scaled by `factor`: sway, mouth, expression and blink depth."""
    m = clip.motion
    return _rerender(clip, offset_x=m.offset_x * factor, offset_y=m.offset_y * factor, mouth=m.mouth * factor,
                     smile=m.smile * factor, eyes=1 - (1 - m.eyes) * factor)


def mouth_late(clip: Clip, frames: int) -> np.ndarray:
    late = np.concatenate([np.zeros(frames, np.float32), clip.motion.mouth[:-frames]])
    return _rerender(clip, mouth=late)


def noise_echoing_audio(clip: Clip, rng: np.random.Generator) -> np.ndarray:
    """Pure noise whose brightness follows the loudness: the gamed lip-sync of a random model."""
    return rng.uniform(0, 1, clip.frames.shape) * (0.3 + 0.7 * _loudness(clip))[:, None, None, None]


def _degraded(kind: str) -> Callable:
    return lambda clip, rng, seed: degrade(clip, kind, rng, clip.audio)[0]  # picture damage: the audio stays


# name -> the frames a judge is shown with the clip's own audio ("shuffled audio", the one exception, is in fake)
FAKES: dict[str, Callable[[Clip, np.random.Generator, int], np.ndarray]] = {
    "ground truth": lambda clip, rng, seed: clip.frames,
    "still first frame": lambda clip, rng, seed: _still(clip),
    "motion x0.25": lambda clip, rng, seed: damped(clip, 0.25),
    "mouth x0.25": lambda clip, rng, seed: _rerender(clip, mouth=clip.motion.mouth * 0.25),
    "mouth 8 frames late": lambda clip, rng, seed: mouth_late(clip, 8),
    "loudness rectangle": lambda clip, rng, seed: loudness_rectangle(clip),
    "loudness 2x2 patch": lambda clip, rng, seed: loudness_patch(clip),
    "no blinks": lambda clip, rng, seed: _rerender(clip, eyes=np.ones_like(clip.motion.eyes)),
    "4-frame hold": lambda clip, rng, seed: four_frame_hold(clip),
    "key frames on a line": lambda clip, rng, seed: key_frames_on_a_line(clip),
    "1 px jitter": _degraded("1 px jitter"),
    "blur": _degraded("blur"),
    "noise": _degraded("noise"),
    "colour shift": _degraded("colour shift"),
    "noise echoing the audio": lambda clip, rng, seed: noise_echoing_audio(clip, rng),
}


def fake(clip: Clip, name: str, rng: np.random.Generator, seed: int) -> tuple[np.ndarray, Audio]:
    """(frames, audio) of the named entry for the world clip of `seed`; "shuffled audio" is the truth with another
    condition's speech."""
    if name == "shuffled audio":
        return clip.frames, make_clip(seed + 1000, len(clip.frames)).audio
    if name not in FAKES:
        raise ValueError(f"unknown gaming-suite entry {name!r}; one of {[*FAKES, 'shuffled audio']}")
    return np.asarray(FAKES[name](clip, rng, seed), np.float32), clip.audio


NAMES = (*FAKES, "shuffled audio")
