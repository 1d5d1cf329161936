"""Progress and cancellation over a whole run: encoders, sampling steps and decoding, in one count.

A front end (a tqdm bar, ComfyUI's progress bar) gives `report`; ComfyUI gives `check_interrupt`,
which raises when the user cancels. Every unit of work calls `advance`, so a cancel is honoured
between any two units, during decoding too.
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
