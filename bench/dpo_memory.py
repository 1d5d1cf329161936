"""Peak memory and time of one Flow-DPO step against a plain training step (CPU, Wan2.1-1.3B-shaped blocks).

The reference is the same network with the expert off, so a DPO step should cost what a plain
training step of the policy costs (weights once plus activations) plus one forward without
gradients, never a second model. Every mode gets the same inputs, audio windows included. Each
measurement runs in a fresh process (peak RSS is per process), the modes interleaved over
`--repeats` rounds; the DPO-minus-plain difference is reported per round (peak RSS moves by tens
of MiB between identical runs), with the step times.

    python -m bench.dpo_memory [--blocks 4] [--tokens 1024] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

MODES = ("forward", "train", "dpo", "dpo_checkpointing")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(mode: str, blocks: int, tokens: int) -> dict:
    from bench.fusion_overhead import WAN_1_3B, random_expert
    from ft2_core.models.audio_adapter import AudioAdapter
    from ft2_core.models.talking_model import FantasyTalkingModel
    from ft2_core.models.wan_transformer import build_transformer
    from ft2_core.tlpo.experts import attach_experts
    from ft2_core.tlpo.flow_dpo import dpo_step
    from ft2_core.tlpo.gate import StaticMix

    torch.manual_seed(0)
    before_model = peak_mib()
    model = FantasyTalkingModel(build_transformer({**WAN_1_3B, "num_layers": blocks}), AudioAdapter(blocks, 1536, 768, 2048))
    model.requires_grad_(False)
    weights_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    frames = max(2, tokens // (16 * 16))  # latent 32x32 -> 16x16 patches per frame
    shape = (1, 16, frames, 32, 32)
    batch = {"winner": torch.randn(shape), "loser": torch.randn(shape), "condition": torch.zeros(1, 0, frames, 32, 32),
             "text": torch.randn(1, 512, 4096), "image": None,
             "audio": model.adapter.windows(torch.randn(1, 4 * frames * 5, 768), 4 * (frames - 1) + 1)}
    expert = random_expert(model, "lipsync", 0)
    attach_experts(model, [expert])
    for module in model.modules():
        if hasattr(module, "up") and isinstance(module.up, torch.nn.Parameter):
            module.up.requires_grad_(True)
            module.down.requires_grad_(True)
    model.expert_gate = StaticMix([1.0])
    loaded = peak_mib()
    both = dict(condition=torch.cat([batch["condition"]] * 2), timestep=torch.tensor([500.0, 500.0]),
                text=torch.cat([batch["text"]] * 2), image=None,
                audio=type(batch["audio"])(torch.cat([batch["audio"].tokens] * 2), batch["audio"].lengths))
    x = torch.cat([batch["winner"], batch["loser"]])
    started = time.perf_counter()
    if mode == "forward":  # the model alone: one forward of the same 2B batch, no grad
        with torch.no_grad():
            model(x, **both)
    elif mode == "train":  # one plain training step of the policy on the same 2B batch (no reference)
        from ft2_core.tlpo.flow_dpo import flow_matching_loss

        flow_matching_loss(model(x, **both), torch.randn_like(x)).mean().backward()
    else:
        model.gradient_checkpointing = mode == "dpo_checkpointing"
        out = dpo_step(model, batch, torch.tensor([0.5]), torch.randn(shape), beta=5000.0)
        out.loss.backward()
    return {"mode": mode, "weights_mib": weights_mib, "process_before_model_mib": before_model,
            "after_load_mib": loaded, "peak_mib": peak_mib(), "seconds": time.perf_counter() - started}


def measured_alone(mode: str, blocks: int, tokens: int) -> dict:
    """`measure` in a fresh process (its own peak RSS), run as a module from the repository root so `bench` imports."""
    run = subprocess.run(
        [sys.executable, "-m", "bench.dpo_memory", "--mode", mode, "--blocks", str(blocks), "--tokens", str(tokens)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=MODES)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.blocks, args.tokens)))
        return
    rounds = []
    for repeat in range(args.repeats):
        results = {}
        for mode in MODES[repeat % len(MODES):] + MODES[:repeat % len(MODES)]:
            results[mode] = measured_alone(mode, args.blocks, args.tokens)
        rounds.append(results)
    weights = rounds[0]["forward"]["weights_mib"]
    print(
        f"{args.blocks} Wan-1.3B-shaped blocks, {args.tokens} video tokens + audio windows, weights {weights:.0f} MiB (fp32), "
        f"{args.repeats} rounds"
    )
    for mode in MODES:
        peaks = [r[mode]["peak_mib"] for r in rounds]
        times = [r[mode]["seconds"] for r in rounds]
        print(f"{mode:>18}: peak RSS {' / '.join(f'{p:.0f}' for p in peaks)} MiB, step {' / '.join(f'{t:.2f}' for t in times)} s")
    extras = [r["dpo"]["peak_mib"] - r["train"]["peak_mib"] for r in rounds]
    print(
        f"dpo step - plain training step = {' / '.join(f'{e:+.0f}' for e in extras)} MiB "
        f"(median {statistics.median(extras):+.0f} = {statistics.median(extras) / weights:.2f} x the weights; "
        "a second model would be 1.00)"
    )
    median = {mode: statistics.median(r[mode]["peak_mib"] for r in rounds) for mode in MODES}
    seconds = {mode: statistics.median(r[mode]["seconds"] for r in rounds) for mode in MODES}
    print(
        f"dpo/train={median['dpo'] / median['train']:.3f} "
        f"dpo_checkpointing/train={median['dpo_checkpointing'] / median['train']:.3f} "
        f"train/forward={median['train'] / median['forward']:.3f} time dpo/train={seconds['dpo'] / seconds['train']:.2f} "
        f"time forward/train={seconds['forward'] / seconds['train']:.2f}"
    )


if __name__ == "__main__":
    main()
