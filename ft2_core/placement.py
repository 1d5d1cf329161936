"""Where the big modules wait between uses: the encoders and the VAE live on the CPU and visit the compute
device only for their own call, so sampling has the GPU to itself (umT5-XXL alone is about 10.6 GiB,
CLIP-H 1.2 GiB, and they are not needed again once their outputs exist)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def resolved(device) -> torch.device:
    """`device` as its tensors report it ("cuda" -> "cuda:<current>"), so equal places compare equal."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


@contextmanager
def visiting(module: nn.Module, device) -> Iterator[nn.Module]:
    """`module` on `device` for the duration, then back where it was (returning cached GPU memory)."""
    home, device = next(module.parameters()).device, resolved(device)
    if device == home:
        yield module
        return
    move = getattr(module, "place", module.to)  # a model with swapped blocks moves all but those
    move(device)
    try:
        yield module
    finally:
        move(home)
        if device.type == "cuda":
            torch.cuda.empty_cache()


def device_bytes(module) -> int:
    """Bytes a component puts on the device when it visits: every weight, except blocks kept on the CPU by block
    swap (a pipeline: its largest component, since they visit one at a time)."""
    if hasattr(module, "modules") and not isinstance(module, nn.Module):  # a pipeline
        return max(device_bytes(part) for part in module.modules())
    swap = getattr(module, "block_swap", None)
    skip = swap.swapped_tensors() if swap is not None else set()
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()) if id(t) not in skip)
