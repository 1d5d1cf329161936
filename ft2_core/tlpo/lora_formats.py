"""LoRA files in the layouts users have, read into one form; our expert format written out.

Every reader yields `LoraWeights`: per target module (original Wan name, e.g. `blocks.3.self_attn.q`)
the down matrix A [r, d_in], the up matrix B [d_out, r] and alpha (None when the file has none).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..checks import finite_tensors
from ..dimensions import DIMENSION_NAMES, POOLED
from ..errors import InputError
from ..io.checkpoint_io import load_state_dict, read_metadata, save_safetensors
from ..models.wan_keys import BLOCK_LEVEL

MAX_LORA_RANK = 1024  # beyond it the "low-rank" update is as big as a 14B layer (and its memory with it)
MAX_LORA_ALPHA = 4096.0  # with rank >= 1, a scale of at most 4096 per unit of rank; more only swamps the layer

EXPERT_TARGETS = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                  "cross_attn.q", "cross_attn.k", "cross_attn.v", "cross_attn.o", "ffn.0", "ffn.2")
_ORIGINAL_MODULES = {original for original, _ in BLOCK_LEVEL}
LINEAR_TARGETS = tuple(sorted(m for m in _ORIGINAL_MODULES if "norm" not in m and m != "modulation"))  # a LoRA can adapt
_DIFFUSERS_TO_ORIGINAL = {diffusers: original for original, diffusers in BLOCK_LEVEL}
# musubi-tuner flattens dots to underscores; module names in it are the original ones.
_MUSUBI_MODULES = {original.replace(".", "_"): original for original in _ORIGINAL_MODULES}


@dataclass
class LoraModule:
    down: torch.Tensor  # A [r, d_in]
    up: torch.Tensor  # B [d_out, r]
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def scale(self, default_alpha: float | None) -> float:
        alpha = self.alpha if self.alpha is not None else default_alpha
        return 1.0 if alpha is None else alpha / self.rank


@dataclass
class LoraWeights:
    modules: dict[str, LoraModule]
    format: str
    metadata: dict = field(default_factory=dict)
    default_alpha: float | None = None  # musubi-tuner assumes alpha 1 when a file has none

    def scale(self, target: str) -> float:
        return self.modules[target].scale(self.default_alpha)

    @property
    def ranks(self) -> set[int]:
        return {m.rank for m in self.modules.values()}

    @property
    def num_blocks(self) -> int:
        return 1 + max(int(t.split(".")[1]) for t in self.modules)

    @property
    def alphas(self) -> set[float]:
        return {m.alpha if m.alpha is not None else self.default_alpha for m in self.modules.values()}

    @property
    def target_names(self) -> list[str]:
        return sorted({t.split(".", 2)[2] for t in self.modules})


# (format, regex with groups block, module, part, tail); part is down/up/alpha after normalisation.
_PATTERNS = (
    ("diffsynth", re.compile(r"^(?:pipe\.dit\.|dit\.)?blocks\.(\d+)\.(.+)\.(lora_A|lora_B)\.default\.weight$")),
    ("musubi-tuner", re.compile(r"^lora_unet_blocks_(\d+)_(.+?)\.(lora_down\.weight|lora_up\.weight|alpha)$")),
    (
        "diffusers",
        re.compile(
            r"^(?:transformer\.)?blocks\.(\d+)\.((?:attn[12]|ffn\.net)\..+?)\.(lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha)$"
        ),
    ),
    (
        "comfyui",
        re.compile(
            r"^(?:model\.diffusion_model\.|diffusion_model\.)?blocks\.(\d+)\.(.+?)\.(lora_A\.weight|lora_B\.weight|lora_down\.weight|lora_up\.weight|alpha)$"
        ),
    ),
)
_PARTS = {
    "lora_A": "down",
    "lora_B": "up",
    "lora_A.weight": "down",
    "lora_B.weight": "up",
    "lora_down.weight": "down",
    "lora_up.weight": "up",
    "alpha": "alpha",
}


def _module_name(fmt: str, raw: str) -> str | None:
    if fmt == "musubi-tuner":
        return _MUSUBI_MODULES.get(raw)
    if fmt == "diffusers":
        return _DIFFUSERS_TO_ORIGINAL.get(raw)
    return raw if raw in _ORIGINAL_MODULES else None


def parse_lora_state(state: dict[str, torch.Tensor], what: str, metadata: dict | None = None) -> LoraWeights:
    """Recognise the layout of a LoRA state dict and gather A, B and alpha per target module."""
    for fmt, pattern in _PATTERNS:
        if not any(pattern.match(k) for k in state):
            continue
        parts: dict[str, dict] = {}
        unknown = []
        for key, tensor in state.items():
            match = pattern.match(key)
            module = _module_name(fmt, match.group(2)) if match else None
            if module is None:
                unknown.append(key)
                continue
            parts.setdefault(f"blocks.{match.group(1)}.{module}", {})[_PARTS[match.group(3)]] = tensor
        if unknown:
            raise InputError(
                f"{what}: {len(unknown)} keys are not Wan2.1 block LoRA keys ({fmt} layout), e.g. "
                f"{', '.join(sorted(unknown)[:4])}"
            )
        modules = {}
        for target, found in parts.items():
            if "down" not in found or "up" not in found:
                raise InputError(f"{what}: {target} has {'no up (B)' if 'up' not in found else 'no down (A)'} matrix")
            down, up = found["down"].float(), found["up"].float()
            if down.ndim != 2 or up.ndim != 2 or down.shape[0] != up.shape[1]:
                raise InputError(f"{what}: {target} down {tuple(down.shape)} and up {tuple(up.shape)} ranks do not match")
            if down.shape[0] > MAX_LORA_RANK:
                raise InputError(f"{what}: {target} has rank {down.shape[0]}; expected at most {MAX_LORA_RANK}")
            alpha = float(found["alpha"]) if "alpha" in found else None
            if alpha is not None and not (math.isfinite(alpha) and abs(alpha) <= MAX_LORA_ALPHA):
                raise InputError(f"{what}: {target} has alpha {alpha:g}; expected a finite value of at most {MAX_LORA_ALPHA:g} "
                                 "(its update would swamp the layer)")
            modules[target] = LoraModule(down, up, alpha)
        return LoraWeights(modules, fmt, metadata or {}, default_alpha=1.0 if fmt == "musubi-tuner" else None)
    raise InputError(f"{what}: no Wan2.1 LoRA keys found (first keys: {', '.join(sorted(state)[:3])})")


def is_wan_lora(keys) -> bool:
    """Whether tensor names (a safetensors header is enough) are a Wan2.1 block LoRA in a layout parse_lora_state reads."""
    keys = list(keys)
    for fmt, pattern in _PATTERNS:
        matches = [pattern.match(key) for key in keys]
        if any(matches):
            return all(match is not None and _module_name(fmt, match.group(2)) is not None for match in matches)
    return False


def load_lora(path: str | os.PathLike, what: str | None = None) -> LoraWeights:
    """A Wan2.1 LoRA in any known layout; errors name `what` (default: the file)."""
    what = what or f"LoRA {Path(path).name}"
    state = load_state_dict(path, what)
    finite_tensors(state, what)
    return parse_lora_state(state, what, read_metadata(path, what))


def check_lora_fits(lora: LoraWeights, linear_shapes: dict[str, tuple[int, int]], what: str) -> None:
    """Refuse a LoRA made for another model: more blocks, modules the model lacks, wrong shapes, T2V metadata."""
    base = " ".join(str(lora.metadata.get(k, "")) for k in ("ft2.base_model", "ss_base_model_version", "modelspec.architecture"))
    model_blocks = 1 + max(int(t.split(".")[1]) for t in linear_shapes)
    is_i2v = any(t.endswith("cross_attn.k_img") for t in linear_shapes)
    if "t2v" in base.lower() and is_i2v:
        raise InputError(
            f"{what}: made for a text-to-video model ({base.strip()}); this is the image-to-video model, "
            "whose experts must be trained on Wan2.1-I2V"
        )
    if lora.num_blocks > model_blocks:
        raise InputError(f"{what}: targets {lora.num_blocks} blocks but the model has {model_blocks}")
    for target, module in sorted(lora.modules.items()):
        if target not in linear_shapes:
            hint = " (a T2V model has no image cross-attention)" if "_img" in target else ""
            raise InputError(f"{what}: targets {target}, which this model does not have{hint}")
        out_features, in_features = linear_shapes[target]
        if module.down.shape[1] != in_features or module.up.shape[0] != out_features:
            raise InputError(
                f"{what}: {target} is {module.up.shape[0]}x{module.down.shape[1]} but the model's layer is "
                f"{out_features}x{in_features}; the LoRA was made for another model (width {module.down.shape[1]})"
            )


def expert_state_dict(lora: LoraWeights) -> dict[str, torch.Tensor]:
    """ComfyUI-native keys (`diffusion_model.blocks.N.module.lora_A/B.weight` + `.alpha`)."""
    state = {}
    for target, module in lora.modules.items():
        prefix = f"diffusion_model.{target}"
        state[f"{prefix}.lora_A.weight"] = module.down
        state[f"{prefix}.lora_B.weight"] = module.up
        state[f"{prefix}.alpha"] = torch.tensor(float(module.alpha if module.alpha is not None else module.rank))
    return state


def save_expert(lora: LoraWeights, path: str | os.PathLike, dimension: str, base_model: str, extra: dict | None = None) -> Path:
    """Write an expert in our format (loads in plain ComfyUI as a LoRA too)."""
    if dimension not in (*DIMENSION_NAMES, POOLED):
        raise InputError(f"expert dimension must be one of {(*DIMENSION_NAMES, POOLED)}, got {dimension!r}")
    ranks, alphas = lora.ranks, lora.alphas
    metadata = {
        "ft2.kind": "expert",
        "ft2.dimension": dimension,
        "ft2.base_model": base_model,
        "ft2.rank": ",".join(map(str, sorted(ranks))),
        "ft2.alpha": ",".join(f"{a:g}" for a in sorted(a for a in alphas if a is not None)),
        **(extra or {}),
    }
    return save_safetensors(expert_state_dict(lora), path, metadata)


def describe(lora: LoraWeights) -> str:
    """What `python -m ft2_core experts inspect` prints."""
    alphas = sorted(a for a in lora.alphas if a is not None)
    lines = [
        f"format: {lora.format}",
        f"rank: {', '.join(map(str, sorted(lora.ranks)))}",
        f"alpha: {', '.join(f'{a:g}' for a in alphas) if alphas else 'none (scale 1)'}",
        f"layers: {lora.num_blocks}",
        f"modules: {', '.join(lora.target_names)}",
        f"ft2.dimension: {lora.metadata.get('ft2.dimension', '(not set)')}",
    ]
    if "ft2.base_model" in lora.metadata:
        lines.append(f"ft2.base_model: {lora.metadata['ft2.base_model']}")
    return "\n".join(lines)
