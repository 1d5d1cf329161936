"""JSON-lines manifests: one record per line, errors that name the file and line."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from ..errors import InputError
from .atomic import writing


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...] = (), what: str = "manifest",
               check: Callable[[dict], str | None] | None = None, missing_ok: bool = False,
               empty_ok: bool = True) -> list[dict]:
    """Records of a JSONL file; `check(record)` may return a problem, reported with the line number. `missing_ok`: a
    file not written yet (a run's own manifest before its first line) has no records. `empty_ok = False`: a list the
    user gives a tool to work through must list something (an empty one is a mistake upstream, not a finished run)."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return []
        raise InputError(f"{what} not found: {path}")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{number}: not a JSON line ({err})") from None
        missing = [key for key in required if key not in record]
        if missing:
            raise InputError(f"{path}:{number}: missing {', '.join(missing)}")
        problem = check(record) if check is not None else None
        if problem:
            raise InputError(f"{path}:{number}: {problem}")
        records.append(record)
    if not records and not empty_ok:
        raise InputError(f"{what} {path} lists nothing: check the step that wrote it")
    return records


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one record; a crash (or a full disk: WriteError) can cut at most the line being written, and a line cut
    earlier is ended first, so it costs only itself (readers of appended logs drop cut lines)."""
    path = Path(path)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
    with writing(path), path.open("ab+") as handle:
        if handle.seek(0, os.SEEK_END):
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = b"\n" + line
        handle.write(line)
