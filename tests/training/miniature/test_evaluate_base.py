"""The base model's evaluation: oracle rows and the frame-hold ratio of every moving row, from two held-out clips."""
import json

import pytest

from ft2_core.miniature.oracles import frame_hold_ratio
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, make_clip
from training.miniature import evaluate_base


def test_evaluation_writes_scores_and_frame_hold_ratios(tmp_path):
    assert evaluate_base.main(["--out", str(tmp_path / "base"), "--clips", "2"]) == 0
    results = json.loads((tmp_path / "base.json").read_text())
    assert set(results["summary"]) == {"ground truth", "static first frame", "untrained model", "trained base"}
    assert set(results["frame_hold"]) == {"ground truth", "untrained model", "trained base"}
    assert all(len(values) == 2 and all(v > 0 for v in values) for values in results["frame_hold"].values())
    truth = [frame_hold_ratio(make_clip(HELD_OUT_SEEDS_FROM + k).frames) for k in range(2)]  # the test split's clips
    assert results["frame_hold"]["ground truth"] == pytest.approx(truth)
    report = (tmp_path / "base.md").read_text()
    assert "Frame-hold ratio" in report
    assert f"Split: test (world seeds {HELD_OUT_SEEDS_FROM} to {HELD_OUT_SEEDS_FROM + 1}" in report
