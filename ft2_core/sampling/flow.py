"""Flow-matching schedules and solvers: x_t = (1 - sigma) x0 + sigma * noise, v = noise - x0."""
from __future__ import annotations

import torch

from ..errors import InputError

NUM_TRAIN_TIMESTEPS = 1000
SCHEDULERS = ("euler", "unipc")


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """sigma' = s*sigma / (1 + (s-1)*sigma): more steps at high noise for s > 1."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def euler_sigmas(steps: int, shift: float) -> torch.Tensor:
    """Upstream's schedule: `steps` shifted sigmas from 1 down (excluding 0), then the final 0."""
    sigmas = shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1], shift)
    return torch.cat([sigmas, sigmas.new_zeros(1)])


class FlowSolver:
    """One interface over Euler (upstream's) and UniPC (diffusers', flow-prediction mode)."""

    def __init__(self, name: str, steps: int, shift: float):
        if name not in SCHEDULERS:
            raise InputError(f"scheduler must be one of {SCHEDULERS}, got {name!r}")
        if steps < 1:
            raise InputError(f"steps must be at least 1, got {steps}")
        if shift <= 0:
            raise InputError(f"shift must be positive, got {shift}")
        self.name = name
        if name == "unipc":
            from diffusers import UniPCMultistepScheduler

            self._unipc = UniPCMultistepScheduler(
                num_train_timesteps=NUM_TRAIN_TIMESTEPS, prediction_type="flow_prediction",
                use_flow_sigmas=True, flow_shift=shift,
            )
            self._unipc.set_timesteps(steps)
            self.sigmas = self._unipc.sigmas.double()
        else:
            self.sigmas = euler_sigmas(steps, shift)
        self.timesteps = (self.sigmas[:-1] * NUM_TRAIN_TIMESTEPS).float()

    def __len__(self) -> int:
        return len(self.timesteps)

    def step(self, velocity: torch.Tensor, index: int, sample: torch.Tensor) -> torch.Tensor:
        if self.name == "unipc":
            return self._unipc.step(velocity, self._unipc.timesteps[index], sample).prev_sample
        delta = float(self.sigmas[index + 1] - self.sigmas[index])
        return (sample.float() + velocity.float() * delta).to(sample.dtype)

    def denoised(self, velocity: torch.Tensor, index: int, sample: torch.Tensor) -> torch.Tensor:
        """The x0 estimate at this step (for previews): x_t - sigma * v."""
        return sample - float(self.sigmas[index]) * velocity
