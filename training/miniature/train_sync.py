"""Train the world's audio-visual sync model (ft2_core.miniature.sync_model) on true world clips: each five-frame
mouth window must pick its own audio window among the audio windows -MAX_OFFSET..MAX_OFFSET frames away (an
InfoNCE over offsets, the readout's own question). Clips are blurred or noised at random, so the model keys on the
mouth's motion rather than on the truth's exact pixels. A few minutes on a CPU.

    python -m training.miniature.train_sync [--out ft2_core/miniature/sync] [--clips 400] [--steps 3000] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ft2_core.io.atomic import staged_folder
from ft2_core.miniature.sync_model import MAX_OFFSET, SHIPPED, SyncModel, audio_frames, mouth_crops, offset_distances, windows
from ft2_core.miniature.world import box_blur3, make_clip

TRAIN_SEEDS_FROM = 7_000_000  # the training split (below HELD_OUT_SEEDS_FROM), apart from the base model's draws
FRAMES = 33


def photometric(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A blur half the time and noise of a random strength: what generated videos look like next to the truth."""
    if rng.random() < 0.5:
        frames = box_blur3(frames)
    return np.clip(frames + rng.normal(0, rng.uniform(0, 0.05), frames.shape), 0, 1).astype(np.float32)


def clip_windows(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Video windows [N, clips' windows, ...] and audio windows of `count` training clips."""
    rng = np.random.default_rng(seed)
    videos, sounds = [], []
    for i in range(count):
        clip = make_clip(TRAIN_SEEDS_FROM + seed * 100_000 + i, FRAMES)
        videos.append(windows(torch.from_numpy(mouth_crops(photometric(clip.frames, rng), clip.portrait))))
        sounds.append(windows(torch.from_numpy(audio_frames(clip.audio, FRAMES, clip.fps))))
    return torch.stack(videos), torch.stack(sounds)


def offset_loss(model: SyncModel, video: torch.Tensor, sound: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of picking offset 0 among all offsets, by distance, for every window that has them all."""
    distances = offset_distances(*model.embed(video, sound))  # [B, windows in reach, offsets]
    target = torch.full(distances.shape[:2], MAX_OFFSET, dtype=torch.long)
    return torch.nn.functional.cross_entropy((-scale * distances).flatten(0, 1), target.flatten())


def train(out: Path, clips: int, steps: int, seed: int, command: str, batch: int = 32) -> dict:
    torch.manual_seed(seed)
    started = time.perf_counter()
    video, sound = clip_windows(clips, seed)
    model = SyncModel()
    scale = torch.nn.Parameter(torch.tensor(5.0))
    optimizer = torch.optim.AdamW([*model.parameters(), scale], lr=1e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        rows = torch.randint(0, clips, (batch,), generator=g)
        loss = offset_loss(model, video[rows], sound[rows], scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % 500 == 0:
            print(f"step {step + 1}: loss {loss.item():.4f}", flush=True)
    produced_by = {"command": command, "seconds": round(time.perf_counter() - started, 1), "final_loss": loss.item(),
                   "clips": clips, "steps": steps, "seed": seed}
    with staged_folder(out.resolve()) as staging:
        model.save(staging)
        (staging / "ft2_produced_by.json").write_text(json.dumps(produced_by, indent=2))
    return produced_by


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(SHIPPED), help="folder for the model (default: the shipped one)")
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.clips < 1 or args.steps < 1:
        parser.error("--clips and --steps must be at least 1")
    command = " ".join(["python -m training.miniature.train_sync", *(sys.argv[1:] if argv is None else argv)])
    print(json.dumps(train(Path(args.out), args.clips, args.steps, args.seed, command)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
