"""The base model's evaluation: judges' rows (oracles, sync model, frame-hold ratio) on a split's conditions."""
import json

import pytest

from ft2_core.miniature.model import miniature_model_dir
from ft2_core.miniature.oracles import frame_hold_ratio
from ft2_core.miniature.world import VALIDATION_SEEDS_FROM, make_clip
from training.miniature import evaluate_base


def test_evaluation_writes_every_judges_rows_for_named_models(tmp_path):
    argv = ["--out", str(tmp_path / "base"), "--clips", "2", "--split", "validation", "--model",
            f"shipped={miniature_model_dir()}"]
    assert evaluate_base.main(argv) == 0
    results = json.loads((tmp_path / "base.json").read_text())
    assert set(results["summary"]) == {"ground truth", "static first frame", "untrained model", "shipped"}
    assert results["split"] == "validation" and results["protocol"] == 2
    truth = [frame_hold_ratio(make_clip(VALIDATION_SEEDS_FROM + k).frames) for k in range(2)]  # the split's clips
    assert [clip["frame_hold"] for clip in results["clips"]["ground truth"]] == pytest.approx(truth)
    assert results["summary"]["static first frame"]["frame_hold"] is None  # a still video has no ratio
    assert all(-8 <= clip["sync_offset"] <= 8 for row in results["clips"].values() for clip in row)
    report = (tmp_path / "base.md").read_text()
    assert f"Split: validation (world seeds {VALIDATION_SEEDS_FROM} to {VALIDATION_SEEDS_FROM + 1}" in report
    assert "| shipped |" in report and "sync confidence" in report


def test_a_missing_model_folder_or_a_taken_row_name_is_named(tmp_path, capsys):
    assert evaluate_base.main(["--out", str(tmp_path / "x"), "--model", f"x={tmp_path / 'nowhere'}"]) == 2
    assert "nowhere" in capsys.readouterr().err
    shipped = str(miniature_model_dir())
    for argv in (["--model", f"a={shipped}", "--model", f"a={shipped}"], ["--model", f"ground truth={shipped}"]):
        assert evaluate_base.main(["--out", str(tmp_path / "x"), *argv]) == 2
        assert "is taken" in capsys.readouterr().err
