"""One process or many through accelerate (DDP, or FSDP with train.strategy = "fsdp": see sharding), and the check
that they agree."""
from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch

from ft2_core.errors import InputError
from training.common.locks import folder_lock
from training.common.precision import mixed_precision
from training.common.sharding import check_fsdp_options, local_bytes, whole


def cpu_launch(module: str, argv: list[str], processes: int) -> tuple[list[str], dict]:
    """The command and environment of an `accelerate launch` of `python -m module argv` on `processes` CPU processes
    (gloo, one thread each, as on that many GPUs), on a free port: another run on this machine may hold the default."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
               "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", module, *argv]
    return command, {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}


def local_batch_size(batch_size: int, accelerator) -> int:
    """This process's share of the global batch."""
    if batch_size % accelerator.num_processes:
        raise InputError(f"train.batch_size {batch_size} must divide evenly over {accelerator.num_processes} processes")
    return batch_size // accelerator.num_processes


def make_accelerator(config: dict):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    train = config["train"]
    check_fsdp_options(train)
    accelerator = Accelerator(mixed_precision=mixed_precision(config), cpu=train.get("cpu", False),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)])
    if accelerator.distributed_type.value in ("FSDP", "DEEPSPEED"):
        raise InputError(f"accelerate is configured for {accelerator.distributed_type.value}; launch with a plain multi-GPU "
                         'config (training/configs/accelerate_8gpu.yaml) and set train.strategy = "fsdp" to shard the model')
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise InputError(f"{launched} processes were launched but accelerate runs {accelerator.num_processes}: "
                         "without GPUs set ACCELERATE_USE_CPU=1 (or train.cpu = true) and launch with --multi_gpu")
    return accelerator


def check_ranks_agree(accelerator, model, parameters: dict, output: Path, steps: int) -> None:
    """Every process must end with the same (whole) weights; record per-rank checksums in run.json, with the bytes of
    model weights each process holds (all of them under DDP, about 1/N under FSDP)."""
    local = torch.stack([whole(p.detach()).double().sum() for p in parameters.values()]).to(accelerator.device)
    every = accelerator.gather(local[None]).cpu()  # [world, parameters]
    held = torch.tensor([float(sum(local_bytes(p) for p in model.parameters()))], device=accelerator.device)
    held = accelerator.gather(held).cpu()
    if accelerator.is_main_process:
        total = sum(p.numel() * p.element_size() for p in model.parameters())  # a DTensor's numel is the whole tensor's
        (output / "run.json").write_text(json.dumps({
            "world_size": accelerator.num_processes, "steps": steps, "rank_checksums": every.tolist(),
            "parameter_bytes": total, "parameter_bytes_held_per_rank": held.tolist()}))
        spread = float((every - every[0]).abs().max())
        if spread > 1e-6 * max(1.0, float(every.abs().max())):
            raise RuntimeError(f"processes ended with different weights (checksum spread {spread:g})")
    accelerator.wait_for_everyone()


class WorkShare:
    """The processes of an `accelerate launch` (or one plain process) splitting a data script's items: this process's
    rank, the process count, the device it computes on (its own GPU), and a barrier. The output folder's lock is held by
    the main process, and its outcome is shared, so a refused folder stops every process with the same sentence."""

    def __init__(self, device: str):
        from accelerate import PartialState

        self.state = PartialState(cpu=torch.device(device).type == "cpu")
        self.rank, self.count = self.state.process_index, self.state.num_processes
        self.device = str(self.state.device) if self.count > 1 and torch.device(device).type == "cuda" else device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mine(self, items: list) -> list:
        """This process's items: every count-th from its rank (a stable split for a given process count)."""
        return items[self.rank :: self.count]

    def wait(self) -> None:
        self.state.wait_for_everyone()

    @contextmanager
    def holding(self, folder: Path, what: str):
        """folder_lock on the main process; a refusal there is raised on every process."""
        from accelerate.utils import broadcast_object_list

        with ExitStack() as stack:
            refusal = [None]
            if self.main:
                try:
                    stack.enter_context(folder_lock(folder, what))
                except InputError as err:
                    refusal = [str(err)]
            if self.count > 1:
                broadcast_object_list(refusal)
            if refusal[0] is not None:
                raise InputError(refusal[0])
            yield folder
