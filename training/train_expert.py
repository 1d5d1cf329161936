"""Stage 1 of TLPO: one LoRA expert per dimension, trained with Flow-DPO on its pair set
(or, as the baseline TLPO is compared with, one LoRA on all pairs pooled: expert.dimension = "pooled").

    python -m training.train_expert --config training/configs/tiny_expert.toml [--set expert.dimension=motion]
    accelerate launch --multi_gpu --num_processes 8 -m training.train_expert --config my_expert.toml

The lip-sync expert's loss is the masked mean over its lip mask. The reference is the same network
with the expert off. Writes experts in our format (ComfyUI-native LoRA keys + ft2 metadata).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ft2_core.dimensions import DIMENSION_NAMES, POOLED
from ft2_core.errors import InputError
from ft2_core.models.fused_lora import FusedLoRALinear
from ft2_core.tlpo.experts import Expert, attach_experts
from ft2_core.tlpo.gate import StaticMix
from ft2_core.tlpo.lora_formats import (
    EXPERT_TARGETS,
    LINEAR_TARGETS,
    MAX_LORA_ALPHA,
    MAX_LORA_RANK,
    LoraModule,
    LoraWeights,
    save_expert,
)
from training.common.base_model import model_from_config
from training.common.config import DPO_TRAIN, MODEL, TOY_DATA, Option
from training.common.distributed import make_accelerator
from training.common.dpo_loop import pair_dataset, synthetic_data, train_dpo
from training.common.script import run

SCHEMA = {
    "model": MODEL,
    "expert": {
        "dimension": Option(str, "lipsync", choices=(*DIMENSION_NAMES, POOLED)),
        "rank": Option(int, 16, minimum=1, maximum=MAX_LORA_RANK),
        "alpha": Option(float, 16.0, above=0, maximum=MAX_LORA_ALPHA),
        "targets": Option(list, list(EXPERT_TARGETS)),
        "lip_mask": Option(bool, True),
    },
    "data": {**TOY_DATA, "pairs": Option((list, str), [])},
    "train": DPO_TRAIN,
}


def fresh_lora(model, rank: int, alpha: float, targets, seed: int) -> LoraWeights:
    """A new expert: A ~ N(0, 1/rank), B = 0, so training starts at the reference."""
    from ft2_core.models.fused_lora import block_linears

    g = torch.Generator().manual_seed(seed)
    modules = {}
    for name, linear in block_linears(model.transformer).items():
        if name.split(".", 2)[2] in targets:
            modules[name] = LoraModule(
                torch.randn(rank, linear.in_features, generator=g) / rank, torch.zeros(linear.out_features, rank), alpha
            )
    return LoraWeights(modules, "ft2")


def fused_modules(model) -> dict[str, FusedLoRALinear]:
    from ft2_core.models.fused_lora import block_linears

    return {name: m for name, m in block_linears(model.transformer).items() if isinstance(m, FusedLoRALinear)}


def check_targets(targets) -> None:
    """expert.targets names Wan2.1 block layers (checked before anything loads)."""
    known = list(LINEAR_TARGETS)
    if not targets or not all(isinstance(t, str) for t in targets):
        raise InputError(f"expert.targets must name at least one block layer, e.g. {list(EXPERT_TARGETS)}")
    unknown = sorted(set(targets) - set(known))
    if unknown:
        raise InputError(f"expert.targets: {unknown} are not Wan2.1 block layers; known: {known}")


def train(config: dict) -> Path:
    expert_config, train = config["expert"], config["train"]
    dimension = expert_config["dimension"]
    check_targets(expert_config["targets"])
    accelerator = make_accelerator(config)
    data = synthetic_data(config)
    model, paths = model_from_config(config)
    model.requires_grad_(False)
    lora = fresh_lora(
        model, int(expert_config["rank"]), float(expert_config["alpha"]), expert_config["targets"], train.get("seed", 0)
    )
    attach_experts(model, [Expert(dimension, lora)], dtype=torch.float32)  # trained in fp32 over any base
    model.expert_gate = StaticMix([1.0])
    fused = fused_modules(model)
    parameters = {}
    for name, module in fused.items():
        module.down.requires_grad_(True)
        module.up.requires_grad_(True)
        parameters[f"{name}.lora_A"], parameters[f"{name}.lora_B"] = module.down, module.up
    if data:  # the toy pair set: a dimension's own pairs, or all of them pooled
        pair_files = list(data.values()) if dimension == POOLED else data[dimension]
    else:
        pair_files = config["data"]["pairs"]
    dataset = pair_dataset(
        config,
        [pair_files] if isinstance(pair_files, (str, Path)) else pair_files,
        use_lip_mask=bool(expert_config.get("lip_mask", True)),
    )

    def save(output: Path, trained: dict[str, torch.Tensor]) -> Path:
        alpha = float(expert_config["alpha"])
        modules = {n: LoraModule(trained[f"{n}.lora_A"], trained[f"{n}.lora_B"], alpha) for n in fused}
        return save_expert(
            LoraWeights(modules, "ft2"),
            output / f"expert_{dimension}.safetensors",
            dimension,
            str(paths.transformer.name),
            {"ft2.steps": str(train["steps"]), "ft2.beta": str(train["beta"])},
        )

    return train_dpo(config, model, parameters, dataset, save, accelerator)


def main(argv=None) -> int:
    """The command: `python -m training.train_expert --config FILE [--set KEY=VALUE ...]`."""
    return run(train, SCHEMA, argv)


if __name__ == "__main__":
    raise SystemExit(main())
