import json

from ft2_core.scoring.critic import TalkingCritic
from ft2_core.tiny import tiny_critic_dir
from tests.training.conftest import write_config
from training import train_critic
from training.synthetic_clips import make_labelled_clips
from training.train_critic import accuracy, clip_features, label_tensor, read_labels
from training.trainer import run


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
    assert run(train_critic.main, train_critic.SCHEMA, ["--config", str(config)]) == 0
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
    assert run(train_critic.main, train_critic.SCHEMA, ["--config", str(config)]) == 2
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
            assert run(train_critic.main, train_critic.SCHEMA, ["--config", str(config)]) == 0
        outputs[name] = load_file(tmp_path / name / "critic_lora.safetensors")
    assert outputs["straight"].keys() == outputs["resumed"].keys()
    assert all((outputs["straight"][k] == outputs["resumed"][k]).all() for k in outputs["straight"])
