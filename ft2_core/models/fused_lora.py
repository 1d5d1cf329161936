"""The Linear that carries several LoRA updates at once, mixed per row by a gate, as one low-rank product.

For each adapted Linear W of layer l:  y = W x + B_cat · (w ⊙ (A_cat x)),  where A_cat stacks the
experts' down matrices (sum of ranks x d_in), B_cat their up matrices, and w repeats
g_l,k(t) · s_k over expert k's rank columns. The base Linear is kept as is (no copy).

At inference, when every row of a call shares one timestep (sampling: all guidance rows do), one
mixed weight per layer serves the whole batch: W + B_cat diag(w) A_cat is formed in a scratch matrix
shared by all Linears of that shape (never a copy of the model) when that costs fewer operations
than the low-rank product over the call's tokens. Training keeps the low-rank path (its rows have
different timesteps, and gradients flow through A and B).
"""
import torch
import torch.nn.functional as F
from torch import nn

from .stored_linear import StoredLinear, compute_dtype_of, copy_dense_weight
from .wan_keys import BLOCK_LEVEL


class FusedLoRALinear(nn.Module):
    """A Linear plus the experts' low-rank updates.

    `gate` [B, K] is set per block call by the model; with no gate (the model has no `expert_gate`)
    the experts are off and this is exactly the base Linear: that is the Flow-DPO reference.
    """

    def __init__(self, base: nn.Linear, downs, ups, scales, expert_ids, num_experts: int, dtype: torch.dtype | None = None):
        """`dtype`: the experts' own (fp32 for training under autocast); default the base's compute dtype."""
        super().__init__()
        self.base = base
        dtype = dtype or compute_dtype_of(base)  # an fp8-stored base computes in its compute dtype
        self.down = nn.Parameter(torch.cat(downs).to(dtype), requires_grad=False)  # [R, d_in]
        self.up = nn.Parameter(torch.cat(ups, dim=1).to(dtype), requires_grad=False)  # [d_out, R]
        self.register_buffer("column_scale", torch.cat(scales), persistent=False)  # s_k per rank column
        self.register_buffer("column_expert", torch.cat(expert_ids), persistent=False)  # k per rank column
        self.num_experts = num_experts
        self.gate: torch.Tensor | None = None

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:  # diffusers reads .weight.dtype of projections
        return self.base.weight

    path = "auto"  # "auto": the cheaper of the two at inference; "fused" / "merged" to compare them

    def merges(self, x: torch.Tensor) -> bool:
        """The merged weight for this call? Only for one gate row without gradients; "auto" compares the
        extra multiply-adds: merging costs d_out x d_in x R, the low-rank path tokens x R x (d_in + d_out)."""
        if self.gate.shape[0] != 1 or torch.is_grad_enabled() or self.path == "fused":
            return False
        tokens = x.numel() // x.shape[-1]
        return self.path == "merged" or tokens * (self.in_features + self.out_features) > self.in_features * self.out_features

    def merged_forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = (self.gate[0, self.column_expert] * self.column_scale).to(self.up.dtype)
        weight = scratch_matrix((self.out_features, self.in_features), self.up.dtype, self.up.device)
        copy_dense_weight(self.base, weight).addmm_(self.up * weights, self.down)
        return F.linear(x.to(weight.dtype), weight, None if self.base.bias is None else self.base.bias.to(weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None and self.merges(x):
            return self.merged_forward(x)
        out = self.base(x)
        if self.gate is None:
            return out
        # [B, R] column weights, broadcast over each sample's tokens
        middle = F.linear(x, self.down)
        weights = (self.gate[:, self.column_expert] * self.column_scale).to(middle.dtype)
        middle = middle * weights.view(weights.shape[0], *([1] * (middle.ndim - 2)), -1)
        # accumulate into the base output in place (no second [tokens, d_out] tensor); under autocast
        # the output is in the autocast dtype, so the product is done in it too
        out.view(-1, out.shape[-1]).addmm_(middle.reshape(-1, middle.shape[-1]).to(out.dtype), self.up.t().to(out.dtype))
        return out


_SCRATCH: dict[tuple, torch.Tensor] = {}


def scratch_matrix(shape: tuple[int, int], dtype: torch.dtype, device) -> torch.Tensor:
    """One reusable matrix per weight shape, dtype and device (layers run one at a time)."""
    key = (tuple(shape), dtype, torch.device(device))
    if key not in _SCRATCH:
        _SCRATCH[key] = torch.empty(shape, dtype=dtype, device=device)
    return _SCRATCH[key]


def release_scratch() -> None:
    """Free the merge scratch matrices (after a run; experts_attached does it)."""
    _SCRATCH.clear()


def block_linears(transformer) -> dict[str, nn.Linear]:
    """Every adaptable Linear of the blocks by original Wan name (e.g. blocks.3.self_attn.q)."""
    found = {}
    for index, block in enumerate(transformer.blocks):
        for original, diffusers in BLOCK_LEVEL:
            module = block.get_submodule(diffusers) if has_submodule(block, diffusers) else None
            if isinstance(module, (nn.Linear, StoredLinear, FusedLoRALinear)):
                found[f"blocks.{index}.{original}"] = module
    return found


def has_submodule(module: nn.Module, path: str) -> bool:
    try:
        module.get_submodule(path)
        return True
    except AttributeError:
        return False


def set_submodule(root: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, new)


def set_block_gate(block: nn.Module, gate: torch.Tensor | None) -> None:
    """Give this block's fused Linears their [B, K] expert weights for the current call."""
    for module in block.modules():
        if isinstance(module, FusedLoRALinear):
            module.gate = gate
