import json
import math

import pytest
import torch

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.scoring.critic import TalkingCritic
from ft2_core.tiny import tiny_critic_dir
from tests.conftest import run_on_a_full_disk
from tests.training.conftest import (
    assert_stopped_cleanly_on_a_full_disk,
    kill_9_when,
    launch_two_processes,
    lines_in,
    write_config,
)
from training import train_critic
from training.fixtures.synthetic_clips import make_labelled_clips
from training.train_critic import (
    accuracy,
    clip_features,
    label_tensor,
    pair_accuracy,
    pair_clips,
    preference_loss,
    read_labels,
    read_preferences,
)


def test_tiny_critic_learns_visible_answers(tmp_path, tiny_dir):
    train_labels, heldout_labels = make_labelled_clips(tmp_path / "clips", clips=64, seed=0)
    output = tmp_path / "critic"
    config = write_config(tmp_path / "critic.toml", {
        "model": {"folder": str(tiny_critic_dir(tiny_dir.parent))},
        "lora": {"rank": 8, "alpha": 16.0},
        "data": {"train": str(train_labels), "heldout": str(heldout_labels)},
        "train": {"output": str(output), "steps": 200, "batch_size": 8, "lr": 1e-3, "seed": 0,
                  "checkpoint_every": 100, "eval_every": 100},
    })
    assert train_critic.main(["--config", str(config)]) == 0
    log = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < log[0]["loss"]
    # reload from disk like a user would: base folder + our LoRA file
    critic = TalkingCritic.from_folder(tiny_critic_dir(tiny_dir.parent), output / "critic_lora.safetensors")
    records = read_labels(heldout_labels)
    held_out = accuracy(critic, clip_features(critic, records), label_tensor(records))
    assert held_out == log[-1]["heldout_accuracy"]
    assert all(value > 0.9 for value in held_out.values()), held_out
    untrained = TalkingCritic.from_folder(tiny_critic_dir(tiny_dir.parent))
    assert min(accuracy(untrained, clip_features(untrained, records), label_tensor(records)).values()) < 0.9


def test_bad_labels_are_named(tmp_path, capsys):
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"video": "a.mp4", "motion": "maybe"}) + "\n")
    config = write_config(tmp_path / "c.toml", {"data": {"train": str(labels)}, "train": {"output": str(tmp_path / "o")}})
    assert train_critic.main(["--config", str(config)]) == 2
    assert "motion must be Yes or No" in capsys.readouterr().err


def test_critic_training_resumes_exactly(tmp_path, tiny_dir):
    from safetensors.torch import load_file

    train_labels, _ = make_labelled_clips(tmp_path / "clips", clips=16, seed=1, heldout=0.0)
    outputs = {}
    for name, stops in (("straight", [6]), ("resumed", [3, 6])):
        for steps in stops:
            config = write_config(tmp_path / f"{name}.toml", {
                "model": {"folder": str(tiny_critic_dir(tiny_dir.parent))},
                "data": {"train": str(train_labels)},
                "train": {"output": str(tmp_path / name), "steps": steps, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 3},
            })
            assert train_critic.main(["--config", str(config)]) == 0
        outputs[name] = load_file(tmp_path / name / "critic_lora.safetensors")
    assert outputs["straight"].keys() == outputs["resumed"].keys()
    assert all((outputs["straight"][k] == outputs["resumed"][k]).all() for k in outputs["straight"])


def preferences_from_labels(labels_path, out_path):
    """Every (Yes clip, No clip) of each dimension as "the Yes one is better": toy preferences a rater could give."""
    records = [json.loads(line) for line in labels_path.read_text().splitlines()]
    lines = [{"chosen": a["video"], "rejected": b["video"], "dimension": d}
             for d in DIMENSION_NAMES for a in records for b in records if a[d] == "Yes" and b[d] == "No"]
    out_path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out_path


def test_two_processes_match_one(tmp_path, tiny_dir):
    """DDP over two processes (the thinker run through its wrapper, its methods read from the thinker itself) ends
    with the single-process critic, from labels and preferences at once."""
    from safetensors.torch import load_file

    train_labels, _ = make_labelled_clips(tmp_path / "clips", clips=16, seed=3, heldout=0.0)
    pairs = preferences_from_labels(train_labels, tmp_path / "clips" / "pairs_train.jsonl")
    configs = {name: write_config(tmp_path / f"{name}.toml", {
        "model": {"folder": str(tiny_critic_dir(tiny_dir.parent))},
        "data": {"train": str(train_labels), "train_pairs": str(pairs)},
        "train": {"output": str(tmp_path / name), "steps": 4, "batch_size": 4, "pair_batch_size": 2, "lr": 1e-3},
    }) for name in ("single", "double")}
    assert train_critic.main(["--config", str(configs["single"])]) == 0
    launch_two_processes("training.train_critic", ["--config", str(configs["double"])])
    single, double = (load_file(tmp_path / name / "critic_lora.safetensors") for name in ("single", "double"))
    assert single.keys() == double.keys() and any(single[k].abs().sum() > 0 for k in single if "lora_B" in k)
    for key in single:
        torch.testing.assert_close(double[key], single[key], rtol=1e-3, atol=1e-5, msg=key)


def test_tiny_critic_learns_to_order_from_preferences_alone(tmp_path, tiny_dir):
    train_labels, heldout_labels = make_labelled_clips(tmp_path / "clips", clips=48, seed=2)
    train_pairs = preferences_from_labels(train_labels, tmp_path / "clips" / "pairs_train.jsonl")
    heldout_pairs = preferences_from_labels(heldout_labels, tmp_path / "clips" / "pairs_heldout.jsonl")
    output = tmp_path / "critic"
    config = write_config(tmp_path / "critic.toml", {
        "model": {"folder": str(tiny_critic_dir(tiny_dir.parent))},
        "data": {"train_pairs": str(train_pairs), "heldout_pairs": str(heldout_pairs)},
        "train": {"output": str(output), "steps": 100, "pair_batch_size": 8, "lr": 3e-3, "eval_every": 100},
    })
    assert train_critic.main(["--config", str(config)]) == 0
    log = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    critic = TalkingCritic.from_folder(tiny_critic_dir(tiny_dir.parent), output / "critic_lora.safetensors")
    pairs = read_preferences(heldout_pairs)

    def ordered(judge):
        features, indices = pair_clips(judge, pairs)
        return pair_accuracy(judge, features, pairs, indices)

    trained = ordered(critic)
    assert trained == log[-1]["heldout_pair_accuracy"]
    assert all(value > 0.9 for value in trained.values()), trained
    assert min(ordered(TalkingCritic.from_folder(tiny_critic_dir(tiny_dir.parent))).values()) < 0.9


def test_preference_loss_is_bradley_terry_on_the_yes_no_log_odds(tmp_path, tiny_critic):
    train_labels, _ = make_labelled_clips(tmp_path / "clips", clips=4, seed=3, heldout=0.0)
    videos = [json.loads(line)["video"] for line in train_labels.read_text().splitlines()]
    lines = [{"chosen": videos[0], "rejected": videos[1], "dimension": "lipsync"},
             {"chosen": videos[2], "rejected": videos[0], "dimension": "motion"},
             {"chosen": videos[3], "rejected": videos[2], "dimension": "quality"}]
    path = tmp_path / "clips" / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    pairs = read_preferences(path)
    features, indices = pair_clips(tiny_critic, pairs)
    with torch.no_grad():
        loss = float(preference_loss(tiny_critic, features, pairs, indices))
        # the plain way: one full prompt per clip and question, then the formula term by term
        margin = {}
        for clip, feature in zip(dict.fromkeys(p[k] for p in pairs for k in ("chosen", "rejected")), features):
            logits = tiny_critic.answer_logits_per_question([feature])
            margin[clip] = {d: float(logits[k, 0] - logits[k, 1]) for k, d in enumerate(DIMENSION_NAMES)}
    expected = sum(-math.log(1 / (1 + math.exp(-(margin[p["chosen"]][DIMENSION_NAMES[p["dimension"]]]
                                                   - margin[p["rejected"]][DIMENSION_NAMES[p["dimension"]]]))))
                   for p in pairs) / len(pairs)
    assert math.isclose(loss, expected, rel_tol=1e-4, abs_tol=1e-6)


def test_bad_preferences_and_no_data_are_named(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"chosen": "a.mp4", "rejected": "b.mp4", "dimension": "charm"}) + "\n")
    config = write_config(tmp_path / "c.toml", {"data": {"train_pairs": str(pairs)}, "train": {"output": str(tmp_path / "o")}})
    assert train_critic.main(["--config", str(config)]) == 2
    assert "dimension must be one of motion, lipsync, quality, got 'charm'" in capsys.readouterr().err
    config = write_config(tmp_path / "d.toml", {"data": {}, "train": {"output": str(tmp_path / "o")}})
    assert train_critic.main(["--config", str(config)]) == 2
    assert "give train (Yes/No labels), train_pairs (preferences) or both" in capsys.readouterr().err
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n")  # named, but empty: it used to train on nothing
    config = write_config(tmp_path / "e.toml", {"data": {"train": str(labels)}, "train": {"output": str(tmp_path / "o")}})
    assert train_critic.main(["--config", str(config)]) == 2
    assert f"data.train ({labels}) and data.train_pairs (not given) list nothing to train on" in capsys.readouterr().err


@pytest.mark.hostile(item=5, ends="refused")
@pytest.mark.parametrize("key, value, expected", [
    ("rank", 100000, "lora.rank must be at most 1024, got 100000"),
    ("alpha", 1e30, "lora.alpha must be at most"),
    ("rank", -1, "lora.rank must be at least 0"),
])
def test_lora_sizes_beyond_the_limits_are_refused_before_loading(tmp_path, capsys, key, value, expected):
    config = write_config(tmp_path / "c.toml", {"lora": {key: value}, "data": {"train": str(tmp_path / "labels.jsonl")},
                                                "train": {"output": str(tmp_path / "o")}})
    assert train_critic.main(["--config", str(config)]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.hostile(item=2, ends="resumes")
def test_a_full_disk_and_a_kill_9_end_with_the_uninterrupted_critic(tmp_path, tiny_dir):
    """A write that fails (the largest checkpoint file, as on a full disk) stops the run in one sentence with nothing
    half-written; a kill -9 after some steps loses nothing but time: both runs, restarted, end with the straight critic."""
    train_labels, _ = make_labelled_clips(tmp_path / "clips", clips=16, seed=4, heldout=0.0)

    def argv(out):
        return ["--config", str(write_config(tmp_path / f"{out.name}.toml", {
            "model": {"folder": str(tiny_critic_dir(tiny_dir.parent))}, "data": {"train": str(train_labels)},
            "train": {"output": str(out), "steps": 6, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 2}}))]

    straight, full, killed = tmp_path / "straight", tmp_path / "full", tmp_path / "killed"
    assert train_critic.main(argv(straight)) == 0
    largest = max(p.stat().st_size for p in (straight / "checkpoint-0000006").iterdir())
    assert_stopped_cleanly_on_a_full_disk(run_on_a_full_disk("training.train_critic", argv(full), largest - 1, tiny_dir), full)
    assert kill_9_when("training.train_critic", argv(killed), lambda: lines_in(killed / "metrics.jsonl") >= 3, tiny_dir)
    for out in (full, killed):
        assert train_critic.main(argv(out)) == 0
        result = out / "critic_lora.safetensors"
        assert result.read_bytes() == (straight / "critic_lora.safetensors").read_bytes()
        assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 7))


def test_a_bf16_thinker_trains_an_fp32_lora_under_bf16_autocast(tmp_path, tiny_dir, capsys):
    """model.dtype = "bf16" (auto's choice on a GPU) halves the thinker; the LoRA stays fp32. Whole-weight training in
    bf16 (auto picks fp32 for it) and a bf16 thinker without bf16 autocast are refused in one sentence."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from tests.conftest import REPO

    train_labels, _ = make_labelled_clips(tmp_path / "clips", clips=8, seed=5, heldout=0.0)

    def config(name, **sections):
        return write_config(tmp_path / f"{name}.toml", {
            "model": {"folder": str(tiny_critic_dir(tiny_dir.parent)), "dtype": "bf16"}, "data": {"train": str(train_labels)},
            **{key: value for key, value in sections.items() if key != "train"},
            "train": {"output": str(tmp_path / name), "steps": 3, "batch_size": 4, "lr": 1e-3, **sections.get("train", {})}})

    run = subprocess.run([sys.executable, "-m", "training.train_critic", "--config",  # its own process: accelerate fixes
                          str(config("bf16", train={"mixed_precision": "bf16"}))],  # the precision once per process
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    lora = load_file(tmp_path / "bf16" / "critic_lora.safetensors")
    assert lora and all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in lora.values())
    assert train_critic.main(["--config", str(config("whole", lora={"rank": 0}, train={"mixed_precision": "bf16"}))]) == 2
    assert 'lora.rank = 0 trains every weight, which AdamW keeps in fp32: set model.dtype = "fp32" or "auto", not "bf16"' \
        in capsys.readouterr().err
    assert train_critic.main(["--config", str(config("whole_4bit", lora={"rank": 0}, model={"quantize": "4bit"}))]) == 2
    assert 'lora.rank = 0 trains every weight, which cannot be stored in 4bit' in capsys.readouterr().err
    assert train_critic.main(["--config", str(config("no_autocast", train={"mixed_precision": "no"}))]) == 2
    assert 'set train.mixed_precision = "bf16"' in capsys.readouterr().err


def test_micro_batches_with_checkpointed_layers_train_the_plain_runs_critic(tmp_path, tiny_dir):
    """Labels and preferences a step's clips at a time (one batch of 8 and 4) or 3 per forward with every layer
    recomputed in the backward: the same LoRA after 3 steps."""
    from safetensors.torch import load_file

    train_labels, _ = make_labelled_clips(tmp_path / "clips", clips=8, seed=7, heldout=0.0)
    pairs = preferences_from_labels(train_labels, tmp_path / "clips" / "pairs.jsonl")
    results = {}
    for name, options in (("plain", {}), ("micro", {"micro_batch_size": 3, "gradient_checkpointing": True})):
        config = write_config(tmp_path / f"{name}.toml", {
            "model": {"folder": str(tiny_critic_dir(tiny_dir.parent))},
            "data": {"train": str(train_labels), "train_pairs": str(pairs)},
            "train": {"output": str(tmp_path / name), "steps": 3, "batch_size": 8, "pair_batch_size": 4, "lr": 1e-3,
                      **options}})
        assert train_critic.main(["--config", str(config)]) == 0
        results[name] = load_file(tmp_path / name / "critic_lora.safetensors")
    assert results["plain"].keys() == results["micro"].keys()
    for key, plain in results["plain"].items():
        torch.testing.assert_close(results["micro"][key], plain, rtol=1e-4, atol=1e-6)
    assert any(float(t.abs().max()) > 0 for k, t in results["plain"].items() if "lora_B" in k)  # it trained
