"""Toy labelled clips for the tiny critic: each answer is visible in the frames or audible in the audio.

motion Yes: a square moves (No: it stays); quality Yes: bright and clean (No: dark and noisy);
lipsync Yes: a voiced, syllabic sound (No: steady hiss at the same loudness). A toy to check the
critic trainer, not real data.

    python training/synthetic_clips.py OUT_FOLDER [--clips 48] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ft2_core.dimensions import DIMENSION_NAMES  # noqa: E402
from ft2_core.io.audio import Audio  # noqa: E402
from ft2_core.io.video_io import write_mp4  # noqa: E402

FPS, FRAMES, SIDE, RATE = 8.0, 16, 64, 16000


def toy_clip(motion: bool, quality: bool, lipsync: bool, rng: np.random.Generator) -> tuple[np.ndarray, Audio]:
    base = 0.75 if quality else 0.25
    frames = np.full((FRAMES, SIDE, SIDE, 3), base, dtype=np.float32)
    for t in range(FRAMES):
        x = 8 + (t * 3 if motion else 0) % (SIDE - 24)
        frames[t, 20:36, x:x + 16] = 1 - base
    if not quality:
        frames += rng.normal(0, 0.15, frames.shape).astype(np.float32)
    seconds = FRAMES / FPS
    t = np.arange(int(seconds * RATE)) / RATE
    if lipsync:
        sound = sum(np.sin(2 * np.pi * k * 160 * t) / k for k in range(1, 5)) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    else:
        sound = rng.normal(0, 1, t.shape)
    audio = 0.3 * sound / np.abs(sound).max()
    return np.clip(frames, 0, 1), Audio(audio[None].astype(np.float32), RATE)


def make_labelled_clips(folder: str | Path, clips: int = 48, seed: int = 0, heldout: float = 0.25) -> tuple[Path, Path]:
    """Write clips and two label files (train, held-out); returns their paths."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    records = []
    for i in range(clips):
        labels = {d: bool(rng.integers(2)) for d in DIMENSION_NAMES}
        frames, audio = toy_clip(labels["motion"], labels["quality"], labels["lipsync"], rng)
        name = f"clip{i:04d}.mp4"
        if not (folder / name).is_file():
            write_mp4(folder / name, frames, FPS, audio)
        records.append({"video": name, **{d: "Yes" if v else "No" for d, v in labels.items()}})
    split = int(len(records) * (1 - heldout))
    paths = folder / "labels_train.jsonl", folder / "labels_heldout.jsonl"
    for path, part in zip(paths, (records[:split], records[split:])):
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(*make_labelled_clips(args.out, args.clips, args.seed), sep="\n")
