"""Whole folders are written beside their target and renamed into place."""
import pytest

from ft2_core.errors import WriteError
from ft2_core.io.atomic import staged_folder


def test_a_staged_folder_replaces_its_target_only_when_the_block_finishes(tmp_path):
    target = tmp_path / "thinker"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(WriteError, match="thinker: writing failed \\(file write failed\\); is the disk full"):
        with staged_folder(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("file write failed")  # what torch.save raises when the disk fills
    with pytest.raises(KeyError):  # anything else passes through as it is
        with staged_folder(target) as staging:
            (staging / "half.txt").write_text("half")
            raise KeyError("not a write error")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thinker"]  # no staging folder left behind
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    with staged_folder(target) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thinker"]
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]


@pytest.mark.hostile(item=3, ends="handled")
def test_clean_up_removes_only_what_dead_ft2_processes_left(tmp_path):
    import subprocess
    import sys

    from ft2_core.io.atomic import atomic_path, remove_temporaries

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = tmp_path / f".out.mp4.ft2-{gone.pid}.k3j2.tmp.mp4"
    left.write_bytes(b"half")
    staging = tmp_path / f".checkpoint-0000040.ft2-{gone.pid}.q9w8"
    staging.mkdir()
    mine = atomic_path(tmp_path / "out.mp4")  # this process is alive: another run's file in progress
    foreign = [tmp_path / ".out.mp4.x1y2.tmp.mp4", tmp_path / ".checkpoint-abc", tmp_path / "notes.ft2-1.txt"]
    for path in foreign:
        path.write_text("not ours")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("outside")
    (tmp_path / f".link.ft2-{gone.pid}.zz").symlink_to(outside)
    removed = remove_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([left.name, staging.name, f".link.ft2-{gone.pid}.zz"])
    assert mine.exists() and all(path.exists() for path in foreign)
    assert (outside / "keep.txt").read_text() == "outside"  # a link is removed as a link, never followed

