"""The long-video evaluation: every method's row over segments, and a drift ratio only where it means something."""
import json

import pytest

from training.miniature import evaluate_long_video


def test_the_drift_ratio_is_last_over_first_and_none_where_the_first_is_about_zero():
    assert evaluate_long_video.last_over_first(0.2, 0.3) == pytest.approx(1.5)
    assert evaluate_long_video.last_over_first(0.0, 0.171) is None  # was 171298917 (a division by the 1e-9 floor)
    assert evaluate_long_video.last_over_first(0.009, 0.1) is None
    assert evaluate_long_video.ratio_cell(None) == "n/a (first about 0)"
    assert evaluate_long_video.ratio_cell(0.987) == "0.99"


def test_a_run_writes_one_row_per_method_with_its_segments(tmp_path, capsys):
    out = tmp_path / "long"
    assert evaluate_long_video.main(["--out", str(out), "--lengths", "2", "--clips", "1"]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert [r["method"] for r in rows] == ["sliding", "continuation", "single"]
    for r in rows:
        assert r["segments"] == 2 and len(r["lipsync_by_segment"]) == 2
        first, last = r["lipsync_first"], r["lipsync_last"]
        assert r["lipsync_last_over_first"] == (None if first < 0.01 else pytest.approx(last / first))
    table = out.with_suffix(".md").read_text()
    assert sum(line.startswith("| 2x (2 seg.) |") for line in table.splitlines()) == 3
    assert "Command: `python -m training.miniature.evaluate_long_video --out" in table
