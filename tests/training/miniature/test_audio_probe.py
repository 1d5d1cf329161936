"""The audio probe: its windows and regression are what they say, and the world's loudness predicts its mouth."""
import json

import numpy as np
import pytest

from training.miniature import audio_probe


def test_a_frame_s_window_is_the_features_around_its_time_with_the_ends_repeated():
    features = np.arange(100, dtype=float)[:, None] * np.array([[1.0, -1.0]])  # feature i = (i, -i)
    windows = audio_probe.frame_windows(features, num_frames=3, fps=25.0, radius=1)  # frames at features 0, 2, 4
    assert windows.tolist() == [[0, 0, 0, 0, 1, -1], [1, -1, 2, -2, 3, -3], [3, -3, 4, -4, 5, -5]]


def test_ridge_recovers_a_linear_relation_and_a_constant_guess_scores_zero():
    rng = np.random.default_rng(0)
    x, held_out = rng.normal(size=(200, 5)), rng.normal(size=(50, 5))
    weights = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    assert audio_probe.ridge_r2(x, x @ weights + 4, held_out, held_out @ weights + 4, 1e-6) == pytest.approx(1, abs=1e-9)
    noise = rng.normal(size=(200, 1))  # inputs unrelated to the target: no better than its mean
    assert audio_probe.ridge_r2(noise, x[:, 0], rng.normal(size=(50, 1)), held_out[:, 0], 1e6) == pytest.approx(
        -np.mean(held_out[:, 0] - x[:, 0].mean()) ** 2 / np.var(held_out[:, 0]), abs=1e-3)


def test_loudness_is_the_log_rms_of_each_feature_s_samples_relative_to_the_loudest():
    samples = np.concatenate([np.full(320, 0.5), np.full(320, -0.05), np.zeros(100)])
    rms = np.sqrt(np.array([0.25, 0.0025, 0.0]) + 1e-12)  # the last feature: its 100 samples, all silent
    assert audio_probe.log_loudness(samples, 3)[:, 0] == pytest.approx(np.log(rms / rms[0] + 1e-4), abs=1e-9)


def test_the_command_writes_both_readings_and_the_world_s_loudness_predicts_its_mouth(tmp_path, capsys):
    assert audio_probe.main(["--out", str(tmp_path / "probe"), "--fit-clips", "12", "--clips", "4", "--frames", "17"]) == 0
    numbers = json.loads((tmp_path / "probe.json").read_text())
    assert numbers["log loudness"] > 0.5  # the world's rule: the mouth opens with the sound's envelope
    assert -1 < numbers["wav2vec2"] <= 1
    assert "| log loudness (20 ms) |" in (tmp_path / "probe.md").read_text() and "Command:" in capsys.readouterr().out


@pytest.mark.parametrize("option, value", [("--radius", "-1"), ("--clips", "0"), ("--fit-clips", "0"), ("--frames", "0")])
def test_settings_that_leave_nothing_to_fit_or_score_are_refused(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        audio_probe.main(["--out", str(tmp_path / "probe"), option, value])
    assert stop.value.code == 2 and "must be at least" in capsys.readouterr().err
    assert not (tmp_path / "probe.json").exists()
