"""Time per row of the shipped miniature DiT's forward at several rows per call (CPU): what sampling candidates of
several videos in one batch could save over one video's guidance pair (2 rows) per call.

Rows are real world clips (33 frames, 64x64) through the model's own encoders, at one mid timestep; the row counts
are timed interleaved over `--repeats` rounds (medians).

    python -m bench.dit_batch_rows [--repeats 5]

The last line printed is `b2/b4=R b2/b8=R b2/b16=R`: time per row at 2 rows over that at 4, 8 and 16.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ft2_core.miniature.model import WorldEncoders, miniature_model_dir
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, make_clip
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline

ROWS = (2, 4, 8, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = miniature_model_dir()
    model = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(folder)).model
    encoders = WorldEncoders.from_folder(folder)
    frames = 33
    items = [encoders.clip_inputs(make_clip(HELD_OUT_SEEDS_FROM + 8000 + i, frames)) for i in range(max(ROWS))]

    def batch(rows: int) -> dict:
        return dict(latents=torch.cat([i["latents"] for i in items[:rows]]),
                    condition=torch.cat([i["condition"] for i in items[:rows]]),
                    timestep=torch.full((rows,), 500.0), text=encoders.text.expand(rows, -1, -1),
                    image=torch.cat([i["image"] for i in items[:rows]]),
                    audio=model.adapter.windows(torch.cat([i["audio_features"] for i in items[:rows]]), frames))

    inputs = {rows: batch(rows) for rows in ROWS}
    per_row = {rows: [] for rows in ROWS}
    with torch.no_grad():
        for rows in ROWS:  # warm-up
            model(**inputs[rows])
        for repeat in range(args.repeats):
            for rows in ROWS[repeat % len(ROWS):] + ROWS[:repeat % len(ROWS)]:
                start = time.perf_counter()
                model(**inputs[rows])
                per_row[rows].append((time.perf_counter() - start) / rows)
    medians = {rows: statistics.median(values) for rows, values in per_row.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {frames} frames at 64x64, "
          f"medians of {args.repeats} interleaved rounds")
    for rows, value in medians.items():
        print(f"{rows:>3} rows per call: {value * 1000:.1f} ms per row")
    print(" ".join(f"b2/b{rows}={medians[2] / medians[rows]:.2f}" for rows in ROWS[1:]))


if __name__ == "__main__":
    main()
