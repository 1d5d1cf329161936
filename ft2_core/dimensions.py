"""The three dimensions FantasyTalking2 prefers along, defined once.

Each has a name (the key in pair files, label files, configs, expert metadata and node outputs), a label
for people, the question Talking-Critic answers about it, and whether its Flow-DPO loss is the masked
mean over the lip region. `DIMENSIONS` is the one order: the paper's (MN, LS, VQ), used for the critic's
questions, the gate's experts, the nodes' outputs and the reports' columns.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import InputError


@dataclass(frozen=True)
class Dimension:
    name: str
    label: str
    question: str
    lip_mask: bool


DIMENSIONS = (
    Dimension("motion", "motion naturalness", "Is the motion of the person in this video natural?", lip_mask=False),
    Dimension("lipsync", "lip-sync", "Do the lip movements match the speech in this video?", lip_mask=True),
    Dimension("quality", "visual quality", "Is the visual quality of this video good?", lip_mask=False),
)
DIMENSION_NAMES = tuple(d.name for d in DIMENSIONS)
LABELS = {d.name: d.label for d in DIMENSIONS}
QUESTIONS = {d.name: d.question for d in DIMENSIONS}
POOLED = "pooled"  # one LoRA trained on every dimension's pairs: the baseline TLPO is compared with


def uses_lip_mask(name: str) -> bool:
    """Whether pairs of this dimension take the masked loss."""
    return dimension(name).lip_mask


def dimension(name: str) -> Dimension:
    for candidate in DIMENSIONS:
        if candidate.name == name:
            return candidate
    raise InputError(f"dimension must be one of {', '.join(DIMENSION_NAMES)}, got {name!r}")
