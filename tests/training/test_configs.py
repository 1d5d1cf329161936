"""Every shipped config reads clean against its trainer's schema (a typo in one is found here, not on a user's GPU)."""
from pathlib import Path

import pytest

from training import train_critic, train_expert, train_gate
from training.common.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"
SCHEMAS = {"critic": train_critic.SCHEMA, "expert": train_expert.SCHEMA, "gate": train_gate.SCHEMA}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_config_reads_clean(path):
    kind = next(kind for kind in SCHEMAS if kind in path.stem)
    config = load_config(["--config", str(path)], SCHEMAS[kind])
    assert config["train"]["output"]
