"""Stage 2 of TLPO: freeze the three experts and train only the timestep-layer gate with Flow-DPO
on a balanced mix of motion / lip-sync / quality pairs (lip mask on the lip-sync pairs).

    python -m training.train_gate --config training/configs/tiny_gate.toml
    accelerate launch --multi_gpu --num_processes 8 -m training.train_gate --config my_gate.toml
"""
from __future__ import annotations

from pathlib import Path

import torch

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.errors import InputError
from ft2_core.tlpo.experts import Expert, attach_experts
from ft2_core.tlpo.gate import TimestepLayerGate, save_gate
from ft2_core.tlpo.lora_formats import load_lora
from ft2_core.tlpo.preference_data import PairDataset
from training.common.base_model import model_from_config
from training.common.config import DPO_TRAIN, MODEL, TOY_DATA, Option, resolve
from training.common.distributed import make_accelerator
from training.common.dpo_loop import pair_dataset, synthetic_data, train_dpo
from training.common.script import run

SCHEMA = {
    "model": MODEL,
    "gate": {"experts": Option(dict), "embed_dim": Option(int, 256, minimum=2), "min_period": Option(float, 0.0, minimum=0)},
    "data": {**TOY_DATA, "pairs": Option(dict, {})},
    "train": {**DPO_TRAIN, "batch_size": Option(int, 6, minimum=1), "lr": Option(float, 1e-3, above=0)},
}


def balanced(dataset: PairDataset) -> PairDataset:
    """Interleave the dimensions round-robin, repeating the smaller sets, so every batch mixes them evenly."""
    by_dimension = {d: [p for p in dataset.pairs if p.dimension == d] for d in DIMENSION_NAMES}
    present = {d: pairs for d, pairs in by_dimension.items() if pairs}
    longest = max(len(pairs) for pairs in present.values())
    mixed = [pairs[i % len(pairs)] for i in range(longest) for pairs in present.values()]
    return PairDataset(dataset.cache, mixed, dataset.use_lip_mask)


def train(config: dict) -> Path:
    gate_config = config["gate"]
    expert_files = gate_config["experts"]
    unknown = sorted(set(expert_files) - set(DIMENSION_NAMES))
    if unknown:
        raise InputError(f"gate.experts: unknown dimension {unknown[0]!r}; use {', '.join(DIMENSION_NAMES)}")
    names = [d for d in DIMENSION_NAMES if d in expert_files]
    if not names:
        raise InputError("gate.experts must name expert files, e.g. {motion = '...', lipsync = '...', quality = '...'}")
    accelerator = make_accelerator(config)
    data = synthetic_data(config)
    model, paths = model_from_config(config)
    model.requires_grad_(False)
    attach_experts(model, [Expert(name, load_lora(resolve(expert_files[name]))) for name in names], dtype=torch.float32)
    def new_gate() -> TimestepLayerGate:
        return TimestepLayerGate(model.num_layers, len(names), int(gate_config.get("embed_dim", 256)), tuple(names),
                                 float(gate_config.get("min_period", 0.0)))

    gate = model.expert_gate = new_gate()
    pair_files = [data[n] for n in names] if data else [config["data"]["pairs"][n] for n in names]
    dataset = balanced(pair_dataset(config, pair_files, use_lip_mask=True))
    parameters = {"proj": gate.proj, "bias": gate.bias}

    def save(output: Path, trained: dict[str, torch.Tensor]) -> Path:
        trained_gate = new_gate()
        trained_gate.load_state_dict(trained)  # the trained values, gathered whole (the gate itself may be sharded)
        return save_gate(trained_gate, output / "gate.safetensors")

    return train_dpo(config, model, parameters, dataset, save, accelerator)


def main(argv=None) -> int:
    """The command: `python -m training.train_gate --config FILE [--set KEY=VALUE ...]`."""
    return run(train, SCHEMA, argv)


if __name__ == "__main__":
    raise SystemExit(main())
