"""Shared toy data and helpers for the trainer tests (built once per session)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ft2_core.tlpo.preference_data import read_pairs, write_pairs
from tests.conftest import REPO, script_env
from training.common.distributed import cpu_launch
from training.fixtures.synthetic_pairs import make_synthetic_cache

TRAIN_CONDITIONS = 24  # of 32: the rest are held out
# the tiny model fits whole batches: the trainer tests run them (the defaults' row-at-a-time path is tested to give
# the same expert in test_train_expert.py)
WHOLE_BATCHES = {"micro_batch_size": 0, "rows_at_a_time": False, "gradient_checkpointing": False}


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("toy")
    manifests = make_synthetic_cache(root, conditions=32, seed=0)
    split = {}
    for dimension, path in manifests.items():
        pairs = read_pairs(path)
        split[dimension] = (write_pairs(root / f"train_{dimension}.jsonl", pairs[:TRAIN_CONDITIONS]),
                            write_pairs(root / f"heldout_{dimension}.jsonl", pairs[TRAIN_CONDITIONS:]))
    return {"cache": root / "cache", "split": split, "root": root}


def write_config(path: Path, sections: dict) -> Path:
    """A TOML file from nested dicts of plain values (strings, numbers, booleans, lists)."""
    lines = []
    for section, values in sections.items():
        nested = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items() if key not in nested]
        for name, table in nested.items():
            lines.append(f"[{section}.{name}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def launch_two_processes(script: str, argv: list[str]) -> None:
    """`accelerate launch` of a script (`training.train_expert`, ...) on two CPU processes (gloo), as on two GPUs."""
    command, env = cpu_launch(script, argv, 2)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]


def assert_stopped_cleanly_on_a_full_disk(run: subprocess.CompletedProcess, out: Path) -> None:
    """Exit 1 with one sentence naming the file that could not be written, and no temporary file left behind."""
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "is the disk full?" in last, last
    assert not [p for p in out.rglob("*") if ".ft2-" in p.name]  # temporaries carry the marker; none is left


def kill_9_when(script: str, argv: list[str], ready, tiny_dir: Path, timeout: float = 300) -> bool:
    """Start `python -m script argv` and kill -9 it as soon as `ready()` holds; True when it was killed (False when it
    finished first)."""
    process = subprocess.Popen([sys.executable, "-m", script, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               cwd=REPO, env=script_env(tiny_dir))
    deadline = time.monotonic() + timeout
    while process.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    killed = process.poll() is None
    if killed:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    return killed


def lines_in(path: Path) -> int:
    return path.read_text().count("\n") if path.is_file() else 0
