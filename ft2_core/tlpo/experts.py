"""Several LoRA experts active at once, mixed per layer and timestep (models.fused_lora does the arithmetic):
attach them to a model, detach them, run with them for one call, or with them off (the Flow-DPO reference)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ..models.fused_lora import FusedLoRALinear, block_linears, has_submodule, release_scratch, set_submodule
from ..models.wan_keys import BLOCK_LEVEL
from .gate import StaticMix, WithFixedLoras
from .lora_formats import LoraWeights, check_lora_fits

_TO_DIFFUSERS = dict(BLOCK_LEVEL)


@dataclass
class Expert:
    name: str  # e.g. motion / lipsync / quality
    lora: LoraWeights
    strength: float = 1.0
    source: str = ""  # where the file came from, for errors: a node and its input, or a command-line option

    @property
    def described(self) -> str:
        return self.source or f"expert {self.name}"


def attach_experts(model, experts: list[Expert], dtype: torch.dtype | None = None) -> None:
    """Wrap every Linear that any expert targets; each expert is checked against the model first. The experts are held
    in `dtype` (default: the base's compute dtype; trainers keep them fp32 over a bf16 or fp8 base)."""
    if not experts:
        raise InputError("attach_experts needs at least one expert")
    linears = block_linears(model.transformer)
    if any(isinstance(m, FusedLoRALinear) for m in linears.values()):
        raise InputError("experts are already attached to this model; detach them first")
    shapes = {name: (m.out_features, m.in_features) for name, m in linears.items()}
    for expert in experts:
        check_lora_fits(expert.lora, shapes, expert.described)
    targets = sorted({t for expert in experts for t in expert.lora.modules})
    for target in targets:
        downs, ups, scales, ids = [], [], [], []
        for k, expert in enumerate(experts):
            module = expert.lora.modules.get(target)
            if module is None:
                continue
            downs.append(module.down)
            ups.append(module.up)
            scales.append(torch.full((module.rank,), expert.strength * expert.lora.scale(target)))
            ids.append(torch.full((module.rank,), k, dtype=torch.long))
        base = linears[target]
        fused = FusedLoRALinear(base, downs, ups, scales, ids, len(experts), dtype).to(base.weight.device)
        index, original = target.split(".", 2)[1:]
        set_submodule(model.transformer.blocks[int(index)], _TO_DIFFUSERS[original], fused)
    model.expert_names = tuple(e.name for e in experts)


def detach_experts(model) -> None:
    """Put the original Linears back (they were never modified)."""
    for index, block in enumerate(model.transformer.blocks):
        for original, diffusers in BLOCK_LEVEL:
            if has_submodule(block, diffusers) and isinstance(block.get_submodule(diffusers), FusedLoRALinear):
                set_submodule(block, diffusers, block.get_submodule(diffusers).base)
    model.expert_names = ()
    model.expert_gate = None


@contextmanager
def experts_disabled(model):
    """The same network with every expert off (no second copy of the DiT)."""
    gate, model.expert_gate = model.expert_gate, None
    try:
        yield model
    finally:
        model.expert_gate = gate


def order_for_gate(experts: list[Expert], gate: nn.Module) -> list[Expert]:
    """Experts in the order the gate mixes them (a trained gate names its experts)."""
    names = getattr(gate, "experts", ())
    if names:
        by_name = {e.name: e for e in experts}
        missing = [n for n in names if n not in by_name]
        if missing or len(experts) != len(names):
            raise InputError(f"the gate mixes experts {', '.join(names)} but got {', '.join(by_name)}")
        return [by_name[n] for n in names]
    return experts


@contextmanager
def experts_attached(model, experts: list[Expert], gate: nn.Module | None = None, loras: list[Expert] = ()):
    """Experts and their mix for the duration of a run (ComfyUI shares one model between graphs), plus any
    other LoRAs (`loras`: a step-distillation or style LoRA) at a fixed weight of 1 times their strength,
    all through the same fused path (no weight is merged into the model).

    Without a gate every expert has weight 1 (its strength still applies).
    """
    if not experts and not loras:
        yield model
        return
    gate = gate if gate is not None else StaticMix([1.0] * len(experts))
    if gate.num_experts != len(experts):
        raise InputError(f"the gate mixes {gate.num_experts} experts but {len(experts)} were given")
    if getattr(gate, "num_layers", model.num_layers) != model.num_layers:
        raise InputError(f"the gate was made for {gate.num_layers} layers; the model has {model.num_layers}")
    attach_experts(model, (order_for_gate(experts, gate) if experts else []) + list(loras))
    model.expert_gate = WithFixedLoras(gate, len(loras)) if loras else gate
    try:
        yield model
    finally:
        detach_experts(model)
        release_scratch()
