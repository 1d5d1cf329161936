import pytest
import torch
from diffusers.models.embeddings import Timesteps

from ft2_core.errors import InputError
from ft2_core.tlpo.gate import (
    ScheduledMix,
    StaticMix,
    TimestepLayerGate,
    load_gate,
    parse_schedule,
    save_gate,
    timestep_embedding,
)


def test_embedding_is_wans():
    t = torch.tensor([0.0, 1.0, 250.5, 999.0])
    # diffusers computes the angles in fp32 (error ~1e-4 at t ~ 1000); ours in fp64 like the original Wan
    torch.testing.assert_close(
        timestep_embedding(t), Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)(t), atol=2e-4, rtol=0
    )


def test_zero_init_gives_equal_weights():
    weights = TimestepLayerGate(5, 3)(torch.tensor([0.0, 500.0, 999.0]))
    assert weights.shape == (3, 5, 3)
    torch.testing.assert_close(weights, torch.full((3, 5, 3), 1 / 3))


def test_gate_formula():
    gate = TimestepLayerGate(2, 3, embed_dim=8)
    with torch.no_grad():
        gate.proj.normal_()
        gate.bias.normal_()
    t = torch.tensor([300.0])
    e = timestep_embedding(t, 8)[0]
    for layer in range(2):
        want = torch.softmax(gate.proj[layer] @ e, dim=0) + gate.bias[layer]
        torch.testing.assert_close(gate(t)[0, layer], want)


def test_min_period_leaves_out_fast_components_so_the_gate_is_smooth(tmp_path):
    """With random projections, the plain gate changes a lot between neighbouring timesteps; a gate without the
    components turning faster than 250 timesteps changes little, and its file keeps the setting."""
    t = torch.arange(0.0, 1000.0)
    plain, smooth = TimestepLayerGate(2, 3), TimestepLayerGate(2, 3, min_period=250.0)
    with torch.no_grad():
        torch.manual_seed(0)
        plain.proj.normal_()
        smooth.proj.copy_(plain.proj)
    frequencies = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(128) / 128)
    kept = (2 * torch.pi / frequencies >= 250).float().repeat(2)
    e = timestep_embedding(t) * kept  # written out: the embedding with the fast half-pairs zeroed
    torch.testing.assert_close(smooth(t)[:, 0], torch.softmax(e @ smooth.proj[0].T, dim=-1))
    step = {name: (gate(t)[1:] - gate(t)[:-1]).abs().max() for name, gate in (("plain", plain), ("smooth", smooth))}
    assert step["smooth"] < 0.05 < step["plain"]
    loaded = load_gate(save_gate(smooth, tmp_path / "smooth.safetensors"))
    assert loaded.min_period == 250.0
    torch.testing.assert_close(loaded(t), smooth(t))
    with pytest.raises(InputError, match="min_period"):
        TimestepLayerGate(2, 3, min_period=-1)


def test_save_load_round_trip_and_layer_check(tmp_path):
    gate = TimestepLayerGate(4, 3, experts=("motion", "lipsync", "quality"))
    with torch.no_grad():
        gate.proj.normal_()
    path = save_gate(gate, tmp_path / "gate.safetensors")
    loaded = load_gate(path, num_layers=4)
    assert loaded.experts == ("motion", "lipsync", "quality")
    torch.testing.assert_close(loaded(torch.tensor([10.0, 900.0])), gate(torch.tensor([10.0, 900.0])))
    with pytest.raises(InputError, match="made for 4 layers but the model has 40"):
        load_gate(path, num_layers=40)


def test_static_and_scheduled_mixes():
    t = torch.tensor([0.0, 250.0, 1000.0])
    assert StaticMix([0.2, 0.3, 0.5])(t).shape == (3, 1, 3)
    points, weights = parse_schedule("1000: 1, 0, 0\n0: 0, 1, 0.5\n", 3)
    mix = ScheduledMix(points, weights)(t)
    torch.testing.assert_close(mix[:, 0], torch.tensor([[0.0, 1.0, 0.5], [0.25, 0.75, 0.375], [1.0, 0.0, 0.0]]))
    with pytest.raises(InputError, match="2 weights for 3 experts"):
        parse_schedule("0: 1, 0", 3)
    with pytest.raises(InputError, match="outside 0..1000"):
        parse_schedule("1200: 1, 0, 0", 3)


@pytest.mark.hostile(item=4, ends="refused")
@pytest.mark.parametrize("line", ["500: nan, 1, 1", "500: 1, inf, 1"])
def test_a_schedule_with_non_finite_weights_is_refused(line):
    from ft2_core.tlpo.gate import parse_schedule

    with pytest.raises(InputError, match="holds a NaN or infinite number"):
        parse_schedule(f"0: 1, 1, 1\n{line}", 3)


@pytest.mark.hostile(item=10, ends="refused")
@pytest.mark.parametrize("embed_dim", [3, 0])
def test_an_odd_or_empty_embedding_is_refused(embed_dim):
    with pytest.raises(InputError, match=f"embed_dim must be even and at least 2 .*got {embed_dim}"):
        TimestepLayerGate(2, 3, embed_dim)
