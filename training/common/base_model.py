"""The frozen DiT + audio adapter that experts and gates train on, from a config's [model] section."""
from __future__ import annotations

from ft2_core.builtin_models import model_folder
from ft2_core.model_paths import ModelPaths
from ft2_core.models.stored_linear import store_blocks_as_fp8
from ft2_core.pipeline import load_talking_model
from training.common.precision import DTYPES, base_dtype, check_precision


def model_from_config(config: dict):
    """The DiT + adapter from a model folder (or a built-in one by name), the built-in tiny model when none is given,
    in the config's dtype; with `weights = "fp8"` the blocks' Linears are stored as fp8 (never an fp32 copy of the
    base unless dtype says fp32)."""
    model = config["model"]
    check_precision(config)
    folder = model_folder(model["folder"] or "tiny", model["cache_dir"] or None)
    paths = ModelPaths.from_folder(folder, transformer=model["dit"] or None, audio_adapter=model["adapter"] or None)
    dtype = DTYPES[base_dtype(config)]
    talking = load_talking_model(paths.transformer, paths.audio_adapter, dtype, model["dit_config"] or None, paths.prediction,
                                 deviation_prior=paths.deviation_prior)
    if model.get("weights") == "fp8":
        store_blocks_as_fp8(talking.transformer, dtype)
    return talking, paths
