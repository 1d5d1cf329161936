import json

import pytest

from ft2_core.errors import WriteError
from ft2_core.io.jsonl import append_jsonl


@pytest.mark.hostile(item=2, ends="handled")
def test_a_line_cut_by_a_crash_costs_only_itself(tmp_path):
    log = tmp_path / "scores.jsonl"
    append_jsonl(log, {"id": "a"})
    with log.open("a") as handle:
        handle.write('{"id": "b", "sc')  # killed mid-line
    append_jsonl(log, {"id": "c"})
    lines = log.read_text().splitlines()
    assert json.loads(lines[0]) == {"id": "a"} and json.loads(lines[2]) == {"id": "c"} and lines[1] == '{"id": "b", "sc'


@pytest.mark.hostile(item=2, ends="write error")
def test_an_append_that_fails_is_a_write_error_naming_the_file(tmp_path):
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(WriteError, match="folder.jsonl: writing failed"):
        append_jsonl(tmp_path / "folder.jsonl", {"id": "a"})


def test_a_list_a_tool_must_work_through_may_not_be_empty(tmp_path):
    from ft2_core.errors import InputError
    from ft2_core.io.jsonl import read_jsonl

    path = tmp_path / "conditions.jsonl"
    path.write_text("\n\n")
    assert read_jsonl(path, ("id",), "conditions file") == []  # a run's own log may be empty
    with pytest.raises(InputError, match=r"conditions file .*conditions.jsonl lists nothing"):
        read_jsonl(path, ("id",), "conditions file", empty_ok=False)
