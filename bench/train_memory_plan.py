"""Predicted peak GPU memory of one Flow-DPO step of a Wan2.1-I2V-14B FantasyTalking expert and gate (81 frames,
480p and 720p) for every combination of the training memory settings, from module sizes counted on the meta
device and activation costs measured here on a real-width block.

    python -m bench.train_memory_plan [--out bench/results/train_memory_plan.md]

Measured (CPU, this machine; the profiler's allocation timeline, so the live set): one 14B-wide block (width
5120, FFN 13,824, the FantasyTalking audio k/v) in bf16 with a rank-16 expert on its ten Linears, trained:
- saved: the bytes per video token per row that the forward keeps for the backward (the net allocation after
  a forward with gradients);
- backward: the peak above that while the block's backward runs;
both as slopes between 256 and 768 tokens, so what does not grow with the video drops out.
A step holds, on the device: the resident blocks' frozen weights (block swap keeps the rest on the CPU and
stages two), the non-block weights, the trained parameters with their gradients and AdamW moments (fp32), and
the activations of the rows in flight: every block's saved activations without checkpointing; each block's
input (5120 bf16 values per token) plus one block's saved and backward bytes with checkpointing; one block's
only when the checkpointed inputs live on the CPU (train.offload_checkpoints). Batched Flow-DPO keeps the winner
and loser rows of a pair in flight (2 rows, one pair per forward); train.rows_at_a_time keeps 1.
"""
from __future__ import annotations

import argparse
import itertools

import torch

from bench.memory_plan import CARDS, GIB, RESOLUTIONS, fits, module_sizes, net_and_peak, video_tokens
from ft2_core.io.atomic import write_text_atomic

EXPERT_RANK = 16
SWAP_STAGING = 2  # blocks on the device while swapping: the running one and the one being prefetched
HIDDEN_BYTES = 5120 * 2  # a checkpointed block input: one bf16 hidden state per token
OPTIMIZER_BYTES = 4 * 4  # an fp32 trained parameter, its gradient and AdamW's two moments
SWAPS = (0, 20, 30, 36, 39)


def training_bytes_per_token() -> dict[str, float]:
    """Saved and backward bytes per video token per row of one 14B-wide block with a trained rank-16 expert."""
    from bench.gpu_check import trainable_expert
    from ft2_core.models.audio_adapter import AudioAdapter
    from ft2_core.models.talking_model import FantasyTalkingModel
    from ft2_core.models.wan_transformer import build_transformer, shipped_configs

    config = {**shipped_configs()["wan2.1-i2v-14b-720p"]["transformer"], "num_layers": 1}
    torch.manual_seed(0)
    model = FantasyTalkingModel(build_transformer(config), AudioAdapter(1, 5120, 768, 2048)).to(torch.bfloat16)
    model.requires_grad_(False)
    trainable_expert(model, EXPERT_RANK, dtype=torch.bfloat16)
    costs = {}
    for frames in (1, 3):  # 16x16 patches per latent frame: 256 and 768 tokens
        inputs = dict(latents=torch.randn(1, 16, frames, 32, 32, dtype=torch.bfloat16),
                      condition=torch.randn(1, 20, frames, 32, 32, dtype=torch.bfloat16),
                      timestep=torch.tensor([500.0]), text=torch.randn(1, 512, 4096, dtype=torch.bfloat16),
                      image=torch.randn(1, 257, 1280, dtype=torch.bfloat16), audio=None)
        held = {}
        saved, _ = net_and_peak(lambda: held.update(out=model(**inputs)))
        _, backward = net_and_peak(lambda: held.pop("out").float().square().mean().backward())
        costs[frames * 256] = (saved, backward)
        model.zero_grad(set_to_none=True)
    return {"saved": (costs[768][0] - costs[256][0]) / 512, "backward": (costs[768][1] - costs[256][1]) / 512}


def trained_parameters(sizes: dict, step: str) -> tuple[float, float]:
    """(trained parameters, frozen expert parameters) of an expert step (one expert) or a gate step (three frozen
    experts, the gate's few parameters), at EXPERT_RANK."""
    one_expert = sizes["experts"] / 3 * EXPERT_RANK / 32  # memory_plan counts three rank-32 experts
    return (one_expert, 0.0) if step == "expert" else (3 * 256 * sizes["blocks"] + 3 * sizes["blocks"], 3 * one_expert)


def block_bytes(sizes: dict, weights: str) -> float:
    """One frozen block with its audio k/v, its Linears in `weights` (bf16 or fp8), the rest bf16."""
    linear_bytes = 1 if weights == "fp8" else 2
    return sizes["block_linear"] * linear_bytes + sizes["block_other"] * 2 + sizes["adapter"] / sizes["blocks"] * 2


def train_plan(sizes, per_token, step, resolution, weights, swapped, checkpointing, offload, rows_at_a_time) -> dict:
    """Predicted bytes on the device for one DPO step with these settings."""
    block = block_bytes(sizes, weights)
    resident = sizes["blocks"] - swapped + (SWAP_STAGING if swapped else 0)
    frozen = resident * block + sizes["dit_rest"] * 2
    trained, frozen_experts = trained_parameters(sizes, step)
    parameters = trained * OPTIMIZER_BYTES + frozen_experts * 4
    rows = 1 if rows_at_a_time else 2
    tokens = rows * video_tokens(resolution)
    one_block = tokens * (per_token["saved"] + per_token["backward"])
    if not checkpointing:
        activations = tokens * per_token["saved"] * sizes["blocks"] + tokens * per_token["backward"]
    elif offload:
        activations = one_block
    else:
        activations = tokens * HIDDEN_BYTES * sizes["blocks"] + one_block
    return {"weights": frozen, "parameters": parameters, "activations": activations,
            "peak": frozen + parameters + activations}


FSDP_GATHERED = 2  # whole blocks on a device under FSDP: the one computing and the next, gathered ahead of it
FSDP_GPUS = (2, 4, 8)


def fsdp_plan(sizes, per_token, step, resolution, weights, gpus, checkpointing, offload, rows_at_a_time) -> dict:
    """Predicted bytes on each device for one DPO step sharded over `gpus` (train.strategy = "fsdp"): every weight and
    the optimizer state 1/gpus, plus the gathered blocks; activations as on one device (one pair per device)."""
    alone = train_plan(sizes, per_token, step, resolution, weights, 0, checkpointing, offload, rows_at_a_time)
    frozen = alone["weights"] / gpus + FSDP_GATHERED * block_bytes(sizes, weights)
    parameters = alone["parameters"] / gpus
    return {"weights": frozen, "parameters": parameters, "activations": alone["activations"],
            "peak": frozen + parameters + alone["activations"]}


def settings_rows():
    """Every combination; block swap needs recomputation in the backward, so it goes with checkpointing."""
    for step, resolution, weights, swapped, checkpointing, offload, rows in itertools.product(
        ("expert", "gate"), RESOLUTIONS, ("bf16", "fp8"), SWAPS, (False, True), (False, True), (False, True)
    ):
        if (swapped or offload) and not checkpointing:
            continue
        yield step, resolution, weights, swapped, checkpointing, offload, rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/train_memory_plan.md")
    args = parser.parse_args(argv)
    sizes = module_sizes()
    per_token = training_bytes_per_token()
    yes = {True: "yes", False: "no"}
    lines = [
        f"# Training memory plan: one Flow-DPO step, Wan2.1-I2V-14B + FantasyTalking, 81 frames, rank-{EXPERT_RANK} expert",
        "",
        f"Command: `python -m bench.train_memory_plan --out {args.out}`",
        "",
        f"Measured on one 14B-wide block in bf16 with a trained rank-{EXPERT_RANK} expert: the forward keeps "
        f"{per_token['saved'] / 1024:.1f} KiB per video token per row for the backward, whose peak adds "
        f"{per_token['backward'] / 1024:.1f} KiB. Tokens per row: 480p {video_tokens('480p'):,}, 720p "
        f"{video_tokens('720p'):,}. Planned, not measured on a GPU (none was available); `bench/gpu_check.py` is "
        "the check against torch.cuda.max_memory_allocated.",
        "",
        "| step | resolution | base weights | blocks swapped | checkpointing | inputs on CPU | rows at a time | "
        "weights GiB | trained GiB | activations GiB | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = {}
    for key in settings_rows():
        step, resolution, weights, swapped, checkpointing, offload, rows = key
        result = results[key] = train_plan(sizes, per_token, *key)
        lines.append(f"| {step} | {resolution} | {weights} | {swapped} | {yes[checkpointing]} | {yes[offload]} | "
                     f"{'1' if rows else '2 (batched)'} | {result['weights'] / GIB:.1f} | {result['parameters'] / GIB:.2f} | "
                     f"{result['activations'] / GIB:.1f} | {result['peak'] / GIB:.1f} |")
    lines += ["", "## What fits (fewest blocks swapped, then bf16 before fp8, then fewest other settings)", "",
              "| card | " + " | ".join(f"{step} {res}" for step in ("expert", "gate") for res in RESOLUTIONS) + " |",
              "|---|" + "---|" * (2 * len(RESOLUTIONS))]
    for card in CARDS:
        cells = []
        for step, resolution in itertools.product(("expert", "gate"), RESOLUTIONS):
            fitting = [(k, r) for k, r in results.items() if k[:2] == (step, resolution) and fits(r["peak"], card)]
            if not fitting:
                cells.append("does not fit")
                continue
            key, result = min(fitting, key=lambda kr: (kr[0][3], kr[0][2] == "fp8", kr[0][4] + kr[0][5] + kr[0][6]))
            _, _, weights, swapped, checkpointing, offload, rows = key
            chosen = [weights, f"{swapped} swapped"] + [name for name, on in (
                ("checkpointing", checkpointing), ("inputs on CPU", offload), ("rows at a time", rows)) if on]
            cells.append(f"{', '.join(chosen)} ({result['peak'] / GIB:.1f} GiB)")
        lines.append(f"| {card} GB | " + " | ".join(cells) + " |")
    lines += ["", "## Sharded over several GPUs (train.strategy = \"fsdp\"), per GPU", "",
              "One pair per GPU per forward; no block swap (FSDP refuses it). The base is kept in its file's dtype (a "
              "bf16 file as bf16, an fp8 file as fp8).", "",
              "| step | resolution | base weights | GPUs | checkpointing | inputs on CPU | rows at a time | weights GiB | "
              "trained GiB | activations GiB | peak GiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for step, resolution, weights, gpus, checkpointing, offload, rows in itertools.product(
            ("expert", "gate"), RESOLUTIONS, ("bf16", "fp8"), FSDP_GPUS, (False, True), (False, True), (False, True)):
        if offload and not checkpointing:
            continue
        result = fsdp_plan(sizes, per_token, step, resolution, weights, gpus, checkpointing, offload, rows)
        lines.append(f"| {step} | {resolution} | {weights} | {gpus} | {yes[checkpointing]} | {yes[offload]} | "
                     f"{'1' if rows else '2 (batched)'} | {result['weights'] / GIB:.1f} | {result['parameters'] / GIB:.2f} | "
                     f"{result['activations'] / GIB:.1f} | {result['peak'] / GIB:.1f} |")
    lines += ["", "A setting fits a card when its peak is at most 95% of it (the CUDA context and the allocator's "
              "fragmentation take the rest). The trained parameters' optimizer state is in 'trained'; the CPU holds the "
              "swapped blocks (pinned) and, with inputs on the CPU, 10 KiB per token per row per block."]
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
