"""The miniature world's score tables: one row per model, mean ± std per dimension, in the dimensions' one order."""
from __future__ import annotations

from ft2_core.dimensions import DIMENSION_NAMES, LABELS


def score_table(table: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Markdown lines for {row: {dimension: {"mean", "std"}}}: header, separator, one line per row."""
    lines = ["| row | " + " | ".join(LABELS[d] for d in DIMENSION_NAMES) + " |", "|---" * (1 + len(DIMENSION_NAMES)) + "|"]
    for name, scores in table.items():
        cells = (f"{scores[d]['mean']:.3f} ± {scores[d]['std']:.3f}" for d in DIMENSION_NAMES)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines
