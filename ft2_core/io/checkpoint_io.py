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

from ..checks import all_finite
from ..errors import InputError
from .atomic import atomic_path, commit_atomic, writing

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return `path` as a Path or raise an InputError naming `what` when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what}: file not found: {path}")
    return path


ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
              "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}  # the safetensors dtypes torch reads
MAX_HEADER_BYTES = 100_000_000  # the safetensors format's own limit


def check_safetensors_header(path: Path, what: str) -> dict:
    """The metadata of a safetensors file whose header and size were validated (see safetensors_header)."""
    return safetensors_header(path, what)[0]


def safetensors_shapes(path: str | os.PathLike, what: str) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a validated safetensors header, before any tensor data is read."""
    return safetensors_header(require_file(path, what), what)[1]


def safetensors_header(path: Path, what: str) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """Validate the header of a safetensors file against its size before any tensor is read; return its metadata and
    the shape of each tensor.

    A truncated download or a damaged header otherwise fails deep inside the Rust reader with an unhelpful message,
    or allocates what the header claims before noticing it is not there.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise InputError(f"{what}: {path} is not a safetensors file (only {size} bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, MAX_HEADER_BYTES):
            raise InputError(f"{what}: {path} is truncated or not a safetensors file (header says {header_len} bytes)")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(f"{what}: {path} has a corrupt safetensors header ({err})") from None
    damaged = f"{what}: {path} has a damaged safetensors header:"
    if not isinstance(header, dict):
        raise InputError(f"{damaged} a JSON {type(header).__name__}, expected an object of tensors")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InputError(f"{damaged} __metadata__ must map names to strings")
    spans = []
    for key, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise InputError(f"{damaged} tensor {key} needs dtype, shape and data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in ITEM_BYTES:
            raise InputError(f"{damaged} tensor {key} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise InputError(f"{damaged} tensor {key} has shape {shape!r}, expected a list of sizes")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(n, int) and not isinstance(n, bool)
                                                                          for n in offsets) or not 0 <= offsets[0] <= offsets[1]):
            raise InputError(f"{damaged} tensor {key} has data_offsets {offsets!r}, expected [begin, end] with begin <= end")
        elements = 1
        for n in shape:
            elements *= n
        if elements * ITEM_BYTES[dtype] != offsets[1] - offsets[0]:
            raise InputError(f"{damaged} tensor {key} of shape {shape} ({dtype}) needs {elements * ITEM_BYTES[dtype]} bytes, "
                             f"its offsets give {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], key))
    position = 0
    for begin, end, key in sorted(spans):
        if begin != position:
            raise InputError(f"{damaged} tensor {key} starts at byte {begin}, expected {position} (overlapping or gapped data)")
        position = end
    if 8 + header_len + position > size:
        raise InputError(
            f"{what}: {path} is truncated: it needs {8 + header_len + position} bytes but has {size}; download it again"
        )
    return metadata, {key: tuple(info["shape"]) for key, info in header.items()}


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
        if not all_finite(tensor.detach()):
            raise InputError(f"refusing to write {target}: tensor {key} holds NaN or infinite values (training diverged: "
                             "lower the learning rate, or resume from an earlier checkpoint)")
    tmp = atomic_path(target)
    try:
        with writing(target):
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
