"""Runs survive faults: damaged checkpoints, cut logs, leftovers of killed runs, Ctrl-C, kill -9 at any moment."""
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import REPO, run_on_a_full_disk
from tests.training.conftest import metrics
from tests.training.test_train_expert import expert_config
from training import train_expert

STEPS = 12


def argv(tmp_path, toy_data, out, steps=STEPS):
    return ["--config", str(expert_config(tmp_path, toy_data, out, "motion", steps=steps, checkpoint_every=4))]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, toy_data):
    """An uninterrupted run: the weights every faulty run must end with."""
    tmp_path = tmp_path_factory.mktemp("straight")
    out = tmp_path / "out"
    assert train_expert.main(argv(tmp_path, toy_data, out)) == 0
    return load_file(out / "expert_motion.safetensors"), (out / "expert_motion.safetensors").read_bytes()


def same_weights(out, straight):
    result = load_file(out / "expert_motion.safetensors")
    return result.keys() == straight[0].keys() and all(torch.equal(result[k], straight[0][k]) for k in result)


def test_same_tensors_same_bytes(tmp_path, toy_data, straight):
    out = tmp_path / "again"
    assert train_expert.main(argv(tmp_path, toy_data, out)) == 0
    again = (out / "expert_motion.safetensors").read_bytes()
    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(straight[1]).hexdigest()


@pytest.mark.hostile(item=4, ends="handled")
@pytest.mark.parametrize("damage", ["garbage optimizer", "no state.json", "truncated weights", "empty folder", "NaN weights"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, toy_data, straight, caplog, damage):
    out = tmp_path / "out"
    assert train_expert.main(argv(tmp_path, toy_data, out, steps=8)) == 0
    newest = out / "checkpoint-0000008"
    if damage == "garbage optimizer":
        (newest / "optimizer.pt").write_bytes(b"not a pickle at all")
    elif damage == "no state.json":
        (newest / "state.json").unlink()
    elif damage == "NaN weights":  # a diverged step, as written by a version that saved it
        weights = load_file(newest / "trainable.safetensors")
        first = sorted(weights)[0]
        weights[first] = torch.full_like(weights[first], float("nan"))
        save_file(weights, str(newest / "trainable.safetensors"))
    elif damage == "truncated weights":
        data = (newest / "trainable.safetensors").read_bytes()
        (newest / "trainable.safetensors").write_bytes(data[: len(data) // 2])
    else:
        for item in newest.iterdir():
            item.unlink()
    caplog.set_level("WARNING")
    assert train_expert.main(argv(tmp_path, toy_data, out)) == 0
    assert "checkpoint-0000008 is damaged" in caplog.text
    assert same_weights(out, straight)
    assert [m["step"] for m in metrics(out)] == list(range(1, STEPS + 1))


@pytest.mark.hostile(item=2, ends="handled")
def test_cut_metrics_line_and_leftovers_of_a_killed_run(tmp_path, toy_data, straight, caplog):
    out = tmp_path / "out"
    assert train_expert.main(argv(tmp_path, toy_data, out, steps=4)) == 0
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 5, "loss": 0.6')  # killed in the middle of a line
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()  # a process that is gone, as a killed run's is
    (out / f".checkpoint-0000005.ft2-{killed.pid}.abc123").mkdir()
    (out / f".checkpoint-0000005.ft2-{killed.pid}.abc123" / "trainable.safetensors").write_bytes(b"half")
    (out / f".expert_motion.safetensors.ft2-{killed.pid}.x1y2.tmp.safetensors").write_bytes(b"half")
    (out / ".notes.tmp.txt").write_text("someone else's")  # no ft2 marker: never ours to delete
    caplog.set_level("WARNING")
    assert train_expert.main(argv(tmp_path, toy_data, out)) == 0
    assert "cut or corrupt; dropped" in caplog.text
    assert sorted(p.name for p in out.glob(".*")) == [".notes.tmp.txt"]
    assert [m["step"] for m in metrics(out)] == list(range(1, STEPS + 1))
    assert same_weights(out, straight)


@pytest.mark.hostile(item=2, ends="resumes")
def test_killed_before_its_first_checkpoint_starts_over_with_a_clean_log(tmp_path, toy_data, straight):
    """Steps 1-2 logged, then killed before checkpoint 4: the rerun starts at step 1 and logs each step once."""
    from training.common.checkpoints import SETTINGS_FILE, run_settings
    from training.common.config import load_config

    out = tmp_path / "out"
    out.mkdir()
    config = load_config(argv(tmp_path, toy_data, out), train_expert.SCHEMA)
    (out / SETTINGS_FILE).write_text(json.dumps(run_settings(config)))  # written at the killed run's start
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.7}\n{"step": 2, "loss": 0.69}\n')
    assert train_expert.main(argv(tmp_path, toy_data, out)) == 0
    assert [m["step"] for m in metrics(out)] == list(range(1, STEPS + 1))
    assert same_weights(out, straight)


@pytest.mark.hostile(item=3, ends="refused")
def test_a_folder_of_another_run_is_refused_unless_starting_over(tmp_path, toy_data, straight, capsys):
    """No checkpoint to resume, but the folder holds someone's files or another run's settings: refused, untouched."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')  # a log this run did not write
    assert train_expert.main(argv(tmp_path, toy_data, out)) == 2
    assert "holds files this run did not make (metrics.jsonl)" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.5}\n'
    assert train_expert.main([*argv(tmp_path, toy_data, out), "--set", "train.resume=false"]) == 0
    assert same_weights(out, straight)  # asked to start over: the run owns the folder


def train_process(config_argv):
    return subprocess.Popen([sys.executable, "-m", "training.train_expert", *config_argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def wait_for_step(out, step, process, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = out / "metrics.jsonl"
        if log.is_file() and log.read_text().count("\n") >= step:
            return
        if process.poll() is not None:
            return
        time.sleep(0.05)


@pytest.mark.hostile(item=2, ends="resumes")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_stop_cleanly_and_resume(tmp_path, toy_data, straight, signum):
    out = tmp_path / "out"
    config_argv = argv(tmp_path, toy_data, out)
    process = train_process(config_argv)
    wait_for_step(out, 2, process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=240)
    assert process.returncode == 128 + signum
    assert err.strip().splitlines()[-1].startswith(f"stopped by {signal.Signals(signum).name} after step")
    assert "run the same command again to resume" in err and "Traceback" not in err
    saved = sorted(p.name for p in out.glob("checkpoint-*"))
    assert saved  # the step it stopped at is kept
    assert train_expert.main(config_argv) == 0
    assert same_weights(out, straight)


def logged_steps(out):
    log = out / "metrics.jsonl"
    return log.read_text().count("\n") if log.is_file() else 0


@pytest.mark.hostile(item=2, ends="resumes")
def test_kill_9_at_random_moments_always_ends_identical(tmp_path, toy_data, straight):
    """A handful of seeds: kill -9 at a random moment, restart, until the run finishes.

    The moment is drawn in training progress, not wall time, so a faster or slower machine kills as often:
    step 0 kills during start-up, any other step kills a random instant after that step was logged
    (mid-step, mid-checkpoint write or mid-log line)."""
    outcomes = []
    for seed in range(4):
        rng = random.Random(seed)
        out = tmp_path / f"run{seed}"
        config_argv = argv(tmp_path, toy_data, out)
        kills = 0
        for _ in range(2):
            target = rng.randint(0, STEPS - 2)
            process = train_process(config_argv)
            if target == 0:
                time.sleep(rng.uniform(0.0, 2.0))
            else:
                wait_for_step(out, min(STEPS - 1, max(target, logged_steps(out) + 1)), process)
                time.sleep(rng.uniform(0.0, 0.3))
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                kills += 1
            process.communicate(timeout=240)
        final = subprocess.run([sys.executable, "-m", "training.train_expert", *config_argv],
                               capture_output=True, text=True, timeout=300, cwd=REPO)
        assert final.returncode == 0, final.stderr[-2000:]
        outcomes.append((kills, same_weights(out, straight)))
        assert [m["step"] for m in metrics(out)] == list(range(1, STEPS + 1))
    assert all(identical for _, identical in outcomes), outcomes
    assert sum(kills for kills, _ in outcomes) >= 6  # the loop really killed runs
    (tmp_path / "kill_loop.json").write_text(json.dumps(outcomes))


@pytest.mark.hostile(item=2, ends="resumes")
def test_ctrl_c_in_candidate_generation_keeps_finished_videos(tmp_path, tiny_dir):
    import numpy as np
    import soundfile
    from PIL import Image

    rows = []
    for c in range(3):
        Image.fromarray(np.full((64, 64, 3), 40 * c + 60, np.uint8)).save(tmp_path / f"face{c}.png")
        soundfile.write(tmp_path / f"speech{c}.wav", 0.3 * np.sin(np.arange(8000) / 16000 * 2 * np.pi * 220), 16000)
        rows.append({"id": f"c{c}", "image": f"face{c}.png", "audio": f"speech{c}.wav"})
    (tmp_path / "conditions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    argv = ["-m", "training.generate_candidates", "--conditions", str(tmp_path / "conditions.jsonl"),
            "--out", str(out), "--samples", "2", "--model-dir", str(tiny_dir), "--steps", "2", "--max-side", "64"]
    process = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    manifest = out / "candidates.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.is_file() and manifest.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=240)
    lines = manifest.read_text().splitlines()
    if process.returncode == 0:  # it finished before the signal landed: nothing to check about stopping
        assert len(lines) == 6
        return
    assert process.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("stopped by SIGINT after") and "resume" in err
    assert 1 <= len(lines) < 6 and all((out / json.loads(line)["video"]).is_file() for line in lines)
    assert not list((out / "videos").glob(".*.tmp*"))
    finished = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert finished.returncode == 0 and len(manifest.read_text().splitlines()) == 6


@pytest.mark.hostile(item=1, ends="refused")
def test_a_run_resumes_only_the_run_it_belongs_to(tmp_path, toy_data, capsys):
    """Another dimension, another lr or fewer steps than the checkpoint reached are refused in one sentence naming
    what differs; train.allow_changes lets a listed setting change, and more steps continue the same run."""
    out = tmp_path / "run"

    def train(dimension="lipsync", **settings):
        config = expert_config(tmp_path, toy_data, out, dimension, checkpoint_every=2, **settings)
        return train_expert.main(["--config", str(config)])

    assert train(steps=4) == 0
    capsys.readouterr()
    assert train("motion", steps=4) == 2
    assert "expert.dimension: 'lipsync' there, 'motion' here" in capsys.readouterr().err
    assert not (out / "expert_motion.safetensors").exists()
    assert train(steps=4, lr=1e-2) == 2
    assert "train.lr: 0.003 there, 0.01 here" in capsys.readouterr().err
    assert train(steps=3) == 2
    assert "is at step 4, past train.steps = 3" in capsys.readouterr().err
    assert train(steps=6, lr=1e-2, allow_changes=["train.lr"]) == 0
    assert [m["step"] for m in metrics(out)] == list(range(1, 7))


@pytest.mark.hostile(item=10, ends="handled")
def test_a_checkpoint_from_before_an_option_existed_resumes_at_its_default(tmp_path, toy_data, capsys):
    """A checkpoint whose recorded settings lack an option (made before it existed) is the same run when the option is at
    its default, which keeps the old behaviour; set away from it, the refusal says the old run did not record it."""
    out = tmp_path / "run"

    def train(**settings):
        return train_expert.main(["--config", str(expert_config(tmp_path, toy_data, out, checkpoint_every=2, **settings))])

    assert train(steps=4) == 0
    state = out / "checkpoint-0000004" / "state.json"
    recorded = json.loads(state.read_text())
    assert recorded["settings"].pop("train.winner_penalty") == 0.0
    state.write_text(json.dumps(recorded))
    capsys.readouterr()
    assert train(steps=6, winner_penalty=5.0) == 2
    assert "train.winner_penalty: 0.0 there (its default: not recorded), 5.0 here" in capsys.readouterr().err
    assert train(steps=6) == 0
    assert [m["step"] for m in metrics(out)] == list(range(1, 7))


def test_a_stray_checkpoint_named_folder_is_not_ours(tmp_path):
    from training.common.checkpoints import checkpoints

    for name in ("checkpoint-0000040", "checkpoint-x9", "checkpoint-0000008", "checkpoint-12b"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-0000100").write_text("a file, not a checkpoint")
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-0000008", "checkpoint-0000040"]


@pytest.mark.hostile(item=2, ends="write error")
def test_a_full_disk_stops_training_with_one_sentence_and_no_half_checkpoint(tmp_path, toy_data, straight):
    out = tmp_path / "out"
    run = run_on_a_full_disk("training.train_expert", argv(tmp_path, toy_data, out), 60000)  # a checkpoint's optimizer: 78 kB
    assert run.returncode == 1 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {out / 'checkpoint-0000004'}: writing failed (") and "is the disk full?" in last
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "run_settings.json"]  # no half checkpoint, no temps
    assert train_expert.main(argv(tmp_path, toy_data, out)) == 0  # room again: the same run starts over and finishes
    assert same_weights(out, straight)
