"""One process or many through accelerate (DDP; FSDP is refused until sharded saves are gathered), and the checks
that they agree."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ft2_core.errors import InputError
from training.common.precision import mixed_precision


def local_batch_size(batch_size: int, accelerator) -> int:
    """This process's share of the global batch."""
    if batch_size % accelerator.num_processes:
        raise InputError(f"train.batch_size {batch_size} must divide evenly over {accelerator.num_processes} processes")
    return batch_size // accelerator.num_processes


def make_accelerator(config: dict):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    train = config["train"]
    if train.get("strategy", "ddp") == "fsdp":
        # blocks are called as modules now (AudioWanBlock), but sharded checkpoints and expert files are not gathered
        # yet, and accelerate runs FSDP on GPUs only, so no CPU test can check it: refused rather than half right
        raise InputError('train.strategy = "fsdp" is not supported yet (sharded weights are not gathered for checkpoints '
                         'and expert files); use "ddp", with train.blocks_to_swap and rows_at_a_time for memory')
    accelerator = Accelerator(mixed_precision=mixed_precision(config), cpu=train.get("cpu", False),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise InputError(f"{launched} processes were launched but accelerate runs {accelerator.num_processes}: "
                         "without GPUs set ACCELERATE_USE_CPU=1 (or train.cpu = true) and launch with --multi_gpu")
    return accelerator


def check_ranks_agree(accelerator, parameters: dict, output: Path, steps: int) -> None:
    """Every process must end with the same weights; record per-rank checksums in run.json."""
    local = torch.stack([p.detach().double().sum() for p in parameters.values()]).to(accelerator.device)
    every = accelerator.gather(local[None]).cpu()  # [world, parameters]
    if accelerator.is_main_process:
        (output / "run.json").write_text(json.dumps({"world_size": accelerator.num_processes, "steps": steps,
                                                     "rank_checksums": every.tolist()}))
        spread = float((every - every[0]).abs().max())
        if spread > 1e-6 * max(1.0, float(every.abs().max())):
            raise RuntimeError(f"processes ended with different weights (checksum spread {spread:g})")
    accelerator.wait_for_everyone()
