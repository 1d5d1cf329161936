"""Training through one block at a time with its activations recomputed in the backward, so that neither the
block's frozen weights nor its activations have to stay on the device between the forward and the backward.

The forward runs the block without keeping its graph and saves only the block's input hidden states (on the
CPU when `offload` is set). The backward brings the input back, lets a swapped block visit the device again
(the blocks come back in reverse order, the one before prefetched), recomputes the block with gradients and
back-propagates through it. The block's trainable parameters (LoRA experts) are inputs of the function, so their
gradients leave it as any input's do (distributed wrappers see them as usual); they never move (block swap leaves
tensors that require gradients where they are).

Autocast is re-entered in the backward as it was in the forward, so a bf16 run recomputes in bf16.
"""
from __future__ import annotations

from contextlib import ExitStack
from typing import Callable

import torch


class RecomputedBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: Callable, visit: Callable, leave: Callable, offload: bool, hidden: torch.Tensor,
                gate: torch.Tensor | None, *trainable: torch.Tensor):
        ctx.run, ctx.visit, ctx.leave = run, visit, leave
        ctx.device = hidden.device
        kinds = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
        ctx.autocast = {kind: (torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)) for kind in kinds}
        saved = hidden.detach()
        if offload:
            saved = saved.to("cpu", non_blocking=True)
            if hidden.device.type == "cuda":
                saved = saved.pin_memory()
        ctx.hidden, ctx.hidden_requires_grad = saved, hidden.requires_grad
        ctx.save_for_backward(gate, *trainable)
        visit(forward=True)
        try:
            with torch.no_grad():
                return run(hidden, gate)
        finally:
            leave()

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        gate, *trainable = ctx.saved_tensors
        hidden = ctx.hidden.to(ctx.device, non_blocking=True).requires_grad_(ctx.hidden_requires_grad)
        gate = None if gate is None else gate.detach().requires_grad_(gate.requires_grad)
        inputs = [hidden, gate, *trainable]
        wanted = [i for i, t in enumerate(inputs) if t is not None and t.requires_grad]
        ctx.visit(forward=False)
        try:
            with torch.enable_grad(), restored_autocast(ctx.autocast):
                out = ctx.run(hidden, gate)
            grads = torch.autograd.grad(out, [inputs[i] for i in wanted], grad_output, allow_unused=True)
        finally:
            ctx.leave()
        result = [None] * len(inputs)
        for i, grad in zip(wanted, grads):
            result[i] = grad
        return (None, None, None, None, *result)


def restored_autocast(state: dict) -> ExitStack:
    """The autocast state a forward ran under, per device type, entered again (on or off as it was)."""
    stack = ExitStack()
    for kind, (enabled, dtype) in state.items():
        stack.enter_context(torch.autocast(kind, dtype=dtype, enabled=enabled))
    return stack
