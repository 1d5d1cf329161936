"""Writes that never leave a half-written file or folder: write to a temporary sibling, then rename."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def atomic_path(target: str | os.PathLike) -> Path:
    """A temporary sibling of `target` with the same suffix (tools pick formats by it); see `commit_atomic`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(handle)
    return Path(tmp)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files `atomic_path` made in `folder` that a killed process never renamed."""
    removed = []
    for stale in Path(folder).glob(".*.tmp*"):  # the names atomic_path gives: .NAME.RANDOM.tmpSUFFIX
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


@contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling folder (`.NAME-RANDOM`) to write a whole folder into. When the block ends without an error
    it takes `target`'s place (an older `target` is removed); otherwise it is deleted: never half a folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def commit_atomic(tmp: Path, target: str | os.PathLike) -> Path:
    """Give the file the permissions a plain open() would (mkstemp makes it private), then rename."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, target)
    return Path(target)


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    """A text file written whole or not at all (a crash leaves the previous file, or nothing)."""
    tmp = atomic_path(target)
    try:
        tmp.write_text(text)
        return commit_atomic(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
