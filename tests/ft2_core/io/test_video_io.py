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


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(InputError, match="even sides"):
        write_mp4(tmp_path / "bad.mp4", torch.rand(3, 63, 48, 3), 23)
    with pytest.raises(InputError, match="frames must be"):
        write_mp4(tmp_path / "bad.mp4", torch.rand(0, 64, 48, 3), 23)
    assert list(tmp_path.iterdir()) == []
