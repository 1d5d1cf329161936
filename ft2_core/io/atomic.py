"""Writes that never leave a half-written file or folder: write to a temporary sibling, then rename.

Every temporary name carries this process's marker (`.NAME.ft2-PID.RANDOM`), so clean-up removes only what an ft2
process made and then lost (a killed run: its process is gone), never a file of anyone else's or of a run still going.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..errors import WriteError

TEMPORARY = re.compile(r"^\..+\.ft2-(?P<pid>\d+)\.[^./]+(\.tmp[^/]*)?$")  # .NAME.ft2-PID.RANDOM[.tmpSUFFIX]


def run_marker() -> str:
    return f"ft2-{os.getpid()}"


def atomic_path(target: str | os.PathLike) -> Path:
    """A temporary sibling of `target` with the same suffix (tools pick formats by it); see `commit_atomic`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.{run_marker()}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(handle)
    return Path(tmp)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and staging folders that ft2 processes made in `folder` and died before renaming
    (their process is gone). Files without the marker, and those of live processes, are never touched; a symlink is
    removed as a link, never followed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        found = TEMPORARY.match(entry.name)
        if found is None or process_alive(int(found["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextmanager
def writing(target: str | os.PathLike):
    """Failures of a write (a full disk, a file-size limit: OSError, or the RuntimeError and SafetensorError that
    torch's and safetensors' writers raise for them) become one WriteError naming `target`."""
    from safetensors import SafetensorError

    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as err:
        if isinstance(err, WriteError):
            raise
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise WriteError(f"{target}: writing failed ({reason}); is the disk full? Nothing was saved") from None


@contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling folder (`.NAME.ft2-PID.RANDOM`) to write a whole folder into. When the block ends without an error
    it takes `target`'s place (an older `target` is removed); otherwise it is deleted: never half a folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{run_marker()}.", dir=target.parent))
    try:
        with writing(target):
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


def write_file_atomic(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """A file that `write(temporary path)` makes, renamed into place whole or not at all (a crash or a failed write
    leaves the previous file, or nothing)."""
    tmp = atomic_path(target)
    try:
        with writing(target):
            write(tmp)
        return commit_atomic(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(target: str | os.PathLike, text: str) -> Path:
    """A text file written whole or not at all (a crash leaves the previous file, or nothing)."""
    return write_file_atomic(target, lambda tmp: tmp.write_text(text))
