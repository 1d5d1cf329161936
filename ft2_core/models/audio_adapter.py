"""The FantasyTalking audio adapter: wav2vec2 features -> audio tokens -> per-block audio keys/values."""
from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from ..checks import finite_tensors, output_file
from ..errors import InputError
from ..io.checkpoint_io import SAFETENSORS_SUFFIXES, load_state_dict, safetensors_shapes, save_safetensors
from .audio_windows import UPSTREAM_EXPAND, AudioWindows, split_windows

# Upstream names: {"proj_model": {...}, "audio_processor": {"blocks.{i}.cross_attn.processor.k_proj.weight"}}.
_UPSTREAM_KV = re.compile(r"^audio_processor\.blocks\.(\d+)\.cross_attn\.processor\.([kv]_proj\.weight)$")
_OURS_KV = re.compile(r"^blocks\.(\d+)\.([kv]_proj\.weight)$")


class AudioProjection(nn.Module):
    """Linear (no bias) + LayerNorm: wav2vec2 hidden states -> audio context tokens."""

    def __init__(self, audio_in_dim: int, audio_proj_dim: int):
        super().__init__()
        self.proj = nn.Linear(audio_in_dim, audio_proj_dim, bias=False)
        self.norm = nn.LayerNorm(audio_proj_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(features))


class AudioKeyValue(nn.Module):
    """One DiT block's audio key/value projections (no bias, no key norm)."""

    def __init__(self, audio_proj_dim: int, model_dim: int):
        super().__init__()
        self.k_proj = nn.Linear(audio_proj_dim, model_dim, bias=False)
        self.v_proj = nn.Linear(audio_proj_dim, model_dim, bias=False)


class AudioAdapter(nn.Module):
    def __init__(self, num_layers: int, model_dim: int, audio_in_dim: int = 768, audio_proj_dim: int = 2048):
        super().__init__()
        self.proj_model = AudioProjection(audio_in_dim, audio_proj_dim)
        self.blocks = nn.ModuleList(AudioKeyValue(audio_proj_dim, model_dim) for _ in range(num_layers))

    @property
    def audio_in_dim(self) -> int:
        return self.proj_model.proj.in_features

    def windows(self, features: torch.Tensor, num_frames: int, expand: int = UPSTREAM_EXPAND) -> AudioWindows:
        """Project wav2vec2 features [B, L, audio_in_dim] and cut them into per-latent-frame windows."""
        if features.ndim != 3 or features.shape[-1] != self.audio_in_dim:
            raise InputError(
                f"audio features must be [batch, tokens, {self.audio_in_dim}], got shape {tuple(features.shape)}"
            )
        param = self.proj_model.proj.weight
        return split_windows(self.proj_model(features.to(param.device, param.dtype)), num_frames, expand)


def upstream_to_ours(state: dict[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    """Rename upstream adapter keys (`proj_model.*`, `audio_processor.blocks.*`) to `AudioAdapter` keys."""
    converted, unknown = {}, []
    for key, tensor in state.items():
        kv = _UPSTREAM_KV.match(key)
        if kv:
            converted[f"blocks.{kv.group(1)}.{kv.group(2)}"] = tensor
        elif key.startswith("proj_model."):
            converted[key] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise InputError(f"{what}: unexpected keys for a FantasyTalking audio adapter: {', '.join(sorted(unknown)[:6])}")
    return converted


def ours_to_upstream(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted = {}
    for key, tensor in state.items():
        kv = _OURS_KV.match(key)
        converted[f"audio_processor.blocks.{kv.group(1)}.cross_attn.processor.{kv.group(2)}" if kv else key] = tensor
    return converted


def load_audio_adapter(path: str | os.PathLike, num_layers: int, model_dim: int, dtype=torch.float32) -> AudioAdapter:
    """Load `fantasytalking_model.ckpt` or its safetensors conversion, checked against the DiT's shape (a safetensors
    file from its header, before any tensor is read)."""
    what = "FantasyTalking audio adapter"
    if Path(path).suffix in SAFETENSORS_SUFFIXES:
        fitting_adapter(upstream_to_ours(safetensors_shapes(path, what), what), num_layers, model_dim, path)
    state = upstream_to_ours(load_state_dict(path, what, dtype=dtype), what)
    finite_tensors(state, f"{what} {Path(path).name}")
    adapter = fitting_adapter({key: tuple(tensor.shape) for key, tensor in state.items()}, num_layers, model_dim, path)
    adapter.load_state_dict(state)
    return adapter.to(dtype)


def fitting_adapter(shapes: dict[str, tuple[int, ...]], num_layers: int, model_dim: int, path) -> AudioAdapter:
    """An empty AudioAdapter of the file's widths, once every tensor's shape fits a `num_layers`-block DiT of width
    `model_dim`; one sentence naming the first that does not."""
    what = "FantasyTalking audio adapter"
    proj = shapes.get("proj_model.proj.weight")
    if proj is None or len(proj) != 2:
        raise InputError(f"{what}: {path} has no 2-D proj_model.proj.weight; is it a FantasyTalking adapter file?")
    audio_proj_dim, audio_in_dim = proj
    with torch.device("meta"):  # shapes only: nothing is allocated for a file that may not fit
        expected = {key: tuple(tensor.shape) for key, tensor in
                    AudioAdapter(num_layers, model_dim, audio_in_dim, audio_proj_dim).state_dict().items()}
    missing = sorted(set(expected) - set(shapes), key=_natural)
    if missing:
        raise InputError(
            f"{what}: {path} lacks {len(missing)} tensors for a {num_layers}-layer DiT (first: {missing[0]}); "
            "it was made for a model with fewer layers"
        )
    extra = sorted(set(shapes) - set(expected), key=_natural)
    if extra:
        raise InputError(f"{what}: {path} has tensors beyond the DiT's {num_layers} layers (first: {extra[0]})")
    for key, shape in shapes.items():
        if tuple(shape) != expected[key]:
            raise InputError(
                f"{what}: {key} has shape {tuple(shape)} but this DiT (width {model_dim}) needs "
                f"{expected[key]}; the adapter was made for another model"
            )
    return AudioAdapter(num_layers, model_dim, audio_in_dim, audio_proj_dim)


def _natural(key: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def convert_adapter(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Convert the upstream pickle to safetensors with upstream key names (upstream code reads it too)."""
    what = "FantasyTalking audio adapter"
    output_file(target, (".safetensors",), "converted adapter")
    state = ours_to_upstream(upstream_to_ours(load_state_dict(source, what), what))
    finite_tensors(state, f"{what} {Path(source).name}")
    return save_safetensors(state, target, metadata={"format": "pt", "ft2.kind": "audio_adapter"})
