import os

import numpy as np
import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.io.audio import Audio
from ft2_core.io.video_io import probe_mp4, write_mp4


def test_mp4_has_frames_fps_and_audio_of_video_length(tmp_path):
    frames = torch.rand(29, 64, 48, 3)
    audio = Audio(np.sin(np.linspace(0, 900, 44100 * 3))[None].astype(np.float32) * 0.3, 44100)  # 3 s, longer
    path = write_mp4(tmp_path / "out.mp4", frames, 23, audio)
    facts = probe_mp4(path)
    assert facts["frames"] == 29 and facts["fps"] == 23.0
    assert (facts["video_codec"], facts["pix_fmt"], facts["audio_codec"]) == ("h264", "yuv420p", "aac")
    assert (facts["width"], facts["height"]) == (48, 64)
    assert facts["audio_seconds"] == pytest.approx(29 / 23, abs=0.03)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not the private mode of a temporary file


@pytest.mark.hostile(item=2, ends="write error")
def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="even sides"):
        write_mp4(tmp_path / "bad.mp4", torch.rand(3, 63, 48, 3), 23)
    with pytest.raises(InputError, match="frames must be"):
        write_mp4(tmp_path / "bad.mp4", torch.rand(0, 64, 48, 3), 23)
    assert list(tmp_path.iterdir()) == []


FULL_DISK = """
import resource, signal, sys
import numpy as np
from ft2_core.errors import WriteError
from ft2_core.io.video_io import write_mp4
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (30000, 30000))
frames = np.random.default_rng(0).integers(0, 255, (40, 128, 128, 3), dtype=np.uint8)
try:
    write_mp4(sys.argv[1], frames, 23.0)
except WriteError as err:
    print(err)
    sys.exit(3)
"""


@pytest.mark.hostile(item=2, ends="write error")
def test_a_write_that_runs_out_of_room_leaves_the_previous_file(tmp_path):
    """ffmpeg under a 30 kB file-size limit (a full disk, for this test) writes a truncated MP4: it is refused, the
    previous video stays, and no temporary file remains."""
    import subprocess
    import sys
    from pathlib import Path

    target = tmp_path / "out.mp4"
    previous = write_mp4(target, torch.rand(5, 32, 32, 3), 23).read_bytes()
    repo = Path(__file__).resolve().parents[3]
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(target)], capture_output=True, text=True, cwd=repo)
    assert run.returncode == 3, run.stderr
    assert "ffmpeg wrote 0 of 40 frames (is the disk full?); nothing was saved" in run.stdout
    assert target.read_bytes() == previous and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


@pytest.mark.hostile(item=4, ends="refused")
def test_non_finite_frames_are_never_written(tmp_path):
    frames = torch.rand(5, 32, 32, 3)
    frames[2, 0, 0, 1] = float("nan")
    with pytest.raises(InputError, match="frames hold 1 NaN or infinite values"):
        write_mp4(tmp_path / "black.mp4", frames, 23)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.hostile(item=2, ends="write error")
def test_a_cut_mp4_is_told_from_a_whole_one(tmp_path):
    """A file one byte short can still decode every frame (the end of its index is lost): the boxes tell."""
    from ft2_core.io.video_io import frames_in, mp4_boxes_complete, write_mp4

    whole = write_mp4(tmp_path / "whole.mp4", np.zeros((9, 32, 32, 3), np.uint8), 23.0)
    assert mp4_boxes_complete(whole)
    data = whole.read_bytes()
    cut, padded = tmp_path / "cut.mp4", tmp_path / "padded.mp4"
    cut.write_bytes(data[:-1])
    padded.write_bytes(data + b"junk")
    assert not mp4_boxes_complete(cut) and not mp4_boxes_complete(padded)
    assert frames_in(cut) == 9  # why the frame count alone was not enough
