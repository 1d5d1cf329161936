"""The frozen DiT + audio adapter that experts and gates train on, from a config's [model] section."""
from __future__ import annotations

import torch

from ft2_core.builtin_models import model_folder
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import load_talking_model


def model_from_config(config: dict, dtype=torch.float32):
    """The DiT + adapter from a model folder (or a built-in one by name), the built-in tiny model when none is given."""
    model = config["model"]
    folder = model_folder(model["folder"] or "tiny", model["cache_dir"] or None)
    paths = ModelPaths.from_folder(folder, transformer=model["dit"] or None, audio_adapter=model["adapter"] or None)
    talking = load_talking_model(paths.transformer, paths.audio_adapter, dtype, model["dit_config"] or None, paths.prediction)
    return talking, paths
