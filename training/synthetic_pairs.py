"""A toy preference set at latent level for the tiny model: known winners, for checking the trainers.

Winners carry a fixed pattern G, losers its negative, near a "mouth" box for lip-sync pairs (so the
lip mask matters). Conditions are random tensors of the tiny model's shapes. A toy, not real data.

    python training/synthetic_pairs.py OUT_FOLDER [--conditions 32] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ft2_core.dimensions import DIMENSION_NAMES, uses_lip_mask  # noqa: E402
from ft2_core.tlpo.preference_data import CacheWriter, Pair, write_pairs  # noqa: E402
from ft2_core.tiny import TINY_AUDIO, TINY_TRANSFORMER  # noqa: E402

NUM_FRAMES, LATENT_FRAMES, LATENT_SIDE, AUDIO_TOKENS = 9, 3, 8, 19
MOUTH = (slice(4, 6), slice(2, 6))  # latent rows/cols of the toy mouth (patch-aligned)


def make_synthetic_cache(folder: str | Path, conditions: int = 32, seed: int = 0) -> dict[str, Path]:
    """Write the cache and one pair manifest per dimension; returns {dimension: manifest path}."""
    folder = Path(folder)
    g = torch.Generator().manual_seed(seed)
    z = TINY_TRANSFORMER["out_channels"]
    shape = (z, LATENT_FRAMES, LATENT_SIDE, LATENT_SIDE)
    pattern = torch.nn.functional.avg_pool3d(torch.randn(1, *shape, generator=g), 3, stride=1, padding=1)[0]
    pattern = pattern / pattern.std()
    mouth = torch.zeros(1, LATENT_FRAMES, LATENT_SIDE, LATENT_SIDE)
    mouth[:, :, MOUTH[0], MOUTH[1]] = 1
    writer = CacheWriter(folder / "cache", shard_size=32)
    pairs = {d: [] for d in DIMENSION_NAMES}
    for c in range(conditions):
        writer.add(f"cond/c{c:04d}", {
            "condition": torch.randn(TINY_TRANSFORMER["in_channels"] - z, *shape[1:], generator=g),
            "text": torch.randn(512, TINY_TRANSFORMER["text_dim"], generator=g),
            "image": torch.randn(257, TINY_TRANSFORMER["image_dim"], generator=g),
            "audio": torch.randn(AUDIO_TOKENS, TINY_AUDIO["audio_in_dim"], generator=g),
            "num_frames": torch.tensor(NUM_FRAMES),
        })
        for dimension in DIMENSION_NAMES:
            jitter = lambda: 0.1 * torch.randn(shape, generator=g)  # noqa: E731
            if uses_lip_mask(dimension):  # differ only in the mouth box
                winner, loser = pattern + jitter(), pattern * (1 - 2 * mouth) + jitter()
            else:
                winner, loser = pattern + jitter(), -pattern + jitter()
            masks = {"lip_mask": mouth.clone()} if uses_lip_mask(dimension) else {}
            writer.add(f"video/{dimension}_c{c:04d}_w", {"latents": winner, **masks})
            masks = {"lip_mask": mouth.clone()} if uses_lip_mask(dimension) else {}
            writer.add(f"video/{dimension}_c{c:04d}_l", {"latents": loser, **masks})
            pairs[dimension].append(Pair(f"c{c:04d}", f"{dimension}_c{c:04d}_w", f"{dimension}_c{c:04d}_l", dimension))
    writer.close()
    return {d: write_pairs(folder / f"pairs_{d}.jsonl", p) for d, p in pairs.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--conditions", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for dimension, path in make_synthetic_cache(args.out, args.conditions, args.seed).items():
        print(f"{dimension}: {path}")
