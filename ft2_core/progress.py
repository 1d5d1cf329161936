"""Progress and cancellation over a whole run: encoders, sampling steps and decoding, in one count.

A front end (a tqdm bar, ComfyUI's progress bar) gives `report`; ComfyUI gives `check_interrupt`,
which raises when the user cancels. Every unit of work calls `advance`, so a cancel is honoured
between any two units; inside one long call (an encoder, a VAE pass, a sampling step) `watching`
honours it before each of the model's layers too.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

import torch


class RunProgress:
    def __init__(self, report: Callable[[int, int, torch.Tensor | None], None] | None = None,
                 check_interrupt: Callable[[], None] | None = None):
        self.report, self.check_interrupt = report, check_interrupt
        self.done, self.total = 0, 0

    def plan(self, total: int) -> None:
        self.done, self.total = 0, total

    def advance(self, units: int = 1, preview: torch.Tensor | None = None) -> None:
        """Count finished work (with an optional x0 latent to preview), then honour a pending cancel."""
        self.done = min(self.total, self.done + units) if self.total else self.done + units
        if self.report is not None:
            self.report(self.done, self.total, preview)
        if self.check_interrupt is not None:
            self.check_interrupt()

    def interrupt_point(self) -> None:
        if self.check_interrupt is not None:
            self.check_interrupt()

    def watching(self, *modules: torch.nn.Module | None):
        """Honour a cancel before each layer of `modules` (None is skipped) while the block runs."""
        return checked_between_layers(modules, self.check_interrupt)


CONVOLUTIONS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)  # diffusers' and ComfyUI's VAE convolutions subclass these


def layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The units of work of `module` worth a cancel check before them, in order: every composite element of its
    ModuleLists (DiT blocks, encoder layers, VAE stages and the residual blocks inside them) and every convolution (a
    VAE's layers at full resolution take seconds each on a CPU). Lists of single operations hold no layers."""
    repeated = [
        layer
        for child in module.modules()
        if isinstance(child, torch.nn.ModuleList)
        for layer in child
        if next(layer.children(), None) is not None
    ]
    seen = set(repeated)
    convolutions = [child for child in module.modules() if isinstance(child, CONVOLUTIONS)]
    return repeated + [conv for conv in convolutions if conv not in seen]


@contextmanager
def checked_between_layers(modules, check_interrupt: Callable[[], None] | None):
    """Call `check_interrupt` (it raises to cancel) before every layer of `modules` runs, for as long as the block lasts:
    a cancel inside one long forward pass waits for one layer, not the whole pass."""
    if check_interrupt is None:
        yield
        return
    handles = [
        layer.register_forward_pre_hook(lambda *_: check_interrupt())
        for module in modules
        if module is not None
        for layer in layers(module)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def counting_calls(module: torch.nn.Module | None, progress: RunProgress | None):
    """Advance once per call of `module` (a VAE decoder runs once per latent frame), cancel between calls."""
    if module is None or progress is None:
        yield
        return
    handle = module.register_forward_hook(lambda *_: progress.advance())
    try:
        yield
    finally:
        handle.remove()
