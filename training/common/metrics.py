"""How well scores order preference pairs (the critic's pair accuracy, the chain's critic and curation tables)."""
from __future__ import annotations

import numpy as np


def ordered_share(chosen, rejected) -> float:
    """Share of pairs whose chosen score is the higher (a tie counts half; 0.5 is chance)."""
    chosen, rejected = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    return float(np.mean((chosen > rejected) + 0.5 * (chosen == rejected)))
