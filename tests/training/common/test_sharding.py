import pytest

from tests.training.conftest import write_config
from training import train_expert


@pytest.mark.hostile(item=10, ends="refused")
def test_fsdp_refuses_one_process_memory_options_before_loading(tmp_path, toy_data, capsys):
    config = write_config(tmp_path / "fsdp.toml", {
        "model": {"folder": ""}, "expert": {"rank": 4},
        "data": {"cache": str(toy_data["cache"]), "pairs": [str(toy_data["split"]["lipsync"][0])]},
        "train": {"output": str(tmp_path / "fsdp"), "steps": 2, "strategy": "fsdp", "blocks_to_swap": 1}})
    assert train_expert.main(["--config", str(config)]) == 2
    assert "train.blocks_to_swap works on one process only" in capsys.readouterr().err
    assert not (tmp_path / "fsdp").exists()
