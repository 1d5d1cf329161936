import numpy as np
import torch

from ft2_core.tlpo.gate import ScheduledMix, TimestepLayerGate
from ft2_core.tlpo.gate_plot import colour, gate_weights_grid, render_gate


def test_grid_holds_the_gate_weights():
    gate = TimestepLayerGate(3, 2)
    with torch.no_grad():
        gate.proj.normal_(generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1000.0, 0.0])
    grid = gate_weights_grid(gate, 3, t)
    assert grid.shape == (2, 3, 2)
    np.testing.assert_allclose(grid[1, 2, 0], gate(t)[0, 2, 1].item(), rtol=1e-6)


def test_panel_cells_are_coloured_by_weight():
    # expert 0 goes 1 -> 0 as t goes 1000 -> 0; expert 1 the reverse
    mix = ScheduledMix([0.0, 1000.0], [[0.0, 1.0], [1.0, 0.0]])
    image = render_gate(mix, num_layers=4, names=("a", "b"), columns=10, cell=8)
    top = 28 + 4  # margin_top + half a row (rows are 20 px for 4 layers)
    first_cell, last_cell = image[top, 56 + 4], image[top, 56 + 10 * 8 - 4]
    assert tuple(first_cell) == tuple(colour(np.array(1.0)))  # t = 1000 on the left: expert 0 at 1
    assert tuple(last_cell) == tuple(colour(np.array(0.0)))
    second = 56 + 10 * 8 + 24
    assert tuple(image[top, second + 4]) == tuple(colour(np.array(0.0)))
