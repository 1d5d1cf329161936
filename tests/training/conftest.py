"""Shared toy data and helpers for the trainer tests (built once per session)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ft2_core.tlpo.preference_data import read_pairs, write_pairs
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
