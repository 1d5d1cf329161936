"""Key names of the original Wan2.1 checkpoints and their diffusers `WanTransformer3DModel` equivalents."""
from __future__ import annotations

import re

from ..errors import InputError

ORIGINAL_PREFIXES = ("model.diffusion_model.", "diffusion_model.")

# (original, diffusers) module paths outside the blocks.
TOP_LEVEL = (
    ("patch_embedding", "patch_embedding"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("img_emb.proj.0", "condition_embedder.image_embedder.norm1"),
    ("img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"),
    ("img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"),
    ("img_emb.proj.4", "condition_embedder.image_embedder.norm2"),
    ("head.head", "proj_out"),
    ("head.modulation", "scale_shift_table"),
)

# (original, diffusers) module paths inside `blocks.{i}.`; these are also the LoRA target names.
BLOCK_LEVEL = (
    ("modulation", "scale_shift_table"),
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.k_img", "attn2.add_k_proj"),
    ("cross_attn.v_img", "attn2.add_v_proj"),
    ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"),
    ("cross_attn.norm_k_img", "attn2.norm_added_k"),
    ("norm3", "norm2"),  # the affine cross-attention norm is norm3 in Wan, norm2 in diffusers
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
)

_BLOCK = re.compile(r"^blocks\.(?P<index>\d+)\.(?P<module>.+)\.(?P<param>weight|bias|scale_weight)$")


def _table(pairs, reverse: bool) -> dict[str, str]:
    return {b: a for a, b in pairs} if reverse else dict(pairs)


def _convert_key(key: str, reverse: bool) -> str | None:
    top, block = _table(TOP_LEVEL, reverse), _table(BLOCK_LEVEL, reverse)
    # Parameters without a .weight/.bias suffix (modulation tables).
    if key in top:
        return top[key]
    match = re.match(r"^blocks\.(\d+)\.(.+)$", key)
    if match and match.group(2) in block:
        return f"blocks.{match.group(1)}.{block[match.group(2)]}"
    match = _BLOCK.match(key)
    if match and match.group("module") in block:
        return f"blocks.{match.group('index')}.{block[match.group('module')]}.{match.group('param')}"
    module, _, param = key.rpartition(".")
    if module in top:
        return f"{top[module]}.{param}"
    return None


def strip_original_prefix(key: str) -> str:
    for prefix in ORIGINAL_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def original_to_diffusers(state: dict, what: str = "Wan checkpoint") -> dict:
    """Rename an original Wan2.1 state dict (optionally `model.diffusion_model.`-prefixed) to diffusers keys."""
    converted, unknown = {}, []
    for key in list(state):
        new = _convert_key(strip_original_prefix(key), reverse=False)
        if new is None:
            unknown.append(key)
        else:
            converted[new] = state.pop(key)
    if unknown:
        shown = ", ".join(sorted(unknown)[:8])
        raise InputError(f"{what}: {len(unknown)} keys are not Wan2.1 DiT keys (e.g. {shown})")
    return converted


def diffusers_to_original(state: dict) -> dict:
    """The inverse of `original_to_diffusers` (used to write files in the layout users download)."""
    converted = {}
    for key, tensor in state.items():
        new = _convert_key(key, reverse=True)
        if new is None:
            raise KeyError(f"no original Wan name for diffusers key {key}")
        converted[new] = tensor
    return converted


def is_original_layout(keys) -> bool:
    return any(strip_original_prefix(k).startswith(("head.modulation", "text_embedding.")) for k in keys)
