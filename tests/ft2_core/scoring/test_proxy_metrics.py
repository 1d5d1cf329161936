import numpy as np

from ft2_core.io.audio import Audio
from ft2_core.scoring.proxy_metrics import ProxyScorer, best_lagged_correlation, flicker, motion_stats, sharpness


def test_sharp_beats_blurred_and_steady_beats_flicker():
    rng = np.random.default_rng(0)
    sharp = np.repeat((rng.random((1, 64, 64, 3)) > 0.5).astype(np.float32), 8, axis=0)
    blurred = np.repeat(np.full((1, 64, 64, 3), 0.5, np.float32) + 0.01 * sharp[:1], 8, axis=0)
    assert sharpness(sharp) > 100 * sharpness(blurred)
    flickering = sharp * np.array([0.3, 1.0] * 4, np.float32)[:, None, None, None]
    assert flicker(flickering) > 0.1 and flicker(sharp) == 0.0


def test_smooth_motion_has_less_jitter_than_shaking():
    frames = np.zeros((12, 64, 64, 3), np.float32)
    shaking = np.zeros_like(frames)
    for t in range(12):
        frames[t, 20:40, 5 + 3 * t:25 + 3 * t] = 1
        shaking[t, 20:40, 5 + (12 if t % 2 else 0):25 + (12 if t % 2 else 0)] = 1
    smooth_amount, smooth_jitter = motion_stats(frames)
    _, shaky_jitter = motion_stats(shaking)
    assert smooth_amount > 0 and smooth_jitter < shaky_jitter
    scorer = ProxyScorer()
    audio = Audio(np.full((1, 16000), 0.1, np.float32), 16000)
    s_smooth = scorer.score_clip(frames, 12.0, audio)
    s_shaky = scorer.score_clip(shaking, 12.0, audio)
    assert s_smooth["motion"] > s_shaky["motion"]
    assert s_smooth["lipsync"] is None  # no face landmarker: unknown, not a guess


def test_lagged_correlation_finds_a_shift():
    rng = np.random.default_rng(1)
    mouth = rng.random(40)
    assert best_lagged_correlation(mouth[2:], mouth[:-2]) > 0.99  # audio leading by two frames
    assert best_lagged_correlation(mouth, rng.random(40)) < 0.5
    assert best_lagged_correlation(mouth, np.ones(40)) == 0.0
