"""Template thumbnails: frames of a video and images, tiled in two rows."""
import numpy as np
import pytest
from PIL import Image

from ft2_core.io.video_io import write_mp4
from scripts.workflow_thumbnail import SIDE, main


def test_a_video_fills_four_tiles_and_a_wide_image_a_row(tmp_path):
    frames = np.zeros((9, 64, 64, 3), np.uint8)
    frames[:, :, :, 0] = np.linspace(0, 255, 9).astype(np.uint8)[:, None, None]  # red grows frame by frame
    video = write_mp4(tmp_path / "clip.mp4", frames, 23.0)
    out = tmp_path / "thumb.jpg"
    assert main([str(out), str(video)]) == 0
    sheet = np.asarray(Image.open(out)).astype(int)
    assert sheet.shape == (SIDE, SIDE, 3)
    quarter = SIDE // 4
    centres = [(quarter, quarter), (quarter, 3 * quarter), (3 * quarter, quarter), (3 * quarter, 3 * quarter)]
    reds = [sheet[y, x, 0] for y, x in centres]
    assert reds == sorted(reds) and reds[-1] - reds[0] > 200  # first to last frame, in reading order

    Image.new("RGB", (300, 100), (0, 0, 255)).save(tmp_path / "heatmap.png")
    assert main([str(out), str(video), str(tmp_path / "heatmap.png"), "--caption", "made here"]) == 0
    sheet = np.asarray(Image.open(out)).astype(int)
    assert sheet[3 * quarter - 20, quarter, 2] > 200 and sheet[3 * quarter - 20, 3 * quarter, 2] > 200  # the row is blue
    assert list(tmp_path.glob(".*tmp*")) == []


def test_too_many_pictures_are_refused(tmp_path):
    pictures = []
    for index in range(5):
        Image.new("RGB", (64, 64)).save(tmp_path / f"{index}.png")
        pictures.append(str(tmp_path / f"{index}.png"))
    with pytest.raises(SystemExit, match="do not fit two rows"):
        main([str(tmp_path / "t.jpg"), *pictures])
