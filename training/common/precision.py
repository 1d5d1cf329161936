"""The precision a training run computes in: the frozen base's dtype and accelerate's mixed precision, "auto"
meaning bf16 on a GPU (never an fp32 copy of a 14B base) and fp32 on a CPU."""
from __future__ import annotations

import torch

from ft2_core.errors import InputError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def on_gpu(config: dict) -> bool:
    return torch.cuda.is_available() and not config["train"].get("cpu", False)


def base_dtype(config: dict) -> str:
    """The base's dtype: as set, or "auto": bf16 on a GPU (never an fp32 copy of a 14B base), fp32 on a CPU."""
    dtype = config["model"].get("dtype", "fp32")
    return ("bf16" if on_gpu(config) else "fp32") if dtype == "auto" else dtype


def mixed_precision(config: dict) -> str:
    """accelerate's mixed precision: as set, or "auto": bf16 on a GPU, none on a CPU."""
    mixed = config["train"].get("mixed_precision", "no")
    return ("bf16" if on_gpu(config) else "no") if mixed == "auto" else mixed


def check_precision(config: dict) -> None:
    """A bf16 base computes under bf16 autocast, where the fp32 experts and gate meet it."""
    if base_dtype(config) != "fp32" and mixed_precision(config) != "bf16":
        raise InputError(f'model.dtype = "{base_dtype(config)}" trains under autocast: set train.mixed_precision = "bf16"')
