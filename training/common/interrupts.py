"""Ctrl-C and SIGTERM as a request to stop at the next safe point (after a step's checkpoint, between videos)."""
from __future__ import annotations

import signal

import torch


class Stopped(Exception):
    """Raised at a safe point after SIGINT/SIGTERM; what is finished is kept."""

    def __init__(self, signum: int, where: str):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} {where}; run the same command again to resume")


class StopRequests:
    """Turn SIGINT/SIGTERM into a flag checked at safe points (no KeyboardInterrupt in the middle of a write)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._request)
            except ValueError:  # not the main thread: leave the handlers alone
                pass
        return self

    def _request(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self, accelerator=None) -> bool:
        """Whether any process was asked to stop (all processes agree, so they stop at the same step)."""
        asked = self.signum is not None
        if accelerator is not None and accelerator.num_processes > 1:
            flag = torch.tensor([float(self.signum or 0)], device=accelerator.device)
            flag = accelerator.reduce(flag, reduction="sum")
            if float(flag) > 0 and self.signum is None:
                self.signum = signal.SIGTERM
            asked = float(flag) > 0
        return asked

    def check(self, where: str) -> None:
        if self.signum is not None:
            raise Stopped(self.signum, where)

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False
