import subprocess
import sys

from bench.hostile_inputs import ENDINGS, ITEMS, table
from tests.conftest import REPO


def test_every_item_of_the_sweep_has_marked_cases_with_a_known_ending():
    """The table lists the marked tests (collected, not run here: the full sweep is the suite itself)."""
    result = subprocess.run([sys.executable, "-m", "bench.hostile_inputs", "--collect-only"], capture_output=True, text=True,
                            cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ") and line[2:4].strip().isdigit()]
    summary = {int(row[0][2:]): int(row[2]) for row in rows if len(row) == 3 + len(ENDINGS)}
    assert set(summary) == set(ITEMS) and all(count >= 1 for count in summary.values()), summary


def test_the_table_counts_endings_and_outcomes():
    cases = {"t::a[1]": {"item": 2, "ends": "resumes", "outcome": "passed"},
             "t::a[2]": {"item": 2, "ends": "write error", "outcome": "failed"},
             "t::b": {"item": 7, "ends": "refused", "outcome": "passed"}}
    text = table(cases)
    assert "3 cases: 1 refused, 1 write error, 1 resumes. Here: 1 failed, 2 passed." in text
    assert "| 2 | writes: a full disk, kills, temporaries | 2 | 0 | 1 | 0 | 1 |" in text
    assert "| 7 | `t::b` | refused | passed |" in text
