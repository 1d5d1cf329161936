"""The frozen DiT + audio adapter that experts and gates train on, from a config's [model] section."""
from __future__ import annotations

import torch

from ft2_core.builtin_models import model_folder
from ft2_core.errors import InputError
from ft2_core.model_paths import ModelPaths
from ft2_core.models.stored_linear import store_blocks_as_fp8
from ft2_core.pipeline import load_talking_model

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


def model_from_config(config: dict):
    """The DiT + adapter from a model folder (or a built-in one by name), the built-in tiny model when none is given,
    in the config's dtype; with `weights = "fp8"` the blocks' Linears are stored as fp8 (never an fp32 copy of the
    base unless dtype says fp32)."""
    model = config["model"]
    check_precision(config)
    folder = model_folder(model["folder"] or "tiny", model["cache_dir"] or None)
    paths = ModelPaths.from_folder(folder, transformer=model["dit"] or None, audio_adapter=model["adapter"] or None)
    dtype = DTYPES[base_dtype(config)]
    talking = load_talking_model(paths.transformer, paths.audio_adapter, dtype, model["dit_config"] or None, paths.prediction)
    if model.get("weights") == "fp8":
        store_blocks_as_fp8(talking.transformer, dtype)
    return talking, paths
