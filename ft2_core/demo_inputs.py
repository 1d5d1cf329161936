"""Demo inputs, so the demo needs no files: a portrait and a speech clip from the miniature world."""
from __future__ import annotations

import numpy as np
import torch

from .io.audio import Audio
from .miniature.world import portrait, random_face, speech_clip

DEMO_SEED = 2024


def demo_portrait(size: int = 64) -> torch.Tensor:
    """A face of the miniature world at rest, float [size, size, 3] in 0..1 (the built-in model animates it)."""
    return torch.from_numpy(portrait(random_face(np.random.default_rng([DEMO_SEED, 0])), size))


def demo_speech(seconds: float = 3.5) -> Audio:
    """Speech-like syllables with pauses at 16 kHz, from the same world."""
    return speech_clip(DEMO_SEED, seconds)
