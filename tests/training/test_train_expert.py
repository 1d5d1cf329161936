import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ft2_core.tlpo.experts import Expert, attach_experts, detach_experts
from ft2_core.tlpo.gate import StaticMix
from ft2_core.tlpo.lora_formats import load_lora
from ft2_core.tlpo.preference_data import LatentCache, PairDataset, read_pairs
from tests.conftest import REPO
from tests.training.conftest import WHOLE_BATCHES, launch_two_processes, metrics, write_config
from training import train_expert
from training.common.dpo_loop import preference_accuracy


def expert_config(tmp_path, toy_data, output, dimension="lipsync", **train):
    return write_config(tmp_path / f"{output.name}.toml", {
        "model": {"folder": ""},
        "expert": {"dimension": dimension, "rank": 4, "alpha": 4.0},
        "data": {"cache": str(toy_data["cache"]), "pairs": [str(toy_data["split"][dimension][0])]},
        "train": {"output": str(output), "steps": 40, "batch_size": 4, "lr": 3e-3, "beta": 500.0, "seed": 1,
                  "checkpoint_every": 20, **WHOLE_BATCHES, **train},
    })


def test_trained_expert_prefers_winners(tmp_path, toy_data, tiny_model):
    output = tmp_path / "expert"
    assert train_expert.main(["--config", str(expert_config(tmp_path, toy_data, output))]) == 0
    log = metrics(output)
    assert log[0]["implicit_accuracy"] <= 0.5  # B = 0 at the start: the expert equals the reference (a tie)
    assert sum(m["implicit_accuracy"] for m in log[-10:]) / 10 > 0.9
    assert set(log[-1]) >= {"loss", "implicit_accuracy", "reward_margin", "accuracy_by_sigma"}
    expert = load_lora(output / "expert_lipsync.safetensors")
    assert expert.metadata["ft2.kind"] == "expert" and expert.metadata["ft2.dimension"] == "lipsync"
    assert expert.ranks == {4} and expert.alphas == {4.0}
    heldout = PairDataset(LatentCache(toy_data["cache"]), read_pairs(toy_data["split"]["lipsync"][1]))
    attach_experts(tiny_model, [Expert("lipsync", expert)])
    tiny_model.expert_gate = StaticMix([1.0])
    try:
        assert preference_accuracy(tiny_model, heldout, list(range(len(heldout))), seed=3) > 0.9
    finally:
        detach_experts(tiny_model)


def test_resume_continues_exactly(tmp_path, toy_data):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    argv = lambda out, steps: ["--config", str(expert_config(tmp_path, toy_data, out, "motion", steps=steps, checkpoint_every=4))]  # noqa: E731
    assert train_expert.main(argv(straight, 12)) == 0
    assert train_expert.main(argv(resumed, 6)) == 0  # "interrupted" after 6 steps
    assert sorted(p.name for p in resumed.glob("checkpoint-*")) == ["checkpoint-0000004", "checkpoint-0000006"]
    shutil.rmtree(resumed / "checkpoint-0000006")  # as if the crash came before step 6 was saved: 5 and 6 are redone
    assert train_expert.main(argv(resumed, 12)) == 0
    a, b = load_file(straight / "expert_motion.safetensors"), load_file(resumed / "expert_motion.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["step"] for m in metrics(resumed)] == list(range(1, 13))
    assert not list(resumed.glob(".checkpoint-*"))  # no half-written checkpoint left


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(tmp_path, toy_data, strategy):
    """Two processes end with the single-process run's expert, gradients clipped by their global norm. Under FSDP (each
    block sharded over both) the blocks are checkpointed with their inputs on the CPU, and the run stops at step 4 and
    resumes from that checkpoint, which holds whole tensors."""
    single, double = tmp_path / "single", tmp_path / "double"
    options = dict(steps=8, checkpoint_every=4, max_grad_norm=0.05)
    assert train_expert.main(["--config", str(expert_config(tmp_path, toy_data, single, **options))]) == 0
    if strategy == "fsdp":
        options.update(gradient_checkpointing=True, offload_checkpoints=True)
        first_half = expert_config(tmp_path, toy_data, double, strategy=strategy, **{**options, "steps": 4})
        launch_two_processes("training.train_expert", ["--config", str(first_half)])
        a, b = (load_file(out / "checkpoint-0000004" / "trainable.safetensors") for out in (single, double))
        assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    config = expert_config(tmp_path, toy_data, double, strategy=strategy, **options)
    launch_two_processes("training.train_expert", ["--config", str(config)])
    info = __import__("json").loads((double / "run.json").read_text())
    assert info["world_size"] == 2
    assert info["rank_checksums"][0] == info["rank_checksums"][1]  # both ranks end with identical (whole) weights
    held = [part / info["parameter_bytes"] for part in info["parameter_bytes_held_per_rank"]]
    if strategy == "fsdp":  # each holds half of every sharded block, plus the small audio projection kept whole
        assert all(0.45 < share < 0.6 for share in held), held
    else:
        assert held == [1.0, 1.0]
    assert [m["step"] for m in metrics(double)] == list(range(1, 9))
    a, b = load_file(single / "expert_lipsync.safetensors"), load_file(double / "expert_lipsync.safetensors")
    assert a.keys() == b.keys() and any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=1e-4)


def test_bad_config_is_named(tmp_path, capsys):
    assert train_expert.main(["--config", str(tmp_path / "none.toml")]) == 2
    assert "config not found" in capsys.readouterr().err


def test_bf16_autocast_and_gradient_checkpointing_run(tmp_path, toy_data):
    output = tmp_path / "bf16"
    config = expert_config(tmp_path, toy_data, output, "quality", steps=3, mixed_precision="bf16", gradient_checkpointing=True)
    # its own process: accelerate fixes the precision once per process
    result = subprocess.run([sys.executable, "-m", "training.train_expert", "--config", str(config)],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    log = metrics(output)
    assert len(log) == 3 and all(torch.isfinite(torch.tensor(m["loss"])) for m in log)
    assert load_lora(output / "expert_quality.safetensors").metadata["ft2.dimension"] == "quality"


def test_memory_options_train_the_same_expert(tmp_path, toy_data):
    """Both tiny blocks swapped, checkpoints on the CPU, one pair per forward and one policy row at a time: the same
    expert as the plain batched run (the same data, noise and exact gradient; float32 sums in another order)."""
    plain, lean = tmp_path / "plain", tmp_path / "lean"
    assert train_expert.main(["--config", str(expert_config(tmp_path, toy_data, plain, steps=6))]) == 0
    options = dict(blocks_to_swap=2, offload_checkpoints=True, micro_batch_size=1, rows_at_a_time=True)
    assert train_expert.main(["--config", str(expert_config(tmp_path, toy_data, lean, steps=6, **options))]) == 0
    a, b = load_file(plain / "expert_lipsync.safetensors"), load_file(lean / "expert_lipsync.safetensors")
    assert a.keys() == b.keys() and any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)  # it did train
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5, msg=key)
    plain_log, lean_log = metrics(plain), metrics(lean)
    assert [round(m["loss"], 4) for m in lean_log] == [round(m["loss"], 4) for m in plain_log]


def test_a_bf16_base_needs_bf16_autocast(tmp_path, toy_data, capsys):
    config = write_config(tmp_path / "bf16.toml", {
        "model": {"folder": "", "dtype": "bf16"}, "expert": {"rank": 4},
        "data": {"cache": str(toy_data["cache"]), "pairs": [str(toy_data["split"]["lipsync"][0])]},
        "train": {"output": str(tmp_path / "bf16"), "steps": 2}})
    assert train_expert.main(["--config", str(config)]) == 2
    assert 'set train.mixed_precision = "bf16"' in capsys.readouterr().err


@pytest.mark.hostile(item=10, ends="refused")
@pytest.mark.parametrize("setting, expected", [
    ("expert.rank=100000", "expert.rank must be at most 1024"),
    ("expert.alpha=1e30", "expert.alpha must be at most 4096"),
    ("expert.targets=[]", "expert.targets must name at least one block layer"),
    ('expert.targets=["self_attn.q", "norm3"]', "expert.targets: ['norm3'] are not Wan2.1 block layers"),
    ("train.lr=1e12", "train.lr must be at most 1"),
    ("train.seed=9223372036854775808", "train.seed must be at most"),
])
def test_config_edge_cases_are_refused_before_training(tmp_path, capsys, setting, expected):
    code = train_expert.main(["--config", "training/configs/tiny_expert.toml", "--set", f'train.output="{tmp_path / "o"}"',
                              "--set", setting])
    assert code == 2 and expected in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.jsonl").exists()
