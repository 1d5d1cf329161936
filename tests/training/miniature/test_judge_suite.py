"""The gaming suite's table: every entry scored by the oracles and read by the sync model, with its protocol."""
import json

from ft2_core.miniature.gaming import NAMES
from training.miniature import judge_suite


def test_the_table_has_every_entry_and_both_measures(tmp_path):
    assert judge_suite.main(["--clips", "1", "--out", str(tmp_path / "suite")]) == 0
    results = json.loads((tmp_path / "suite.json").read_text())
    assert results["protocol"] == 2 and set(results["summary"]) == set(NAMES)
    assert results["summary"]["ground truth"]["sync_offset"]["mean"] == 0
    report = (tmp_path / "suite.md").read_text()
    assert all(f"| {name} |" in report for name in NAMES) and "sync confidence" in report
