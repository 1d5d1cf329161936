"""Wall time per second of video of each long-video method (the shipped miniature model, CPU).

The methods are timed interleaved over `--repeats` rounds on one held-out world clip (medians), with
the model's sampling defaults and windows of its trained length (33 frames, 16 of overlap).

    python -m bench.long_video_speed [--multiple 4] [--repeats 3]

The last line printed is `sliding/single=R1 continuation/single=R2`.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ft2_core.miniature.model import miniature_model_dir
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, make_clip
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import (
    METHODS,
    SamplerOptions,
    WindowOptions,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multiple", type=int, default=4, help="video length in trained lengths")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(miniature_model_dir()))
    d = pipe.defaults
    num_frames = (d["window_frames"] - 1) * args.multiple + 1
    clip = make_clip(HELD_OUT_SEEDS_FROM + 7000, num_frames)
    options = SamplerOptions(steps=d["steps"], cfg=d["cfg"], audio_cfg=d["audio_cfg"], shift=d["shift"])
    times = {method: [] for method in METHODS}
    for repeat in range(args.repeats):
        for method in METHODS[repeat % 3:] + METHODS[:repeat % 3]:
            windows = WindowOptions(method, d["window_frames"], 16)
            start = time.perf_counter()
            pipe.animate(torch.from_numpy(clip.portrait), clip.audio, options=options, num_frames=num_frames, fps=clip.fps,
                         max_side=clip.portrait.shape[0], windows=windows)
            times[method].append(time.perf_counter() - start)
    seconds = num_frames / clip.fps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {num_frames} frames ({seconds:.1f} s of video), "
          f"windows of {d['window_frames']} frames, {d['steps']} steps")
    medians = {method: statistics.median(values) for method, values in times.items()}
    for method, value in medians.items():
        print(
            f"{method:>12}: {value / seconds:.2f} s per second of video (runs: {', '.join(f'{t:.1f}' for t in times[method])} s)"
        )
    print(
        f"sliding/single={medians['sliding'] / medians['single']:.2f} "
        f"continuation/single={medians['continuation'] / medians['single']:.2f}"
    )


if __name__ == "__main__":
    main()
