"""A Linear whose weight stays as the file stores it (fp8, optionally with ComfyUI's per-tensor `scale_weight`)
and becomes the compute dtype one layer at a time, inside its forward: an fp8 14B DiT then holds about one
byte per Linear parameter instead of the two (bf16) an upcast on load would cost."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


class StoredLinear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor | None, compute_dtype: torch.dtype):
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.to(compute_dtype), requires_grad=False)
        self.register_buffer("scale_weight", None if scale is None else scale.float().reshape(()), persistent=False)
        self.compute_dtype = compute_dtype

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def dense_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The weight in `dtype` (default: the compute dtype), scale applied: a temporary of one layer."""
        weight = self.weight.to(dtype or self.compute_dtype)
        return weight if self.scale_weight is None else weight * self.scale_weight.to(weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.dense_weight(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


def compute_dtype_of(linear: nn.Module) -> torch.dtype:
    """The dtype a Linear computes in (a stored fp8 weight computes in its compute dtype)."""
    return getattr(linear, "compute_dtype", None) or linear.weight.dtype


def copy_dense_weight(linear: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """`out` = the Linear's weight in `out`'s dtype, scale applied, converted in place (no second full-size temporary)."""
    out.copy_(linear.weight)
    scale = getattr(linear, "scale_weight", None)
    return out if scale is None else out.mul_(scale.to(out.dtype))


FP8_MAX = torch.finfo(torch.float8_e4m3fn).max


def store_blocks_as_fp8(transformer: nn.Module, compute_dtype: torch.dtype) -> int:
    """Turn every Linear inside the DiT's blocks into a StoredLinear holding float8_e4m3fn weights with a per-tensor
    scale (ComfyUI's fp8_scaled layout): one byte per weight instead of two, each layer computing in
    `compute_dtype`. For a bf16 file or a diffusers folder loaded for training. Returns the Linears converted."""
    converted = 0
    for block in transformer.blocks:
        for name, module in list(block.named_modules()):
            if type(module) is not nn.Linear:
                continue
            weight = module.weight.detach().float()
            scale = (weight.abs().max() / FP8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
            stored = StoredLinear((weight / scale).to(torch.float8_e4m3fn), module.bias, scale, compute_dtype)
            block.set_submodule(name, stored.to(module.weight.device))
            converted += 1
    return converted
