"""The skip prediction's prior: measured directions and spreads, and its file checked on load."""
import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.io.checkpoint_io import save_safetensors
from ft2_core.models.deviation_prior import load_prior, measure_prior, save_prior


def test_measure_prior_finds_the_directions_and_spreads_of_known_data():
    g = torch.Generator().manual_seed(0)
    directions = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))[0].T
    spreads = torch.tensor([2.0, 1.0, 0.3, 0.05], dtype=torch.float64)
    data = (torch.randn(200_000, 4, generator=g, dtype=torch.float64) * spreads) @ directions
    basis, spread = measure_prior(data)
    torch.testing.assert_close(spread.double(), spreads, rtol=0.01, atol=0)
    alignment = (basis.double() * directions).sum(1).abs()  # each found direction is the known one, up to its sign
    assert (alignment > 0.999).all()
    torch.testing.assert_close(basis @ basis.T, torch.eye(4), atol=1e-5, rtol=0)


def test_measure_prior_refuses_fewer_rows_than_channels():
    with pytest.raises(InputError, match=r"deviations must be \[N, C\] with N >= C, got \(3, 4\)"):
        measure_prior(torch.randn(3, 4))


def test_a_saved_prior_loads_as_it_was(tmp_path):
    basis, spread = measure_prior(torch.randn(100, 6))
    save_prior(basis, spread, tmp_path / "prior.safetensors")
    loaded = load_prior(tmp_path / "prior.safetensors")
    assert torch.equal(loaded[0], basis) and torch.equal(loaded[1], spread)


@pytest.mark.parametrize("tensors, message", [
    ({"basis": torch.eye(3)}, r"expected tensors basis and spread, found \['basis'\]"),
    ({"basis": torch.eye(3), "spread": torch.ones(4)}, r"expected basis \[C, C\] and spread \[C\], got \(3, 3\) and \(4,\)"),
    ({"basis": 2 * torch.eye(3), "spread": torch.ones(3)}, "the basis must be orthonormal"),
    ({"basis": torch.eye(3), "spread": -torch.ones(3)}, "spreads at least 0"),
])
def test_a_broken_prior_file_is_refused_by_name(tmp_path, tensors, message):
    path = save_safetensors(tensors, tmp_path / "prior.safetensors")
    with pytest.raises(InputError, match=f"deviation prior {path}: .*{message}"):
        load_prior(path)
