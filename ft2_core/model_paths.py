"""A FantasyTalking model folder: where each component lives and what the model recommends (ft2_model.json)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import InputError
from .sampling.options import UPSTREAM_FPS, UPSTREAM_MAX_SIDE, SamplerOptions, WindowOptions

MANIFEST = "ft2_model.json"
SAMPLER_DEFAULTS = ("steps", "cfg", "audio_cfg", "shift")  # the SamplerOptions fields a model may recommend
_WINDOWS = WindowOptions()
# Upstream FantasyTalking's settings; a manifest's "defaults" override them per model. window_frames is the trained
# length (longer audio runs in windows of it); see sampling.options.
UPSTREAM_DEFAULTS = {"max_side": UPSTREAM_MAX_SIDE, "fps": UPSTREAM_FPS, "long_method": _WINDOWS.method,
                     "window_frames": _WINDOWS.window_frames, "overlap_frames": _WINDOWS.overlap_frames,
                     **{name: getattr(SamplerOptions(), name) for name in SAMPLER_DEFAULTS}}
ADAPTER_NAMES = ("audio_adapter.safetensors", "fantasytalking_model.safetensors", "fantasytalking_model.ckpt")
WAV2VEC_NAMES = ("wav2vec2", "wav2vec2-base-960h")


@dataclass
class ModelPaths:
    """Where each component lives. `transformer` is a diffusers folder or a single .safetensors file."""

    transformer: Path
    audio_adapter: Path
    wav2vec: Path
    text_encoder: Path | None = None
    tokenizer: Path | None = None
    image_encoder: Path | None = None
    image_processor: Path | None = None
    vae: Path | None = None
    defaults: dict = field(default_factory=lambda: dict(UPSTREAM_DEFAULTS))
    notice: str = ""
    transformer_config: str | None = None  # for a single-file DiT: shipped config name or JSON path
    prediction: str = "velocity"  # what the DiT outputs (see FantasyTalkingModel)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **overrides) -> "ModelPaths":
        """A diffusers Wan2.1 I2V folder plus the adapter file and a wav2vec2 folder, optionally an ft2_model.json."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"model folder not found: {folder}")
        manifest = json.loads((folder / MANIFEST).read_text()) if (folder / MANIFEST).is_file() else {}

        def first(names, what):
            for name in names:
                if (folder / name).exists():
                    return folder / name
            raise InputError(f"model folder {folder}: no {what} (looked for {', '.join(names)})")

        paths = cls(
            transformer=folder / manifest.get("transformer", "transformer"),
            audio_adapter=folder / manifest["audio_adapter"]
            if "audio_adapter" in manifest
            else first(ADAPTER_NAMES, "FantasyTalking audio adapter"),
            wav2vec=folder / manifest["wav2vec"] if "wav2vec" in manifest else first(WAV2VEC_NAMES, "wav2vec2 folder"),
            text_encoder=folder / "text_encoder",
            tokenizer=folder / "tokenizer",
            image_encoder=folder / "image_encoder",
            image_processor=folder / "image_processor",
            vae=folder / "vae",
            defaults={**UPSTREAM_DEFAULTS, **manifest.get("defaults", {})},
            notice=manifest.get("notice", ""),
            prediction=manifest.get("prediction", "velocity"),
        )
        return replace(paths, **{k: Path(v) for k, v in overrides.items() if v is not None})

    def missing(self) -> list[str]:
        return [f.name for f in fields(self) if isinstance(getattr(self, f.name), Path) and not getattr(self, f.name).exists()]
