"""Every miniature-world config reads clean against the schema of the script its header names."""
from pathlib import Path

import pytest

from training.common.config import load_config
from training.miniature import ablate_tlpo, base_model, train_vae
from training.miniature.reproduce_tlpo.schema import SCHEMA as CHAIN_SCHEMA

CONFIGS = Path(__file__).resolve().parents[3] / "training" / "miniature" / "configs"
SCHEMAS = {"ablations": ablate_tlpo.SCHEMA, "base": base_model.SCHEMA, "tlpo": CHAIN_SCHEMA, "vae": train_vae.SCHEMA}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_miniature_config_reads_clean(path):
    kind = path.stem.split("_")[0]
    config = load_config(["--config", str(path)], SCHEMAS[kind])
    assert config["run" if kind in ("tlpo", "ablations") else "train"]["output"]
