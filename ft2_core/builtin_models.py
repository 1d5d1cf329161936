"""Built-in models by name: "miniature" (ships trained on the miniature world) and "tiny" (random weights, built
on first use), for the CLI's and the training tools' --model-dir."""
from __future__ import annotations

from pathlib import Path

BUILTIN = ("miniature", "tiny")


def model_folder(name: str | None, cache_dir: str | None = None) -> Path:
    """--model-dir: a folder, or a built-in model by name (default: the miniature one, which ships trained)."""
    if name in (None, "miniature"):
        from .miniature.model import miniature_model_dir

        return miniature_model_dir()
    if name == "tiny":
        from .tiny import tiny_model_dir

        return tiny_model_dir(cache_dir)
    return Path(name)
