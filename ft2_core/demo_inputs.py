"""Generated demo inputs, so the demo needs no files: a drawn portrait and a speech-like clip."""
from __future__ import annotations

import numpy as np
import torch

from .audio import Audio


def demo_portrait(height: int = 320, width: int = 256) -> torch.Tensor:
    """A simple cartoon face on a backdrop, float [H, W, 3] in 0..1."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (70, 110, 160))
    draw = ImageDraw.Draw(img)
    cx, cy, rx, ry = width // 2, height // 2, width * 0.3, height * 0.32
    draw.rectangle([cx - rx * 0.9, cy + ry * 0.8, cx + rx * 0.9, height], fill=(40, 40, 60))  # shoulders
    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=(232, 190, 160))  # face
    draw.chord([cx - rx * 1.05, cy - ry * 1.15, cx + rx * 1.05, cy - ry * 0.1], 180, 360, fill=(60, 40, 30))  # hair
    for side in (-1, 1):
        ex = cx + side * rx * 0.4
        draw.ellipse([ex - 10, cy - ry * 0.2 - 6, ex + 10, cy - ry * 0.2 + 6], fill=(255, 255, 255))
        draw.ellipse([ex - 4, cy - ry * 0.2 - 4, ex + 4, cy - ry * 0.2 + 4], fill=(40, 30, 20))
    draw.ellipse([cx - rx * 0.35, cy + ry * 0.4, cx + rx * 0.35, cy + ry * 0.6], fill=(170, 60, 70))  # mouth
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)


def demo_speech(seconds: float = 2.0, sample_rate: int = 16000) -> Audio:
    """Vowel-like harmonics with a syllable envelope (~4 syllables/s) and a gliding pitch."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = 140 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5
    wave = 0.3 * voice * envelope / np.abs(voice).max()
    return Audio(wave[None].astype(np.float32), sample_rate)
