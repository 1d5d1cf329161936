"""One run per output folder: a lock file holding the owner's process id, made atomically (a hard link of a finished
file), so two trainings, generations or preprocessings never interleave their files. A killed run's lock (its
process gone) is taken over."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ft2_core.errors import InputError
from ft2_core.io.atomic import process_alive

LOCK_NAME = ".ft2.lock"


def owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


@contextmanager
def folder_lock(folder: str | os.PathLike, what: str):
    """Hold `folder` for this process while the block runs; another live run holding it is one sentence naming it. A
    folder made for the run and left empty is removed again."""
    folder = Path(folder)
    created = not folder.exists()
    lock = folder / LOCK_NAME
    mine = folder / f".ft2.lock.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mine.write_text(str(os.getpid()))
    except OSError as err:
        raise InputError(f"{what} {folder}: cannot write there ({err.strerror or err})") from None
    try:
        for _ in range(2):
            try:
                os.link(mine, lock)  # atomic: fails when a lock exists
                break
            except FileExistsError:
                pid = owner(lock)
                if pid is not None and pid != os.getpid() and process_alive(pid):
                    raise InputError(f"{what} {folder} is in use by another run (process {pid}); wait for it to end or "
                                     "choose another folder") from None
                lock.unlink(missing_ok=True)  # a killed run's lock
        else:
            raise InputError(f"{what} {folder}: could not take its lock file {lock}")
    finally:
        mine.unlink(missing_ok=True)
    try:
        yield folder
    finally:
        if owner(lock) == os.getpid():
            lock.unlink(missing_ok=True)
        if created and not any(folder.iterdir()):  # a run refused before writing anything leaves no empty folder
            folder.rmdir()
