"""A shortened TLPO chain on the shipped miniature model: every stage runs and feeds the next."""
import json

from ft2_core.tlpo.gate import load_gate
from ft2_core.tlpo.lora_formats import load_lora
from tests.training.conftest import write_config
from training import reproduce_tlpo
from training.trainer import run


def test_every_stage_produces_what_the_next_consumes(tmp_path):
    config = write_config(tmp_path / "chain.toml", {
        "run": {"output": str(tmp_path / "run"), "results": str(tmp_path / "results" / "tlpo")},
        "world": {"critic_conditions": 2, "train_conditions": 2, "heldout_conditions": 1, "frames": 9},
        "candidates": {"samples": 2, "audio_cfg": [1.0, 5.0], "steps": 3},
        "critic": {"steps": 4, "batch_size": 4, "max_frames": 10, "min_side": 56, "heldout_share": 0.5},
        "curation": {"rule": "ranking", "margin": 0.0},
        "experts": {"steps": 2, "batch_size": 2},
        "gate": {"steps": 2, "batch_size": 3},
        "evaluate": {"seeds": [0], "steps": 3},
    })
    assert run(reproduce_tlpo.main, reproduce_tlpo.SCHEMA, ["--config", str(config)]) == 0
    root = tmp_path / "run"
    stages = {p.stem: json.loads(p.read_text()) for p in (root / "stages").glob("*.json")}
    assert set(stages) == set(reproduce_tlpo.STAGES) and all(s["_seconds"] >= 0 for s in stages.values())
    assert stages["candidates"] == {"critic": 4, "train": 4, "_seconds": stages["candidates"]["_seconds"]}
    assert stages["critic"]["train_clips"] + stages["critic"]["heldout_clips"] == 2 * 2 + 2 * 7  # candidates + true/damaged
    assert all(stages["pairs"][d] > 0 for d in ("motion", "lipsync", "quality"))
    for name in reproduce_tlpo.EXPERTS:
        assert load_lora(reproduce_tlpo.expert_file(root, name)).metadata["ft2.dimension"] == name
    assert load_gate(root / "gate" / "gate.safetensors", 4).experts == ("motion", "lipsync", "quality")
    results = stages["evaluate"]["results"]
    assert len(results) == 7 and all(len(rows) == 1 for rows in results.values())
    table = (tmp_path / "results" / "tlpo.md").read_text()
    assert table.count("\n| ") >= 7 + 6 and (tmp_path / "results" / "tlpo_gate.png").is_file()
    # resumable: a second run skips every stage and rewrites the same table
    assert run(reproduce_tlpo.main, reproduce_tlpo.SCHEMA, ["--config", str(config)]) == 0
    assert (tmp_path / "results" / "tlpo.md").read_text().split("Wall time")[0] == table.split("Wall time")[0]
