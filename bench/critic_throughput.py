"""Talking-Critic scoring throughput of the tiny thinker on CPU, by batch size (clips per second).

Each clip: 81 frames at 23 fps, 256x256, with 3.5 s of audio; three questions per clip. Feature
preparation (frame sampling, patches, log-mel) and the thinker are timed separately.

The batch sizes are timed interleaved over `--repeats` rounds (each round in a rotated order) and
reported as medians, so a slow moment of a shared machine does not land on one batch size. Then the
shared prefix (each clip encoded once for its three questions, what `score` does) is timed against one
whole prompt per question, interleaved the same way, with the largest difference between their scores.

    python -m bench.critic_throughput [--clips 16] [--batch-sizes 1 2 4 8] [--repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ft2_core.io.audio import Audio
from ft2_core.scoring.critic import TalkingCritic
from ft2_core.tiny import tiny_critic_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    critic = TalkingCritic.from_folder(tiny_critic_dir())
    rng = np.random.default_rng(0)
    clips = [((rng.random((81, 256, 256, 3)) * 255).astype(np.uint8), 23.0,
              Audio((0.2 * rng.standard_normal((1, 56347))).astype(np.float32), 16000)) for _ in range(args.clips)]
    start = time.perf_counter()
    features = [critic.features(*clip) for clip in clips]
    prepare = time.perf_counter() - start
    print(f"feature preparation: {args.clips / prepare:.1f} clips/s ({features[0].video_tokens} video + "
          f"{features[0].audio_tokens} audio tokens per clip)")
    critic.score(features[:2], batch_size=2)  # warm-up
    seconds = {batch_size: [] for batch_size in args.batch_sizes}
    sizes = list(args.batch_sizes)
    for repeat in range(args.repeats):
        for batch_size in sizes[repeat % len(sizes):] + sizes[:repeat % len(sizes)]:
            start = time.perf_counter()
            critic.score(features, batch_size=batch_size)
            seconds[batch_size].append(time.perf_counter() - start)
    rates = {b: args.clips / statistics.median(times) for b, times in seconds.items()}
    for batch_size, rate in rates.items():
        print(f"batch {batch_size}: {rate:.1f} clips/s (thinker only; median of {args.repeats} interleaved runs)")
    print(" ".join(f"b{b}={r / rates[sizes[0]]:.2f}" for b, r in rates.items()), "(throughput relative to the first batch size)")
    compare_prefix_sharing(critic, features, max(sizes), args.repeats)


@torch.no_grad()
def compare_prefix_sharing(critic: TalkingCritic, features, batch_size: int, repeats: int) -> None:
    paths = {"shared prefix": critic.answer_logits, "one prompt per question": critic.answer_logits_per_question}
    seconds, logits = {name: [] for name in paths}, {}
    for repeat in range(repeats):
        for name in (list(paths) if repeat % 2 == 0 else list(paths)[::-1]):
            start = time.perf_counter()
            logits[name] = torch.cat([paths[name](features[i:i + batch_size]) for i in range(0, len(features), batch_size)])
            seconds[name].append(time.perf_counter() - start)
    rates = {name: len(features) / statistics.median(times) for name, times in seconds.items()}
    scores = {name: value.softmax(-1)[:, 0] for name, value in logits.items()}
    difference = (scores["shared prefix"] - scores["one prompt per question"]).abs().max()
    print(f"batch {batch_size}: " + ", ".join(f"{name} {rate:.1f} clips/s" for name, rate in rates.items())
          + f"; shared/per-question={rates['shared prefix'] / rates['one prompt per question']:.2f}; "
          f"largest score difference {float(difference):.1e}")


if __name__ == "__main__":
    main()
