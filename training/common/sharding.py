"""FSDP for the DPO trainers (`train.strategy = "fsdp"`): torch's own FSDP2 (`fully_shard`) over the processes that
accelerate launched, one shard group per DiT block with its audio k/v, the rest (embeddings, head, gate) in the root
group. Each GPU then holds 1/N of the frozen base between uses and one gathered block at a time while computing.

accelerate's FSDP plugin is not used: it switches FSDP off on CPUs (falls back to DDP), so no test here could check it,
while `fully_shard` runs on CPUs with gloo exactly as on GPUs with NCCL (tests/training/test_train_expert.py).

Sharded tensors are DTensors; whatever leaves the run (checkpoints, the trained file, the ranks' agreement check)
is gathered whole first, on every process, so a checkpoint reads the same whatever the strategy or process count.
"""
from __future__ import annotations

import warnings

import torch
from torch.distributed.tensor import DTensor, distribute_tensor

from ft2_core.errors import InputError


def uses_fsdp(train: dict) -> bool:
    return train.get("strategy", "ddp") == "fsdp"


def check_fsdp_options(train: dict) -> None:
    """Block swap moves weights by hand, which does not mix with FSDP's own gathering (named, before loading)."""
    if uses_fsdp(train) and train.get("blocks_to_swap"):
        raise InputError('train.strategy = "fsdp" shards the base over the GPUs; train.blocks_to_swap works on one process '
                         "only: set it to 0 (offload_checkpoints, gradient_checkpointing and rows_at_a_time save memory)")


def shard_model(model, accelerator, parameters: dict[str, torch.nn.Parameter]) -> dict[str, torch.nn.Parameter]:
    """Shard `model` (a FantasyTalkingModel on the CPU) over every process, moving each block to the device as it is
    sharded so a whole model never sits on one GPU. Returns `parameters` re-found by name: sharding replaces them."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    paths = {id(p): path for path, p in model.named_parameters()}
    missing = [name for name, p in parameters.items() if id(p) not in paths]
    if missing:
        raise RuntimeError(f"trainable parameters {missing[:3]} are not the model's own")
    # FSDP warns that the blocks and the model return views, which an in-place op would cut off from its backward
    # hook; nothing here changes a block's or the model's output in place (the equality tests check the gradients)
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    device = accelerator.device
    mesh = init_device_mesh(device.type, (accelerator.num_processes,))
    for block, kv in zip(model.transformer.blocks, model.adapter.blocks):
        fully_shard([block, kv], mesh=mesh)  # called as one module (AudioWanBlock with audio_kv): gathered together
    # the adapter's projection runs outside the model's forward (audio windows are made before each step): kept whole
    fully_shard(model, mesh=mesh, ignored_params=set(model.adapter.proj_model.parameters()))
    model.adapter.proj_model.to(device)
    return {name: model.get_parameter(paths[id(p)]) for name, p in parameters.items()}


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """The full tensor of a shard (a collective: every process calls it), or the tensor itself."""
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def local_bytes(tensor: torch.Tensor) -> int:
    """Bytes this process holds of a tensor (its shard's, under FSDP)."""
    held = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    return held.numel() * held.element_size()


def whole_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Named tensors gathered whole onto the CPU, in float32, detached (for files and checks)."""
    return {name: whole(t.detach()).float().cpu() for name, t in tensors.items()}


def like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A full `value` laid out as `target` is: its shard when `target` is sharded, else on its device and dtype."""
    value = value.to(device=target.device, dtype=target.dtype)
    if isinstance(target, DTensor):
        return distribute_tensor(value, target.device_mesh, target.placements, src_data_rank=None)
    return value


def whole_optimizer_state(optimizer) -> dict:
    """The optimizer's state dict with every sharded state (Adam's moments) gathered whole onto the CPU."""
    state = optimizer.state_dict()
    state["state"] = {index: {key: whole(value).cpu() if isinstance(value, torch.Tensor) else value
                              for key, value in per_parameter.items()}
                      for index, per_parameter in state["state"].items()}
    return state


def sharded_optimizer_state(state: dict, optimizer) -> dict:
    """A whole optimizer state laid out as this optimizer's parameters are (sharded under FSDP)."""
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    laid_out = {}
    for index, per_parameter in state["state"].items():
        if not 0 <= int(index) < len(parameters):
            raise InputError(f"the optimizer state names parameter {index} but this run trains {len(parameters)}")
        target = parameters[int(index)]
        laid_out[index] = {key: like(value, target) if isinstance(value, torch.Tensor) and value.shape == target.shape
                           else value for key, value in per_parameter.items()}
    return {**state, "state": laid_out}
