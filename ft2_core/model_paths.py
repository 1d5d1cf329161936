"""A FantasyTalking model folder: where each component lives and what the model recommends (ft2_model.json)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import InputError
from .sampling.options import METHODS, UPSTREAM_FPS, UPSTREAM_MAX_SIDE, SamplerOptions, WindowOptions, within

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


MANIFEST_TEXT = ("name", "notice", "transformer", "audio_adapter", "wav2vec", "prediction", "deviation_prior")  # strings
MANIFEST_FILES = ("transformer", "audio_adapter", "wav2vec", "deviation_prior")  # paths inside the model folder


def read_manifest(folder: Path) -> dict:
    """A model folder's ft2_model.json (empty when it has none), checked: one sentence naming the file and the key
    that is not what a manifest holds. Keys it does not use (produced_by, notes) are the model maker's to keep."""
    path = folder / MANIFEST
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise InputError(f"{path} must hold a JSON object, got a {type(manifest).__name__}")
    for key in MANIFEST_TEXT:
        if key in manifest and not isinstance(manifest[key], str):
            raise InputError(f"{path}: {key} must be a string, got {manifest[key]!r}")
    for key in MANIFEST_FILES:
        if key in manifest and (Path(manifest[key]).is_absolute() or ".." in Path(manifest[key]).parts):
            raise InputError(f"{path}: {key} must be a path inside the model folder, got {manifest[key]!r}")
    if "version" in manifest and (isinstance(manifest["version"], bool) or not isinstance(manifest["version"], int)):
        raise InputError(f"{path}: version must be a whole number, got {manifest['version']!r}")
    defaults = manifest.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InputError(f"{path}: defaults must be an object of settings, got {defaults!r}")
    for key, value in defaults.items():
        what = f"{path}: defaults.{key}"
        if key not in UPSTREAM_DEFAULTS:
            raise InputError(f"{what} is not a setting a model recommends; those are {', '.join(UPSTREAM_DEFAULTS)}")
        if key == "long_method":
            if value not in METHODS:
                raise InputError(f"{what} must be one of {', '.join(METHODS)}, got {value!r}")
        elif isinstance(UPSTREAM_DEFAULTS[key], int) and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"{what} must be a whole number, got {value!r}")
        else:
            within(value, key, what)
    return manifest


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
    deviation_prior: Path | None = None  # the prior prediction "sample_with_skip" needs (models.deviation_prior)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, **overrides) -> "ModelPaths":
        """A diffusers Wan2.1 I2V folder plus the adapter file and a wav2vec2 folder, optionally an ft2_model.json."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"model folder not found: {folder}")
        manifest = read_manifest(folder)

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
            deviation_prior=folder / manifest["deviation_prior"] if "deviation_prior" in manifest else None,
        )
        return replace(paths, **{k: Path(v) for k, v in overrides.items() if v is not None})

    def missing(self) -> list[str]:
        return [f.name for f in fields(self) if isinstance(getattr(self, f.name), Path) and not getattr(self, f.name).exists()]
