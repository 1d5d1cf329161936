"""Configs are checked whole before any work: one sentence per problem, exit code 2."""
import importlib

import pytest

from tests.conftest import REPO
from tests.training.conftest import write_config
from training import train_critic, train_expert, train_gate
from training.common.config import ConfigError, load_config
from training.miniature import train_base


def expert_toml(tmp_path, **train):
    return write_config(tmp_path / "e.toml", {
        "expert": {"dimension": "lipsync", "rank": 4},
        "data": {"synthetic": True, "cache": str(tmp_path / "cache")},
        "train": {"output": str(tmp_path / "out"), "steps": 3, **train},
    })


def problems(schema, argv):
    with pytest.raises(ConfigError) as caught:
        load_config(argv, schema)
    return caught.value.problems


@pytest.mark.hostile(item=10, ends="refused")
@pytest.mark.parametrize("override, expected", [
    ("train.steps=-5", "train.steps must be at least 1, got -5"),
    ("train.steps=0", "train.steps must be at least 1, got 0"),
    ('train.steps="ten"', "train.steps must be a whole number, got 'ten'"),
    ("train.batch_size=0", "train.batch_size must be at least 1, got 0"),
    ("expert.rank=0", "expert.rank must be at least 1, got 0"),
    ("train.checkpoint_every=0", "train.checkpoint_every must be at least 1, got 0"),
    ('train.lr="fast"', "train.lr must be a number, got 'fast'"),
    ("train.lr=nan", "train.lr must be finite, got nan"),
    ('expert.dimension="smell"', "expert.dimension must be one of 'motion', 'lipsync', 'quality', 'pooled', got 'smell'"),
    ("train.stpes=5", "unknown config key train.stpes; did you mean train.steps?"),
    ("expert.ranq=4", "unknown config key expert.ranq; did you mean expert.rank?"),
    ('train.mixed_precision="fp8"', "train.mixed_precision must be one of 'auto', 'no', 'bf16', 'fp16', got 'fp8'"),
])
def test_each_bad_value_is_one_sentence(tmp_path, override, expected):
    found = problems(train_expert.SCHEMA, ["--config", str(expert_toml(tmp_path)), "--set", override])
    assert found == [f"config {tmp_path / 'e.toml'}: {expected}"]


def test_missing_required_key_and_all_problems_at_once(tmp_path):
    path = write_config(tmp_path / "c.toml", {"train": {"steps": 0, "batch_size": 0}, "data": {"heldout": ""}})
    found = problems(train_critic.SCHEMA, ["--config", str(path)])
    assert len(found) == 3  # steps, batch_size, output (data.train may be left out when train_pairs are given)
    assert any("train.output is required" in p for p in found)


@pytest.mark.hostile(item=7, ends="refused")
def test_invalid_toml_is_named(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nsteps = 3\n")
    assert train_expert.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: config {path} is not valid TOML:") and "\n" not in err


def test_nested_set_reaches_any_depth(tmp_path):
    path = write_config(tmp_path / "g.toml", {"gate": {"experts": {"motion": "a.safetensors"}},
                                              "train": {"output": str(tmp_path / "o")}})
    config = load_config(["--config", str(path), "--set", 'gate.experts.motion="b.safetensors"',
                          "--set", 'gate.experts.lipsync="c.safetensors"'], train_gate.SCHEMA)
    assert config["gate"]["experts"] == {"motion": "b.safetensors", "lipsync": "c.safetensors"}


def test_base_model_overrides_are_tables(tmp_path):
    path = write_config(tmp_path / "b.toml", {"train": {"output": str(tmp_path / "o")}})
    config = load_config(["--config", str(path), "--set", "model.transformer.num_layers=6"], train_base.SCHEMA)
    assert config["model"]["transformer"] == {"num_layers": 6} and config["train"]["steps"] == 1800


def test_bad_config_exits_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--config", str(expert_toml(tmp_path)), "--set", "train.steps=-5", "--set", "expert.rank=0"]
    assert train_expert.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: config ") for line in lines)
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing was started


@pytest.mark.parametrize("name, script", [
    ("base_linear.toml", "train_base"), ("base_slots.toml", "train_base"), ("tlpo.toml", "reproduce_tlpo.schema"),
    ("ablations.toml", "ablate_tlpo"), ("ablations_long.toml", "ablate_tlpo"),
])
def test_shipped_miniature_configs_pass_their_script_s_checks(name, script):
    """The long runs' configs are not run by the tests: a typo in one would only show an hour into a user's run."""
    module = importlib.import_module(f"training.miniature.{script}")
    config = load_config(["--config", str(REPO / "training" / "miniature" / "configs" / name)], module.SCHEMA)
    if script == "ablate_tlpo":
        assert module.check_variants(config["ablate"]["variants"])


@pytest.mark.parametrize("name, script", [("wan14b_expert_24gb.toml", train_expert), ("wan14b_gate_24gb.toml", train_gate)])
def test_real_scale_configs_pass_their_script_s_checks_and_name_the_plan_s_24gb_row(name, script):
    """The 14B configs are not run here (no weights, no GPU): their keys and values are checked, and their memory
    settings are the ones the training plan fits in 24 GB at 480p."""
    config = load_config(["--config", str(REPO / "training" / "configs" / name)], script.SCHEMA)
    train, model = config["train"], config["model"]
    assert (model["dtype"], model["weights"], train["mixed_precision"]) == ("bf16", "fp8", "bf16")
    assert train["gradient_checkpointing"] and train["offload_checkpoints"] and train["rows_at_a_time"]
    plan = (REPO / "bench" / "results" / "train_memory_plan.md").read_text()
    step = "expert" if script is train_expert else "gate"
    row = f"| {step} | 480p | fp8 | {train['blocks_to_swap']} | yes | yes | 1 |"
    peak = float(next(line for line in plan.splitlines() if line.startswith(row)).rstrip(" |").rsplit("|", 1)[1])
    assert peak <= 24 * 0.95


def test_the_8_gpu_fsdp_config_passes_its_checks_and_names_the_plan_s_sharded_row():
    config = load_config(["--config", str(REPO / "training" / "configs" / "wan14b_expert_8gpu_fsdp.toml")], train_expert.SCHEMA)
    train, model = config["train"], config["model"]
    assert (train["strategy"], train["mixed_precision"]) == ("fsdp", "bf16")
    assert (model["dtype"], model["weights"]) == ("bf16", "as stored")
    assert train["gradient_checkpointing"] and train["offload_checkpoints"] and train["rows_at_a_time"]
    assert train["batch_size"] == 8
    plan = (REPO / "bench" / "results" / "train_memory_plan.md").read_text()
    row = "| expert | 480p | bf16 | 8 | yes | yes | 1 |"
    peak = float(next(line for line in plan.splitlines() if line.startswith(row)).rstrip(" |").rsplit("|", 1)[1])
    assert peak <= 24 * 0.95  # what its header says: 8 cards of 24 GB


def test_the_8_gpu_launch_file_is_one_accelerate_reads():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(REPO / "training" / "configs" / "accelerate_8gpu.yaml"))
    assert (config.distributed_type.value, config.num_processes, config.mixed_precision) == ("MULTI_GPU", 8, "bf16")
