import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.sampling.flow import FlowSolver


@pytest.mark.parametrize("steps,shift", [(30, 5.0), (4, 1.0), (10, 3.0)])
def test_euler_schedule_is_upstreams(steps, shift):
    solver = FlowSolver("euler", steps, shift)
    for i in range(steps):
        s = 1 - i / steps
        assert float(solver.sigmas[i]) == pytest.approx(shift * s / (1 + (shift - 1) * s), abs=1e-12)
        assert float(solver.timesteps[i]) == pytest.approx(1000 * float(solver.sigmas[i]), rel=1e-6)
    assert float(solver.sigmas[-1]) == 0.0


def test_euler_recovers_x0_from_exact_velocity():
    x0, noise = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    solver = FlowSolver("euler", 7, 5.0)
    x = noise.clone()
    for i in range(len(solver)):
        x = solver.step(noise - x0, i, x)  # the true flow velocity is constant along the path
    torch.testing.assert_close(x, x0, rtol=1e-5, atol=1e-5)


def test_unipc_recovers_x0_from_exact_velocity():
    x0, noise = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    solver = FlowSolver("unipc", 12, 5.0)
    assert float(solver.sigmas[0]) == pytest.approx(1.0, abs=1e-3) and float(solver.sigmas[-1]) == 0.0
    x = noise.clone()
    for i in range(len(solver)):
        x = solver.step(noise - x0, i, x)
    torch.testing.assert_close(x, x0, rtol=1e-4, atol=1e-4)


def test_bad_solver_options():
    with pytest.raises(InputError, match="scheduler must be one of"):
        FlowSolver("ddim", 10, 5.0)
    with pytest.raises(InputError, match="steps must be at least 1"):
        FlowSolver("euler", 0, 5.0)
