"""Input checks every entry point shares (CLI, nodes, training scripts): one sentence per bad input."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from .errors import InputError

MAX_PROMPT_CHARACTERS = 10_000  # Wan reads 512 tokens (about 2,000 characters); beyond this a prompt is a mistake


def prompt_text(value, name: str = "prompt") -> str:
    """A prompt of sane length, checked before tokenizing (a tokenizer holds several bytes per character)."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARACTERS:
        raise InputError(f"{name} is {len(value):,} characters; give at most {MAX_PROMPT_CHARACTERS:,} (Wan reads its first "
                         "512 tokens, about 2,000 characters)")
    return value


def finite_number(value, name: str, minimum: float | None = None, above: float | None = None) -> float:
    """A real, finite number (optionally >= minimum or > above)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be at least {minimum:g}, got {value:g}")
    if above is not None and value <= above:
        raise InputError(f"{name} must be greater than {above:g}, got {value:g}")
    return float(value)


# fp8 values that are not finite, read from their bits (torch has no isfinite for fp8; upcasting costs 4x the reads):
# e4m3fn has only NaN (S.1111.111), e5m2 has inf and NaN (exponent all ones)
FP8_NOT_FINITE = {torch.float8_e4m3fn: (0x7F, 0x7F), torch.float8_e5m2: (0x7C, 0x7C)}


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or infinity in a floating-point tensor (any other tensor is finite)."""
    if tensor.dtype in FP8_NOT_FINITE:
        mask, pattern = FP8_NOT_FINITE[tensor.dtype]
        return not bool(((tensor.view(torch.uint8) & mask) == pattern).any())
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def finite_tensors(state: dict[str, torch.Tensor], what: str) -> None:
    """Refuse a weight file with NaN or infinite values, naming the first bad tensor."""
    for key, tensor in state.items():
        if not all_finite(tensor):
            raise InputError(f"{what}: tensor {key} contains NaN or infinite values; the file is damaged")


def output_file(path: str | os.PathLike, suffixes: tuple[str, ...], what: str) -> Path:
    """A file path we may write: right suffix, not a folder, in a folder we can write (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{what} {path} must end with {' or '.join(suffixes)}")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name ending with {' or '.join(suffixes)}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the nearest folder that exists must let us create the rest
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: cannot write into {folder} (not a writable folder)")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{what} {path} exists and is read-only")
    return path


def safe_name(value, what: str) -> str:
    """An id used as a file name: no folders, no '..', nothing absolute (it must stay inside the output folder)."""
    if not isinstance(value, str) or not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        raise InputError(f"{what} {value!r} must be a plain name (no '/', '\\\\' or '..'): it names a file in the output folder")
    return value


def torch_device(name: str, what: str = "--device") -> torch.device:
    """A device that exists here: 'cuda' on a machine without CUDA is refused up front."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"{what} must be a torch device such as cpu, cuda or cuda:1, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{what} {name}: this machine has no CUDA GPU that torch can use; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"{what} {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def changed_settings(recorded: dict, now: dict, keys=None) -> str:
    """The settings that differ between what made a folder's files and this run, as "key old (now new), ...", for the
    sentence that refuses the run ("" when none differ). `keys`: the ones to compare (default: both dicts' keys)."""
    keys = sorted({*recorded, *now} if keys is None else keys)
    return ", ".join(f"{k} {recorded.get(k)!r} (now {now.get(k)!r})" for k in keys if recorded.get(k) != now.get(k))
