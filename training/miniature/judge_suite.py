"""The judges' gaming suite as a table: each entry of ft2_core.miniature.gaming on held-out world conditions, scored
by the oracles of the current protocol and read by the sync model (mean ± std over conditions). No model is involved.

    python -m training.miniature.judge_suite [--clips 16] [--out training/miniature/results/judge_suite]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.io.atomic import write_text_atomic
from ft2_core.miniature.gaming import NAMES, fake
from ft2_core.miniature.oracles import PROTOCOL_VERSION, score_clip
from ft2_core.miniature.sync_model import SyncModel
from ft2_core.miniature.world import VALIDATION_SEEDS_FROM, make_clip
from training.miniature.tables import command_line, score_table


def suite_scores(clips: int, frames: int = 33) -> dict[str, list[dict[str, float]]]:
    """{entry: [scores by dimension, one per condition]} on validation conditions (no model is trained on them)."""
    rng, sync = np.random.default_rng(0), SyncModel.load()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in NAMES}
    for i in range(clips):
        seed = VALIDATION_SEEDS_FROM + i
        clip = make_clip(seed, frames)
        for name in NAMES:
            video, audio = fake(clip, name, rng, seed)
            reading = sync.read(video, audio, clip.fps, clip.portrait)
            rows[name].append({**score_clip(video, audio, clip.fps, clip.face, clip.frames).by_dimension(),
                               **reading.as_scores()})
    return rows


def summarise(rows: dict[str, list[dict[str, float]]]) -> dict:
    return {name: {key: {"mean": float(np.mean([s[key] for s in scores])), "std": float(np.std([s[key] for s in scores]))}
                   for key in (*DIMENSION_NAMES, "sync_confidence", "sync_offset")} for name, scores in rows.items()}


def sync_lines(table: dict) -> list[str]:
    lines = ["| row | sync confidence | sync offset (frames) |", "|---|---|---|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['sync_confidence']['mean']:.3f} ± {row['sync_confidence']['std']:.3f} | "
                     f"{row['sync_offset']['mean']:+.1f} ± {row['sync_offset']['std']:.1f} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--out", default="training/miniature/results/judge_suite", help="path without suffix")
    args = parser.parse_args(argv)
    if args.clips < 1:
        parser.error("--clips must be at least 1")
    table = summarise(suite_scores(args.clips))
    command = command_line("training.miniature.judge_suite", argv)
    report = "\n".join([
        f"The judges' gaming suite, oracle protocol {PROTOCOL_VERSION}: {args.clips} validation conditions (world seeds "
        f"{VALIDATION_SEEDS_FROM} and up, 33 frames), mean ± std over conditions.", "", f"Command: `{command}`", "",
        *score_table(table), "", "The sync model's reading of the same videos (ft2_core.miniature.sync_model):", "",
        *sync_lines(table), ""])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out.with_suffix(".md"), report)
    write_text_atomic(out.with_suffix(".json"), json.dumps({"protocol": PROTOCOL_VERSION, "summary": table}, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
