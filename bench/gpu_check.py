"""One check anyone with a GPU can run (under 8 minutes, no download): the real Wan2.1-I2V-14B + FantasyTalking
shapes with random weights, a few sampling steps and a few Flow-DPO expert steps at the training plan's 24 GB
settings (480p, 81 frames: fp8 base, 20 blocks swapped, checkpointed inputs on the CPU, one row at a time), each
with its predicted and measured peak (torch.cuda.max_memory_allocated) and its seconds per step.

    python -m bench.gpu_check [--steps 2] [--dpo-steps 2]

On a machine without CUDA it runs the same code at the built-in tiny model's shapes (a smoke test of the path;
no peak is measured there).
"""
from __future__ import annotations

import argparse
import time

import torch

from bench.memory_plan import GIB, RESOLUTIONS

DPO_SETTINGS = {"weights": "fp8", "blocks_to_swap": 20, "offload_checkpoints": True, "rows_at_a_time": True}
SAMPLING_SWAP = 0  # the inference plan's 24 GB row at 480p: fp8 weights, sequential rows


def real_model(device: torch.device):
    """The 14B DiT and adapter with small random weights, built on the meta device and filled where they live."""
    from ft2_core.models.audio_adapter import AudioAdapter
    from ft2_core.models.stored_linear import store_blocks_as_fp8
    from ft2_core.models.talking_model import FantasyTalkingModel
    from ft2_core.models.wan_transformer import build_transformer, shipped_configs

    config = shipped_configs()["wan2.1-i2v-14b-480p"]
    with torch.device("meta"):
        model = FantasyTalkingModel(build_transformer(config["transformer"], device="meta"), AudioAdapter(40, 5120, 768, 2048))
    model = model.to_empty(device="cpu").to(torch.bfloat16)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.02, generator=generator) if parameter.ndim > 1 else parameter.fill_(1.0)
    store_blocks_as_fp8(model.transformer, torch.bfloat16)
    return model.requires_grad_(False).eval(), (81, *RESOLUTIONS["480p"])


def tiny_model(folder=None):
    from ft2_core.model_paths import ModelPaths
    from ft2_core.models.stored_linear import store_blocks_as_fp8
    from ft2_core.pipeline import load_talking_model
    from ft2_core.tiny import tiny_model_dir

    paths = ModelPaths.from_folder(folder or tiny_model_dir())
    model = load_talking_model(paths.transformer, paths.audio_adapter, torch.float32).requires_grad_(False)
    store_blocks_as_fp8(model.transformer, torch.float32)
    return model, (17, 64, 64)


def inputs(model, frames: int, height: int, width: int, device, dtype, rows: int = 1) -> dict:
    g = torch.Generator().manual_seed(1)
    z, config = model.transformer.config.out_channels, model.transformer.config
    shape = (rows, z, (frames - 1) // 4 + 1, height // 8, width // 8)
    features = torch.randn(rows, int(frames / 23 * 50), model.adapter.audio_in_dim, generator=g)
    audio = model.adapter.windows(features.to(device, dtype), frames)
    return dict(latents=torch.randn(shape, generator=g).to(device, dtype),
                condition=torch.randn(rows, config.in_channels - z, *shape[2:], generator=g).to(device, dtype),
                text=torch.randn(rows, 512, config.text_dim, generator=g).to(device, dtype),
                image=torch.randn(rows, 257, config.image_dim, generator=g).to(device, dtype), audio=audio)


def trainable_expert(model, rank: int, up_scale: float = 0.0, seed: int = 3, dtype=torch.float32) -> list[torch.Tensor]:
    """One rank-`rank` expert (fp32 by default) on the usual targets, on at weight 1 (B = 0 unless `up_scale`); its
    tensors are the ones trained."""
    from ft2_core.models.fused_lora import FusedLoRALinear, block_linears
    from ft2_core.tlpo.experts import Expert, attach_experts
    from ft2_core.tlpo.gate import StaticMix
    from ft2_core.tlpo.lora_formats import EXPERT_TARGETS, LoraModule, LoraWeights

    g = torch.Generator().manual_seed(seed)
    modules = {name: LoraModule(torch.randn(rank, m.in_features, generator=g) * 0.01,
                                torch.randn(m.out_features, rank, generator=g) * up_scale, float(rank))
               for name, m in block_linears(model.transformer).items() if name.split(".", 2)[2] in EXPERT_TARGETS}
    attach_experts(model, [Expert("lipsync", LoraWeights(modules, "bench"))], dtype=dtype)
    model.expert_gate = StaticMix([1.0])
    trained = [p for m in model.modules() if isinstance(m, FusedLoRALinear) for p in (m.down, m.up)]
    for parameter in trained:
        parameter.requires_grad_(True)
    return trained


def pair_batch(model, frames: int, height: int, width: int, device, dtype, pairs: int = 1) -> dict:
    """A preference batch of random pairs with the model's input shapes (as collate_pairs gives, audio windowed)."""
    pair = inputs(model, frames, height, width, device, dtype, rows=pairs)
    return {"winner": pair["latents"], "loser": torch.randn_like(pair["latents"]), "condition": pair["condition"],
            "text": pair["text"], "image": pair["image"], "audio": pair["audio"]}


def measure(device, what, run, steps: int) -> tuple[float, float]:
    """Seconds per step and the measured peak (GiB; NaN without CUDA) of `steps` calls of run()."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(steps):
        run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - started) / steps
    peak = torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else float("nan")
    print(f"{what}: {seconds:.1f} s per step, measured peak {peak:.1f} GiB", flush=True)
    return seconds, peak


def check(steps: int, dpo_steps: int, device: torch.device, tiny_folder=None) -> dict:
    """Sampling steps and DPO expert steps; returns their seconds and peaks, the last DPO loss and the share of trained
    tensors that changed. Without CUDA: the tiny model (from `tiny_folder`, default its cache)."""
    from ft2_core.tlpo.flow_dpo import dpo_step_by_rows

    real = device.type == "cuda"
    model, (frames, height, width) = real_model(device) if real else tiny_model(tiny_folder)
    dtype = torch.bfloat16 if real else torch.float32
    results = {}
    model.place(device)
    sample = inputs(model, frames, height, width, device, dtype)
    with torch.no_grad():
        results["sampling"] = measure(device, "sampling (one row, fp8 base)",
                                      lambda: model(**sample, timestep=torch.tensor([500.0], device=device)), steps)
    trained = trainable_expert(model, 16)
    model.offload_checkpoints = DPO_SETTINGS["offload_checkpoints"]
    model.swap_blocks(min(DPO_SETTINGS["blocks_to_swap"], model.num_layers))
    model.place(device)
    optimizer = torch.optim.AdamW(trained, lr=1e-4)
    before = [p.detach().clone() for p in trained]
    batch = pair_batch(model, frames, height, width, device, dtype)
    losses = []

    def dpo():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=real):
            out = dpo_step_by_rows(model, batch, torch.tensor([0.5], device=device), torch.randn_like(batch["winner"]), 5000.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss))

    results["dpo"] = measure(device, "Flow-DPO expert step (fp8, 20 swapped, inputs on CPU, rows at a time)", dpo, dpo_steps)
    results["loss"] = losses[-1]
    results["changed"] = sum(not torch.equal(a, b.detach()) for a, b in zip(before, trained)) / len(trained)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--dpo-steps", type=int, default=2)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        print(f"{torch.cuda.get_device_name()}: real 14B shapes, 480p, 81 frames; predicted peaks: "
              "bench/results/memory_plan.md (sampling) and bench/results/train_memory_plan.md (expert, 24 GB row)")
    else:
        print("no CUDA: the built-in tiny model's shapes, the same code path (no peak measured)")
    results = check(args.steps, args.dpo_steps, device)
    print(f"last DPO loss {results['loss']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
