"""Session fixtures: the tiny model is built once, in the real on-disk layouts, and loaded by the real loaders."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.tiny import tiny_model_dir

REPO = Path(__file__).resolve().parents[1]


SCRIPT_ON_A_FULL_DISK = """
import importlib, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.exit(importlib.import_module(sys.argv[2]).main(sys.argv[3:]))
"""


def script_env(tiny_dir: Path | None) -> dict:
    """The environment a script subprocess runs in: with `tiny_dir`, the session's built tiny models (nothing is built
    under a limit)."""
    return {**os.environ, **({"FT2_CACHE": str(tiny_dir.parent)} if tiny_dir is not None else {})}


def run_on_a_full_disk(script: str, argv: list[str], file_limit: int, tiny_dir: Path | None = None
                       ) -> subprocess.CompletedProcess:
    """`python -m script argv` with no file allowed past `file_limit` bytes (RLIMIT_FSIZE): its first larger write
    fails as on a full disk."""
    return subprocess.run([sys.executable, "-c", SCRIPT_ON_A_FULL_DISK, str(file_limit), script, *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=600, env=script_env(tiny_dir))


def in_the_map_of(path, tensor: torch.Tensor) -> bool:
    """Whether `tensor`'s bytes lie in this process's memory map of the file `path` (from /proc/self/maps): the
    system's cached pages of the file, shared by every process that maps it, not a copy of this process's own."""
    start, end = tensor.data_ptr(), tensor.data_ptr() + tensor.nbytes
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(path):
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= start and end <= high:
                return True
    return False


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("ft2cache"))


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_dir) -> FantasyTalkingPipeline:
    return FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(tiny_dir))


@pytest.fixture(scope="session")
def tiny_model(tiny_pipeline):
    return tiny_pipeline.model


class Cancelled(Exception):
    """What a test's interrupt check raises: a user's cancel."""


def cancel_on_call(n: int):
    """An interrupt check that raises Cancelled on its n-th call, and the list its calls are counted in."""
    calls = []

    def interrupt():
        calls.append(1)
        if len(calls) == n:
            raise Cancelled

    return interrupt, calls


def make_model_inputs(model, batch=2, frames=5, height=8, width=8, seed=0):
    """Random inputs of the right shapes for `FantasyTalkingModel.forward`."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.transformer.config
    z = cfg.out_channels
    return dict(
        latents=torch.randn(batch, z, frames, height, width, generator=g),
        condition=torch.randn(batch, cfg.in_channels - z, frames, height, width, generator=g),
        timestep=torch.rand(batch, generator=g) * 1000,
        text=torch.randn(batch, 512, cfg.text_dim, generator=g),
        image=torch.randn(batch, 257, cfg.image_dim, generator=g),
    )


@pytest.fixture(scope="session")
def tiny_critic(tiny_dir):
    from ft2_core.scoring.critic import TalkingCritic
    from ft2_core.tiny import tiny_critic_dir

    return TalkingCritic.from_folder(tiny_critic_dir(tiny_dir.parent))
