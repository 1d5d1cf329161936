"""Wall time of one Flow-DPO expert step at tiny shapes with each training memory option on, as a ratio to the
plain batched step (modes interleaved over rounds; medians). CPU, the built-in tiny model: a check of what each
option costs in compute (recomputation, one extra policy forward per row, copies), not of GPU transfer speed.

    python -m bench.train_step_speed [--rounds 5] [--steps 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

MODES = {
    "plain": {},
    "checkpointing": {"gradient_checkpointing": True},
    "inputs on CPU": {"offload_checkpoints": True},
    "2 blocks swapped": {"blocks_to_swap": 2},
    "rows at a time": {"rows_at_a_time": True},
    "all": {"offload_checkpoints": True, "blocks_to_swap": 2, "rows_at_a_time": True},
}


def step_seconds(model, trained, batch, mode: dict, steps: int) -> float:
    from ft2_core.tlpo.flow_dpo import dpo_step, dpo_step_by_rows

    model.gradient_checkpointing = mode.get("gradient_checkpointing", False)
    model.offload_checkpoints = mode.get("offload_checkpoints", False)
    model.swap_blocks(mode.get("blocks_to_swap", 0))
    sigma, noise = torch.tensor([0.3, 0.7]), torch.randn_like(batch["winner"])
    started = time.perf_counter()
    for _ in range(steps):
        if mode.get("rows_at_a_time"):
            dpo_step_by_rows(model, batch, sigma, noise, 500.0)
        else:
            dpo_step(model, batch, sigma, noise, 500.0).loss.backward()
        for parameter in trained:
            parameter.grad = None
    return (time.perf_counter() - started) / steps


def main(argv=None) -> int:
    from bench.gpu_check import pair_batch, tiny_model, trainable_expert

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, (frames, height, width) = tiny_model()
    trained = trainable_expert(model, 8, up_scale=0.1)
    batch = pair_batch(model, frames, height, width, "cpu", torch.float32, pairs=2)
    times = {name: [] for name in MODES}
    for _ in range(args.rounds):
        for name, mode in MODES.items():
            times[name].append(step_seconds(model, trained, batch, mode, args.steps))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(" ".join(f"{name.replace(' ', '_')}/plain={median[name] / median['plain']:.2f}" for name in MODES if name != "plain"))
    print(f"plain {median['plain'] * 1000:.0f} ms per step (2 pairs, {frames} frames, {height}x{width})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
