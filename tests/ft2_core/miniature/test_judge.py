"""`python -m ft2_core judge`: one JSON object per video of a world condition, from the MP4's pixels and soundtrack."""
import json

import numpy as np
import pytest

from ft2_core.cli import main
from ft2_core.io.video_io import write_mp4
from ft2_core.miniature.world import VALIDATION_SEEDS_FROM, make_clip

SEED = VALIDATION_SEEDS_FROM + 500


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("judge")
    clip = make_clip(SEED)
    still = np.repeat(clip.portrait[None], len(clip.frames), axis=0)
    return {name: write_mp4(folder / f"{name}.mp4", frames, clip.fps, clip.audio)
            for name, frames in (("truth", clip.frames), ("still", still))} | {
        "silent": write_mp4(folder / "silent.mp4", clip.frames, clip.fps),
        "dubbed": write_mp4(folder / "dubbed.mp4", clip.frames, clip.fps, make_clip(SEED + 1000).audio)}


def judge(capsys, *argv) -> dict:
    assert main(["judge", *map(str, argv)]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_truth_scores_high_and_a_still_portrait_low(videos, capsys):
    truth = judge(capsys, videos["truth"], "--world-seed", SEED)
    assert {"lipsync", "motion", "quality", "sync_confidence", "sync_offset"} <= set(truth)
    still = judge(capsys, videos["still"], "--world-seed", SEED)
    assert truth["sync_offset"] == 0 and truth["sync_confidence"] > 2 * still["sync_confidence"]
    for key in ("lipsync", "motion", "quality"):  # the truth through H.264 against nothing at all
        assert truth[key] > 0.5 and still[key] < 0.1, key


def test_lip_sync_is_judged_against_the_files_own_soundtrack(videos, capsys):
    """The true frames with another condition's speech in the file: the mouth no longer follows what is heard."""
    truth = judge(capsys, videos["truth"], "--world-seed", SEED)
    dubbed = judge(capsys, videos["dubbed"], "--world-seed", SEED)
    assert dubbed["lipsync"] < truth["lipsync"] - 0.4
    assert dubbed["sync_confidence"] < truth["sync_confidence"]
    assert dubbed["motion"] == pytest.approx(truth["motion"])  # the same pictures


@pytest.mark.parametrize("argv, message", [
    (["silent", "--world-seed", str(SEED)], "no soundtrack"),
    (["truth", "--world-seed", str(SEED), "--frames", "13"], "--frames: expected 21 to 33"),
    (["truth", "--world-seed", "-1"], "--world-seed"),
])
def test_bad_inputs_are_named(videos, capsys, argv, message):
    assert main(["judge", str(videos[argv[0]]), *argv[1:]]) == 2
    assert message in capsys.readouterr().err
