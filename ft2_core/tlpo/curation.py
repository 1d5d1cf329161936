"""Talking-NSQ pair curation: for each condition and dimension, a candidate the scorer answers Yes
with confidence beats one it answers No with confidence (the paper's rule). The "ranking" rule pairs
candidates whose P(Yes) differ by at least the margin, whatever side of 0.5 they fall on: for a
critic that orders a condition's candidates well but answers them all alike (an uncalibrated one)."""
from __future__ import annotations

from ..dimensions import DIMENSION_NAMES
from .preference_data import Pair

RULES = ("answer", "ranking")


def pairs_by_dimension(scores: dict[str, dict], conditions: dict[str, str], margin: float = 0.1,
                       max_pairs_per_condition: int | None = None, rule: str = "answer",
                       groups: dict[str, str] | None = None) -> dict[str, list[Pair]]:
    """scores: candidate -> {dimension: P(Yes) or None}; conditions: candidate -> condition id.

    Winner: P(Yes) >= 0.5 + margin; loser: P(Yes) <= 0.5 - margin, of the same condition; every such
    combination is a pair (most confident first when capped). Unknown scores (None) form no pairs.
    `groups` (candidate -> key) pairs only candidates of one key, e.g. one guidance level: then a pair's
    difference is not the guidance's, which an expert would otherwise learn in place of the dimension.
    """
    by_condition: dict[str, list[str]] = {}
    for candidate in sorted(scores):
        by_condition.setdefault(conditions[candidate], []).append(candidate)
    pairs = {d: [] for d in DIMENSION_NAMES}
    for condition, candidates in sorted(by_condition.items()):
        for dimension in DIMENSION_NAMES:
            known = [(c, scores[c][dimension]) for c in candidates if scores[c].get(dimension) is not None]
            if rule == "answer":
                winners = [(c, p) for c, p in known if p >= 0.5 + margin]
                losers = [(c, p) for c, p in known if p <= 0.5 - margin]
                candidates_pairs = ((w, lo, pw - pl) for w, pw in winners for lo, pl in losers)
            else:
                candidates_pairs = ((w, lo, pw - pl) for w, pw in known for lo, pl in known if pw - pl >= max(margin, 1e-9))
            if groups is not None:
                candidates_pairs = (pair for pair in candidates_pairs if groups[pair[0]] == groups[pair[1]])
            found = sorted(candidates_pairs, key=lambda x: (-x[2], x[0], x[1]))
            if max_pairs_per_condition is not None:
                found = found[:max_pairs_per_condition]
            pairs[dimension] += [
                Pair(condition, w, lo, dimension, {"winner": scores[w][dimension], "loser": scores[lo][dimension]})
                for w, lo, _ in found
            ]
    return pairs
