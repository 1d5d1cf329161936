"""Block swap: some of the DiT's blocks wait in CPU memory and visit the compute device one at a time.

The last `count` blocks (with their FantasyTalking audio k/v, and any experts attached inside them) stay on
the CPU, pinned when CUDA is there. Each is copied to the device just before it runs, the next swapped one
on a side stream while the current one computes, and dropped from the device after it ran: the device
holds the other blocks plus two swapped ones. The numbers are those of the resident model (on a CPU the
copies are no-ops, and the same code runs).

In training the blocks visit twice: in the forward, and again in reverse order in the backward, where each is
recomputed (models.block_recompute). Tensors that require gradients (LoRA experts and gates being trained) never
swap: they stay on the device with their gradients and optimizer state.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError


class BlockSwap:
    def __init__(self, model: nn.Module, count: int):
        layers = model.num_layers
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= layers:
            raise InputError(f"blocks_to_swap must be a whole number from 0 to the model's {layers} blocks, got {count!r}")
        self.model, self.count = model, count
        self.swapped = list(range(layers - count, layers))
        self.visiting: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # index -> (tensor, its CPU data)
        self.ready: dict[int, object] = {}  # index -> CUDA event of a prefetch
        self.stream = None

    def parts(self, index: int) -> list[nn.Module]:
        return [self.model.transformer.blocks[index], self.model.adapter.blocks[index]]

    def frozen_tensors(self, index: int) -> list[torch.Tensor]:
        """What visits for block `index`: its parameters and buffers, except those being trained."""
        return [t for part in self.parts(index) for t in (*part.parameters(), *part.buffers()) if not t.requires_grad]

    def swapped_tensors(self) -> set[int]:
        return {id(t) for i in self.swapped for t in self.frozen_tensors(i)}

    def place(self, device) -> None:
        """Move everything but the swapped blocks to `device` (they stay on the CPU between visits). A forward that
        was cancelled midway may have left visitors on the device: they go home first."""
        for index in list(self.visiting):
            self.after(index)
        self.ready.clear()
        device, skip = torch.device(device), self.swapped_tensors()
        for tensor in (*self.model.parameters(), *self.model.buffers()):
            if id(tensor) not in skip:
                tensor.data = tensor.data.to(device)

    def _bring(self, index: int, device: torch.device) -> None:
        moved = []
        for tensor in self.frozen_tensors(index):
            home = tensor.data
            if device.type == "cuda" and not home.is_pinned():
                home = tensor.data = home.pin_memory()
            tensor.data = home.to(device, non_blocking=True)
            moved.append((tensor, home))
        self.visiting[index] = moved

    def before(self, index: int, device, following: int | None = None) -> None:
        """Block `index` is about to run on `device`: make sure it is there, and start copying the one that runs next
        (`following`: index + 1 in a forward, index - 1 in a backward)."""
        if index not in self.swapped:
            return
        device = torch.device(device)
        if index in self.ready:
            torch.cuda.current_stream(device).wait_event(self.ready.pop(index))
            for tensor, _ in self.visiting[index]:
                tensor.data.record_stream(torch.cuda.current_stream(device))
        elif index not in self.visiting:
            self._bring(index, device)
        following = index + 1 if following is None else following
        if following in self.swapped and following not in self.visiting:
            if device.type == "cuda":
                self.stream = self.stream or torch.cuda.Stream(device)
                with torch.cuda.stream(self.stream):
                    self._bring(following, device)
                    self.ready[following] = torch.cuda.Event()
                    self.ready[following].record(self.stream)
            else:
                self._bring(following, device)

    def after(self, index: int) -> None:
        """Block `index` has run: its device copy is dropped, its tensors point at their CPU data again."""
        for tensor, home in self.visiting.pop(index, []):
            tensor.data = home
