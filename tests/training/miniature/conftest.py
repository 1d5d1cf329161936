"""The shortened TLPO chain, run once per session: its tests and the pooling of chains over seeds read it."""
import pytest

from tests.training.conftest import write_config
from training.miniature.reproduce_tlpo import runner

SHORT = {
    "world": {"critic_conditions": 2, "train_conditions": 4, "heldout_conditions": 3, "frames": 17},
    "candidates": {"samples": 2, "audio_cfg": [1.0, 5.0], "steps": 6},
    "critic_base": {"conditions": 2, "heldout_conditions": 1, "steps": 2, "batch_size": 2},
    "critic": {"steps": 4, "batch_size": 4, "max_frames": 10, "min_side": 56, "heldout_share": 0.5, "preferences": True,
               "preference_margin": 0.0, "pair_batch_size": 2},
    "curation": {"rule": "ranking", "margin": 0.0},
    "experts": {"steps": 2, "batch_size": 2},
    "gate": {"steps": 2, "batch_size": 3},
    "evaluate": {"seeds": [0], "steps": 3, "split": "validation"},
}


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """The whole chain at tiny sizes, run once for the session (its candidates sampled by two processes)."""
    tmp_path = tmp_path_factory.mktemp("chain")
    config = write_config(tmp_path / "chain.toml", {
        "run": {"output": str(tmp_path / "run"), "results": str(tmp_path / "results" / "tlpo"), "processes": 2}, **SHORT})
    assert runner.main(["--config", str(config)]) == 0
    return tmp_path, config


TINY_VAE = {
    "model": {"base_dim": 4, "z_dim": 4, "dim_mult": [1, 2, 2], "num_res_blocks": 1},
    "world": {"frames": 9, "size": 32},
    "train": {"steps": 30, "batch_size": 2, "crop_frames": 5, "crop_size": 16, "lr": 3e-3, "warmup": 1, "pool": 3,
              "refresh": 1, "norm_clips": 3, "checkpoint_every": 10, "seed": 0},
}


def vae_config(tmp_path, output, **train) -> list[str]:
    sections = {**TINY_VAE, "train": {**TINY_VAE["train"], "output": str(output), **train}}
    return ["--config", str(write_config(tmp_path / f"{output.name}.toml", sections))]


@pytest.fixture(scope="session")
def world_vae(tmp_path_factory):
    """A Wan VAE trained briefly on the world at toy width (training.miniature.train_vae): its run folder."""
    from training.miniature import train_vae

    tmp_path = tmp_path_factory.mktemp("vae")
    assert train_vae.main(vae_config(tmp_path, tmp_path / "straight")) == 0
    return tmp_path / "straight"
