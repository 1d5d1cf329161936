"""The Flow-DPO training loop the expert and gate trainers share: data, per-pair noise, metrics per noise level,
checkpoints on schedule and on a stop request, and the trained file written once at the end."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.errors import InputError
from ft2_core.io.jsonl import append_jsonl
from ft2_core.tlpo.flow_dpo import DPOOutput, dpo_step, dpo_step_by_rows
from ft2_core.tlpo.preference_data import LatentCache, PairDataset, collate_pairs, read_pairs

from .checkpoints import end_of_step, resume, run_settings
from .config import resolve
from .data_order import global_batch, mix_seed, pair_noise
from .distributed import check_ranks_agree, local_batch_size
from .interrupts import StopRequests
from .sharding import shard_model, uses_fsdp, whole_tensors

SIGMA_BUCKETS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class StepMetrics:
    loss: float
    accuracy: float
    margin: float
    bucket_accuracy: dict

    def as_dict(self) -> dict:
        return {"loss": self.loss, "implicit_accuracy": self.accuracy, "reward_margin": self.margin,
                "accuracy_by_sigma": self.bucket_accuracy}


def summarise(loss: torch.Tensor, margins: torch.Tensor, sigmas: torch.Tensor) -> StepMetrics:
    correct = (margins > 0).float()
    buckets = {}
    for low, high in zip(SIGMA_BUCKETS[:-1], SIGMA_BUCKETS[1:]):
        inside = (sigmas >= low) & (sigmas < high if high < 1 else sigmas <= high)
        if inside.any():
            buckets[f"{low:.2f}-{high:.2f}"] = float(correct[inside].mean())
    return StepMetrics(float(loss), float(correct.mean()), float(margins.mean()), buckets)


def pair_dataset(config: dict, pair_files: list[str], use_lip_mask: bool) -> PairDataset:
    cache = LatentCache(resolve(config["data"]["cache"]))
    pairs = [p for f in pair_files for p in read_pairs(resolve(f))]
    if not pairs:
        raise InputError("no preference pairs: check data.pairs")
    return PairDataset(cache, pairs, use_lip_mask)


def train_dpo(config: dict, model, parameters: dict[str, torch.nn.Parameter], dataset: PairDataset,
              save_result: Callable[[Path, dict[str, torch.Tensor]], Path], accelerator) -> Path:
    """Flow-DPO over `dataset`, training `parameters` (named, on `model`); returns what `save_result` wrote from
    the trained values (the same names, whole float32 tensors on the CPU)."""
    from tqdm import tqdm

    train = config["train"]
    output = resolve(train["output"])
    output.mkdir(parents=True, exist_ok=True)
    steps, batch_size, seed, beta = train["steps"], train["batch_size"], train.get("seed", 0), float(train["beta"])
    rank, local = accelerator.process_index, local_batch_size(batch_size, accelerator)
    sigma_range = (train.get("sigma_min", 0.0), train.get("sigma_max", 1.0))
    micro = train.get("micro_batch_size", 0) or local
    if local % micro:
        raise InputError(f"train.micro_batch_size {micro} must divide each process's {local} pairs per step")
    set_memory_options(model, train, accelerator)
    sharded = uses_fsdp(train) and accelerator.num_processes > 1
    if sharded:
        parameters = shard_model(model, accelerator, parameters)
    else:
        model.place(accelerator.device)  # swapped blocks stay on the CPU; the rest, the experts and the gate go to the device
    optimizer = torch.optim.AdamW(parameters.values(), lr=float(train["lr"]), weight_decay=float(train.get("weight_decay", 0.0)))
    start = resume(config, output, parameters, optimizer, accelerator)
    metrics_file = output / "metrics.jsonl"
    if sharded:  # FSDP's hooks do what DDP's wrapper would
        optimizer = accelerator.prepare(optimizer)
    else:
        model, optimizer = accelerator.prepare(model, optimizer, device_placement=[False, True])
    inner = accelerator.unwrap_model(model)
    bar = tqdm(total=steps, initial=start, desc="Flow-DPO", mininterval=2.0, disable=not accelerator.is_main_process)
    with StopRequests() as stop, bar:  # the bar's line ends even when a step fails, so an error starts a line of its own
        for step in range(start, steps):
            indices = global_batch(step, len(dataset), batch_size, seed)[rank * local:(rank + 1) * local]
            batch = collate_pairs([dataset[i] for i in indices])
            sigma, noise = pair_noise(indices, step, seed, batch["winner"].shape[1:], sigma_range, train.get("shift", 1.0))
            device = accelerator.device
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with torch.no_grad():
                batch["audio"] = inner.adapter.windows(batch["audio_features"], batch["num_frames"])
            penalty, rows = float(train.get("winner_penalty", 0.0)), bool(train.get("rows_at_a_time", False))
            out = accumulated_step(model, batch, sigma.to(device), noise.to(device), beta, penalty, micro, rows, accelerator)
            if train.get("max_grad_norm"):
                accelerator.clip_grad_norm_(list(parameters.values()), float(train["max_grad_norm"]))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss = accelerator.reduce(out.loss.detach(), reduction="mean")
            margins, sigmas = accelerator.gather(out.reward_margin), accelerator.gather(out.sigma)
            metrics = summarise(loss, margins, sigmas)
            if accelerator.is_main_process:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics.loss:.4f}", acc=f"{metrics.accuracy:.2f}", margin=f"{metrics.margin:.3f}")
                append_jsonl(metrics_file, {"step": step + 1, **metrics.as_dict()})
            end_of_step(stop, output, step + 1, steps, train.get("checkpoint_every", 100), {"trainable": parameters}, optimizer,
                        bar, accelerator, run_settings(config))
    check_ranks_agree(accelerator, inner, parameters, output, steps)
    trained = whole_tensors(parameters)
    result = save_result(output, trained) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return result


def set_memory_options(model, train: dict, accelerator) -> None:
    """Checkpointing, offloaded checkpoints and block swap from the [train] section."""
    model.gradient_checkpointing = bool(train.get("gradient_checkpointing", False))
    model.offload_checkpoints = bool(train.get("offload_checkpoints", False))
    if train.get("blocks_to_swap", 0):
        if accelerator.num_processes > 1:
            raise InputError("train.blocks_to_swap is for one process (DDP keeps a whole model on each device); "
                             "with several GPUs use rows_at_a_time and offload_checkpoints instead")
        model.swap_blocks(int(train["blocks_to_swap"]))


def accumulated_step(model, batch: dict, sigma: torch.Tensor, noise: torch.Tensor, beta: float, winner_penalty: float,
                     micro: int, rows: bool, accelerator) -> DPOOutput:
    """One optimizer step's gradient over the local batch: `micro` pairs per forward (their gradients accumulate, each
    weighted by its share of the batch), batched or one policy row at a time; the same loss, margins and gradient as
    one batched step (tests/ft2_core/tlpo/test_flow_dpo.py)."""
    local = sigma.shape[0]
    outputs = []
    for start in range(0, local, micro):
        part = slice(start, start + micro)
        chunk = {k: v.select(torch.arange(start, min(start + micro, local), device=sigma.device)) if k == "audio"
                 else v[part] if isinstance(v, torch.Tensor) and v.ndim and v.shape[0] == local else v for k, v in batch.items()}
        share = chunk["winner"].shape[0] / local
        with accelerator.autocast():
            if rows:
                out = dpo_step_by_rows(model, chunk, sigma[part], noise[part], beta, winner_penalty, accelerator.backward, share)
            else:
                out = dpo_step(model, chunk, sigma[part], noise[part], beta, winner_penalty)
        if not rows:
            accelerator.backward(out.loss * share)
        outputs.append((out, share))
    loss = sum(out.loss.detach() * share for out, share in outputs)
    return DPOOutput(loss, torch.cat([out.reward_margin for out, _ in outputs]), torch.cat([out.sigma for out, _ in outputs]))


@torch.no_grad()
def preference_accuracy(model, dataset: PairDataset, indices: list[int], seed: int, sigmas=(0.2, 0.4, 0.6, 0.8)) -> float:
    """Share of (pair, sigma) where the model's reward margin over the reference is positive (held-out check)."""
    correct, total = 0, 0
    for sigma_value in sigmas:
        for index in indices:
            batch = collate_pairs([dataset[index]])
            batch["audio"] = model.adapter.windows(batch["audio_features"], batch["num_frames"])
            g = torch.Generator().manual_seed(mix_seed(seed, index, int(sigma_value * 1000)))
            noise = torch.randn(batch["winner"].shape, generator=g)
            out = dpo_step(model, batch, torch.tensor([sigma_value]), noise, beta=1.0)
            correct += int(out.reward_margin.item() > 0)
            total += 1
    return correct / total


def synthetic_data(config: dict) -> dict | None:
    """With `data.synthetic = true`, the toy pair set is built in `data.cache`'s parent on first use."""
    if not config["data"].get("synthetic"):
        return None
    from training.fixtures.synthetic_pairs import make_synthetic_cache

    cache = resolve(config["data"]["cache"])
    root = cache.parent
    manifests = {d: root / f"pairs_{d}.jsonl" for d in DIMENSION_NAMES}
    if not (cache / "index.json").is_file() or not all(p.is_file() for p in manifests.values()):
        manifests = make_synthetic_cache(root, int(config["data"].get("conditions", 32)), int(config["data"].get("seed", 0)),
                                         cache)
    return manifests
