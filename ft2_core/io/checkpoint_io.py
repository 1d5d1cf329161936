"""Reading and writing weight files safely: safetensors or weights-only torch pickles, atomic writes."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import InputError
from .atomic import atomic_path, commit_atomic

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return `path` as a Path or raise an InputError naming `what` when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what}: file not found: {path}")
    return path


def check_safetensors_header(path: Path, what: str) -> dict:
    """Validate the header and total size of a safetensors file; return its metadata.

    A truncated download otherwise fails deep inside the Rust reader with an unhelpful message.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise InputError(f"{what}: {path} is not a safetensors file (only {size} bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            raise InputError(f"{what}: {path} is truncated or not a safetensors file (header says {header_len} bytes)")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{what}: {path} has a corrupt safetensors header ({err})") from None
    data_end = max((info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"), default=0)
    if 8 + header_len + data_end > size:
        raise InputError(
            f"{what}: {path} is truncated: it needs {8 + header_len + data_end} bytes but has {size}; download it again"
        )
    return header.get("__metadata__") or {}


def read_metadata(path: str | os.PathLike, what: str = "weights file") -> dict:
    """The `__metadata__` of a safetensors file (empty for pickles)."""
    path = require_file(path, what)
    if path.suffix in SAFETENSORS_SUFFIXES:
        return check_safetensors_header(path, what)
    return {}


def load_state_dict(
    path: str | os.PathLike,
    what: str = "weights file",
    dtype: torch.dtype | None = None,
    key_filter: Callable[[str], bool] | None = None,
) -> dict[str, torch.Tensor]:
    """Load a flat tensor dict from safetensors or a weights-only torch pickle.

    Tensors are cast to `dtype` one at a time (fp8 files are upcast this way) so a large file never
    exists twice in memory at full precision.
    """
    path = require_file(path, what)
    state: dict[str, torch.Tensor] = {}
    if path.suffix in SAFETENSORS_SUFFIXES:
        check_safetensors_header(path, what)
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                if key_filter is None or key_filter(key):
                    tensor = handle.get_tensor(key)
                    state[key] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
        return state
    if path.suffix not in PICKLE_SUFFIXES:
        raise InputError(f"{what}: {path} has suffix {path.suffix!r}; expected .safetensors or one of {PICKLE_SUFFIXES}")
    loaded = load_torch_pickle(path, what)
    for key, tensor in flatten_tensor_dict(loaded, what).items():
        if key_filter is None or key_filter(key):
            state[key] = tensor.to(dtype) if dtype is not None and tensor.is_floating_point() else tensor
    return state


def load_torch_pickle(path: Path, what: str):
    """`torch.load` restricted to tensors and containers; memory-mapped where the file format allows."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as err:
        if "mmap" not in str(err):
            raise InputError(f"{what}: cannot read {path} as a torch checkpoint ({err})") from None
    except Exception as err:  # corrupt zip, truncated file, forbidden pickle global
        raise InputError(f"{what}: cannot read {path} as a weights-only torch checkpoint ({err})") from None
    try:  # legacy (non-zip) pickles cannot be memory-mapped
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(f"{what}: cannot read {path} as a weights-only torch checkpoint ({err})") from None


def flatten_tensor_dict(tree, what: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested dicts of tensors -> one flat dict with dotted keys."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if not isinstance(tree, dict):
        raise InputError(f"{what}: expected a dict of tensors, found {type(tree).__name__} at {prefix or 'top level'}")
    flat: dict[str, torch.Tensor] = {}
    for key, value in tree.items():
        flat.update(flatten_tensor_dict(value, what, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def save_safetensors(state: dict[str, torch.Tensor], target: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write safetensors to a temporary name, then rename: a crash never leaves a half-written file. Tensors holding
    NaN or infinite values (a diverged training step) are refused: such a file would only give black videos."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor.detach().float()).all():
            raise InputError(f"refusing to write {target}: tensor {key} holds NaN or infinite values (training diverged: "
                             "lower the learning rate, or resume from an earlier checkpoint)")
    tmp = atomic_path(target)
    try:
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(tmp), metadata=metadata)
        canonical_header(tmp)
        return commit_atomic(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors header with its keys (and metadata keys) in sorted order, in place.

    The writer emits the metadata in hash order, so equal tensors would give different bytes from
    run to run; sorted, a checksum compares runs. The data offsets are unchanged (only JSON order moves).
    """
    with open(path, "r+b") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
        if "__metadata__" in header:
            header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > length:
            raise RuntimeError(f"{path}: canonical safetensors header is longer than the written one")
        handle.seek(8)
        handle.write(text + b" " * (length - len(text)))
