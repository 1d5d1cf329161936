"""The fusion-overhead bench refuses a token count that is not whole frames, instead of a reshape error."""
import subprocess
import sys

from tests.conftest import REPO


def test_tokens_that_are_not_whole_frames_are_refused_with_the_rule():
    run = subprocess.run([sys.executable, "-m", "bench.fusion_overhead", "--tokens", "64"], cwd=REPO, capture_output=True,
                         text=True)
    assert run.returncode == 2 and "--tokens must be a whole number of frames of 32 x 32 patches" in run.stderr
