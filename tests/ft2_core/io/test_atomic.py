"""Whole folders are written beside their target and renamed into place."""
import pytest

from ft2_core.io.atomic import staged_folder


def test_a_staged_folder_replaces_its_target_only_when_the_block_finishes(tmp_path):
    target = tmp_path / "thinker"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_folder(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("crash while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thinker"]  # no staging folder left behind
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    with staged_folder(target) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thinker"]
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
