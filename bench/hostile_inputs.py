"""The hostile-input sweep as one table: every test case marked `hostile` in tests/ (a parametrized test counts each of
its cases), the item of the sweep it answers (issue "Nothing lost, nothing mislabelled, nothing silently black"), how
it ends, and whether it passed here. The cases are the tests themselves, so the table is what is checked.

    python -m bench.hostile_inputs [--out bench/results/hostile_inputs.md] [--collect-only]

Endings: refused (one sentence naming the input, exit 2, nothing written), write error (one sentence naming the file,
exit 1, no partial file), handled (the input works as it should: an EXIF rotation applied, antiphase speech kept, a
damaged checkpoint skipped for the one before), resumes (killed or stopped, then restarted to the uninterrupted
result).
"""
from __future__ import annotations

import argparse
import collections

import pytest

from ft2_core.io.atomic import write_text_atomic

ITEMS = {
    1: "a resume that ignores its config",
    2: "writes: a full disk, kills, temporaries",
    3: "clean-up or writes outside the target",
    4: "non-finite numbers",
    5: "small inputs, huge memory",
    6: "the CLI's bounds",
    7: "malformed headers, manifests and configs",
    8: "data scripts that reuse or clobber",
    9: "everyday media",
    10: "late validation and config edge cases",
}
ENDINGS = ("refused", "write error", "handled", "resumes")


class HostileCases:
    """A pytest plugin that records each `hostile` case's item, ending and outcome."""

    def __init__(self):
        self.cases: dict[str, dict] = {}

    def pytest_collection_modifyitems(self, items):
        for item in items:
            marker = item.get_closest_marker("hostile")
            if marker is not None:
                self.cases[item.nodeid] = {**marker.kwargs, "outcome": "not run"}

    def pytest_runtest_logreport(self, report):
        case = self.cases.get(report.nodeid)
        if case is not None and (report.when == "call" or report.outcome != "passed"):
            case["outcome"] = report.outcome


def table(cases: dict[str, dict]) -> str:
    ran = any(case["outcome"] != "not run" for case in cases.values())
    endings = collections.Counter(case["ends"] for case in cases.values())
    outcomes = collections.Counter(case["outcome"] for case in cases.values())
    lines = ["# Hostile inputs: every case, how it ends", "", "Command: `python -m bench.hostile_inputs`", "",
             f"{len(cases)} cases: " + ", ".join(f"{endings[e]} {e}" for e in ENDINGS if endings[e]) + "."
             + (" Here: " + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) + "." if ran else ""), "",
             "| item | what | cases | " + " | ".join(ENDINGS) + " |", "|---|---|---|" + "---|" * len(ENDINGS)]
    for number, what in ITEMS.items():
        mine = [case for case in cases.values() if case["item"] == number]
        counts = collections.Counter(case["ends"] for case in mine)
        lines.append(f"| {number} | {what} | {len(mine)} | " + " | ".join(str(counts[e]) for e in ENDINGS) + " |")
    lines += ["", "| item | case | ends | here |", "|---|---|---|---|"]
    for nodeid, case in sorted(cases.items(), key=lambda kv: (kv[1]["item"], kv[0])):
        lines.append(f"| {case['item']} | `{nodeid}` | {case['ends']} | {case['outcome']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/hostile_inputs.md")
    parser.add_argument("--collect-only", action="store_true", help="list the cases without running them")
    args = parser.parse_args(argv)
    plugin = HostileCases()
    code = pytest.main(["-q", "-m", "hostile", "tests", *(["--collect-only"] if args.collect_only else [])], plugins=[plugin])
    unknown = [nodeid for nodeid, case in plugin.cases.items()
               if case.get("item") not in ITEMS or case.get("ends") not in ENDINGS]
    if unknown:
        raise SystemExit(f"cases marked with an unknown item or ending: {unknown[:3]}")
    text = table(plugin.cases)
    if not args.collect_only:
        write_text_atomic(args.out, text)
    print(text)
    return int(code)


if __name__ == "__main__":
    raise SystemExit(main())
