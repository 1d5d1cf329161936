import pytest
import torch

from ft2_core.cli import main
from ft2_core.errors import InputError
from ft2_core.io.checkpoint_io import read_metadata
from ft2_core.models.audio_adapter import AudioAdapter, load_audio_adapter, ours_to_upstream


def upstream_checkpoint(adapter: AudioAdapter) -> dict:
    """The nested dict layout of `fantasytalking_model.ckpt`."""
    flat = ours_to_upstream(adapter.state_dict())
    return {
        "proj_model": {k.removeprefix("proj_model."): v for k, v in flat.items() if k.startswith("proj_model.")},
        "audio_processor": {k.removeprefix("audio_processor."): v for k, v in flat.items() if k.startswith("audio_processor.")},
    }


@pytest.fixture()
def adapter():
    torch.manual_seed(1)
    adapter = AudioAdapter(num_layers=2, model_dim=32, audio_in_dim=12, audio_proj_dim=20)
    for p in adapter.parameters():
        torch.nn.init.normal_(p)
    return adapter


def assert_same(a: AudioAdapter, b: AudioAdapter):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_upstream_ckpt_loads(tmp_path, adapter):
    path = tmp_path / "fantasytalking_model.ckpt"
    torch.save(upstream_checkpoint(adapter), path)
    assert_same(load_audio_adapter(path, 2, 32), adapter)


def test_convert_adapter_cli_round_trip(tmp_path, adapter):
    source, target = tmp_path / "fantasytalking_model.ckpt", tmp_path / "fantasytalking_model.safetensors"
    torch.save(upstream_checkpoint(adapter), source)
    assert main(["convert-adapter", str(source), str(target)]) == 0
    assert read_metadata(target)["ft2.kind"] == "audio_adapter"
    assert_same(load_audio_adapter(target, 2, 32), adapter)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_adapter_for_another_width_is_refused(tmp_path, adapter):
    path = tmp_path / "a.ckpt"
    torch.save(upstream_checkpoint(adapter), path)
    with pytest.raises(InputError, match=r"blocks.0.k_proj.weight has shape \(32, 20\) but this DiT \(width 5120\)"):
        load_audio_adapter(path, 2, 5120)


def test_adapter_with_fewer_layers_is_refused(tmp_path, adapter):
    path = tmp_path / "a.ckpt"
    torch.save(upstream_checkpoint(adapter), path)
    with pytest.raises(InputError, match="lacks 4 tensors for a 4-layer DiT"):
        load_audio_adapter(path, 4, 32)


def test_unrelated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"net.weight": torch.zeros(2)}}, path)
    with pytest.raises(InputError, match="unexpected keys for a FantasyTalking audio adapter: state_dict.net.weight"):
        load_audio_adapter(path, 2, 32)


@pytest.mark.hostile(item=7, ends="refused")
def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"proj_model": {"x": torch.nn.Linear(2, 2)}}, path)  # a module object, not tensors
    with pytest.raises(InputError, match="weights-only"):
        load_audio_adapter(path, 2, 32)


@pytest.mark.hostile(item=5, ends="refused")
def test_a_safetensors_adapter_that_does_not_fit_is_refused_before_its_data_is_read(tmp_path, adapter, monkeypatch):
    from safetensors.torch import save_file

    from ft2_core.models import audio_adapter

    state = ours_to_upstream(adapter.state_dict())
    key = next(k for k in state if k.endswith("k_proj.weight"))
    state[key] = torch.zeros(4194304, 1)  # a damaged or foreign shape
    path = tmp_path / "a.safetensors"
    save_file(state, str(path))

    def no_reading(*args, **kwargs):
        raise AssertionError("tensor data was read before the shapes were checked")

    monkeypatch.setattr(audio_adapter, "load_state_dict", no_reading)
    with pytest.raises(InputError, match=r"k_proj.weight has shape \(4194304, 1\) but this DiT \(width 32\) needs \(32, 20\)"):
        load_audio_adapter(path, 2, 32)
