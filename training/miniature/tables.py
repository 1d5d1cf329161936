"""The miniature world's result tables (one row per model, mean ± std per dimension, in the dimensions' one order), and how
a result command names itself and writes its numbers and table."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ft2_core.dimensions import DIMENSION_NAMES, LABELS
from ft2_core.io.atomic import write_text_atomic


def score_table(table: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Markdown lines for {row: {dimension: {"mean", "std"}}}: header, separator, one line per row."""
    lines = ["| row | " + " | ".join(LABELS[d] for d in DIMENSION_NAMES) + " |", "|---" * (1 + len(DIMENSION_NAMES)) + "|"]
    for name, scores in table.items():
        cells = (f"{scores[d]['mean']:.3f} ± {scores[d]['std']:.3f}" for d in DIMENSION_NAMES)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def command_line(module: str, argv) -> str:
    """The command that made a result, as its table names it: the module and its arguments."""
    return f"python -m {module} " + " ".join(sys.argv[1:] if argv is None else argv)


def write_result(out: Path, numbers: dict, text: str) -> str:
    """A result as OUT.json (its numbers) and OUT.md (its table), each written whole; returns the table."""
    write_text_atomic(out.with_suffix(".json"), json.dumps(numbers, indent=1))
    write_text_atomic(out.with_suffix(".md"), text)
    return text
