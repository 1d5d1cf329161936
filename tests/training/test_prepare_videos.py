import numpy as np
import pytest
from PIL import Image
from skimage.data import astronaut

from ft2_core.io.audio import Audio
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import probe_mp4, read_video, write_mp4
from ft2_core.miniature.world import speech_clip
from ft2_core.tlpo.preference_data import LatentCache
from tests.training.conftest import kill_9_when
from training.prepare_videos import face_box, main, speech_share

# skimage's astronaut (512x512): her face lies within x 150..290, y 40..230 (hand-annotated).
FACE_BOX = (150, 40, 290, 230)


def talking_video(path, fps: float, seconds: float, size: tuple[int, int], face=True, audio="speech"):
    """The astronaut's face drifting across a frame of `size` (w, h) with world speech, silence or no soundtrack."""
    width, height = size
    count = round(fps * seconds)
    photo = np.asarray(Image.fromarray(astronaut()).resize((height, height)))
    frames = np.zeros((count, height, width, 3), np.uint8)
    for i in range(count):
        shift = int((width - height) * i / max(1, count - 1))
        frames[i, :, shift:shift + height] = photo if face else 90
    track = {"speech": speech_clip(1, seconds), "silence": Audio(np.zeros((1, int(16000 * seconds)), np.float32), 16000),
             "none": None}[audio]
    write_mp4(path, frames, fps, track)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    talking_video(folder / "long_30fps.mp4", 30, 3.2, (320, 240))  # 73 frames at 23 fps: 2 clips of 33
    (folder / "sub").mkdir()
    talking_video(folder / "sub" / "short_12fps.mp4", 12, 1.6, (192, 192))  # 36 frames at 23 fps: 1 clip
    talking_video(folder / "too_short.mp4", 25, 1.0, (160, 160))  # 23 frames
    talking_video(folder / "no_face.mp4", 24, 1.6, (160, 160), face=False)
    talking_video(folder / "silent.mp4", 25, 1.6, (160, 160), audio="silence")
    talking_video(folder / "no_track.mp4", 25, 1.6, (160, 160), audio="none")
    (folder / "notes.txt").write_text("not a video")
    return folder


def records(path):
    return read_jsonl(path, missing_ok=True)


def argv(videos, out, *extra):
    return ["--videos", str(videos), "--out", str(out), "--frames", "33", "--size", "64", *extra]


def test_a_folder_of_videos_becomes_clips_and_conditions(videos, tmp_path, caplog):
    caplog.set_level("INFO")
    out = tmp_path / "prepared"
    assert main(argv(videos, out)) == 0
    clips = records(out / "clips.jsonl")
    assert [c["id"] for c in clips] == ["long_30fps_mp4-000", "long_30fps_mp4-001", "sub_short_12fps_mp4-000"]
    skipped = {r["source"]: r["reason"] for r in records(out / "skipped.jsonl")}
    assert skipped["no_face.mp4"] == "no face" and skipped["silent.mp4"] == "no speech"
    assert skipped["no_track.mp4"] == "no audio track" and skipped["too_short.mp4"].startswith("shorter than 33 frames")
    assert "6 videos; 2 gave clips; 3 clips (3 new); 1 skipped: no audio track; 1 skipped: no face" in caplog.text
    for clip in clips:  # each clip: 33 frames at 23 fps, square 64, its speech; its portrait is its first frame
        facts = probe_mp4(out / clip["video"])
        assert (facts["frames"], facts["fps"], facts["width"], facts["height"]) == (33, 23.0, 64, 64)
        assert abs(facts["audio_seconds"] - 33 / 23) < 0.05
        portrait = np.asarray(Image.open(out / clip["image"]))
        frames, _, _ = read_video(out / clip["video"])
        assert portrait.shape == (64, 64, 3) and np.abs(portrait.astype(int) - frames[0]).mean() < 6  # one H.264 encode
    conditions = {c["id"]: c for c in records(out / "conditions.jsonl")}
    second = conditions["long_30fps_mp4-001"]
    assert second["start_seconds"] == round(33 / 23, 4) and second["source"] == "long_30fps.mp4"
    x0, y0, x1, y1 = second["crop_box"]  # the face (drifted right by then) inside the crop, the crop inside the frame
    assert x1 - x0 == y1 - y0 and 0 <= x0 and x1 <= 320 and 0 <= y0 and y1 <= 240
    assert x0 < 80 + FACE_BOX[0] * 240 / 512 and x1 > 80 * 33 / 72 + FACE_BOX[2] * 240 / 512


@pytest.mark.hostile(item=8, ends="refused")
def test_a_rerun_keeps_what_is_done_and_other_settings_are_refused(videos, tmp_path, capsys):
    out = tmp_path / "prepared"
    assert main(argv(videos, out, "--face", "check", "--max-clips-per-video", "1")) == 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "clips").iterdir()}
    assert main(argv(videos, out, "--face", "check", "--max-clips-per-video", "1")) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "clips").iterdir()} == before
    assert len(records(out / "clips.jsonl")) == 2 and len(records(out / "skipped.jsonl")) == 4
    assert all(c["crop_box"] is None for c in records(out / "conditions.jsonl"))  # check: whole frames kept
    assert main(argv(videos, out, "--face", "crop")) == 2
    assert "was prepared with face 'check' (now 'crop'), max_clips_per_video 1 (now 0)" in capsys.readouterr().err


@pytest.mark.hostile(item=2, ends="resumes")
def test_a_killed_run_goes_on_from_its_last_clip(videos, tmp_path, tiny_dir):
    out = tmp_path / "prepared"
    args = argv(videos, out, "--face", "none")
    killed = kill_9_when("training.prepare_videos", args, lambda: len(records(out / "clips.jsonl")) >= 1, tiny_dir)
    assert killed
    first = records(out / "clips.jsonl")
    assert main(args) == 0
    clips = records(out / "clips.jsonl")
    assert clips[: len(first)] == first and len({c["id"] for c in clips}) == len(clips) == 4  # face none: no_face's clip too
    assert not [p for p in out.rglob("*") if ".ft2-" in p.name]


def test_the_outputs_are_what_candidates_and_preprocessing_read(videos, tmp_path, tiny_dir):
    from training.generate_candidates import main as generate
    from training.preprocess import main as preprocess

    out = tmp_path / "prepared"
    assert main(argv(videos, out, "--max-clips-per-video", "1")) == 0
    assert preprocess(["--clips", str(out / "clips.jsonl"), "--out", str(tmp_path / "cache"), "--model-dir", str(tiny_dir),
                       "--fps", "23", "--max-side", "64"]) == 0
    assert generate(["--conditions", str(out / "conditions.jsonl"), "--out", str(tmp_path / "candidates"), "--samples", "1",
                     "--model-dir", str(tiny_dir), "--steps", "1", "--frames", "5", "--max-side", "64"]) == 0
    candidates = records(tmp_path / "candidates" / "candidates.jsonl")
    assert len(candidates) == 2 and all((tmp_path / "candidates" / c["image"]).is_file() for c in candidates)
    assert preprocess(["--clips", str(tmp_path / "candidates" / "candidates.jsonl"), "--out", str(tmp_path / "pairs_cache"),
                       "--model-dir", str(tiny_dir), "--max-side", "64", "--lip-mask", "none"]) == 0
    cache = LatentCache(tmp_path / "pairs_cache")  # the candidates, with their conditions' own portraits and prompts
    items = [f"video/{c['id']}" for c in candidates] + [f"cond/{c['condition']}" for c in candidates]
    assert sorted(cache.index) == sorted(items)


def test_speech_share_and_face_box_by_hand():
    t = np.arange(16000) / 16000
    half = np.where(t < 0.5, 0.1 * np.sin(2 * np.pi * 200 * t), 0.0)
    assert speech_share(half.astype(np.float32)) == 0.5
    points = [np.array([[100.0, 50.0], [140.0, 110.0]])]  # 40 x 60 extent, centre (120, 80)
    assert face_box(points, 240, 320, 2.0) == (60, 20, 180, 140)
    assert face_box(points, 100, 320, 2.0) == (70, 0, 170, 100)  # the side shrinks to the frame, the box moves inside


@pytest.mark.hostile(item=10, ends="refused")
@pytest.mark.parametrize("bad, message", [
    (["--frames", "32"], "--frames"), (["--stride", "0"], "--stride must be at least 1"),
    (["--size", "63"], "--size must be even"), (["--crop-scale", "0.5"], "--crop-scale"),
])
def test_bad_options_are_one_sentence(videos, tmp_path, capsys, bad, message):
    assert main([*argv(videos, tmp_path / "out"), *bad]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()


@pytest.mark.hostile(item=9, ends="refused")
def test_a_missing_source_is_named(tmp_path, capsys):
    assert main(["--videos", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")]) == 2
    assert f"--videos {tmp_path / 'nowhere'}: not found" in capsys.readouterr().err
