"""The oracles (protocol 2) against the gaming suite: ground truth near the top, and each damage or fake dropping the
dimension it belongs to (the numbers in the comments are the suite's means on 16 conditions, oracles.py's table)."""
import numpy as np
import pytest

from ft2_core.miniature.gaming import NAMES, fake
from ft2_core.miniature.oracles import audio_peak_envelope, frame_hold_ratio, score_clip
from ft2_core.miniature.world import VALIDATION_SEEDS_FROM, make_clip, mouth_track

CLIPS = 6


@pytest.fixture(scope="module")
def suite():
    """{entry: (lip-sync, motion, quality) means} over CLIPS validation conditions."""
    rng = np.random.default_rng(0)
    table = {name: [] for name in NAMES}
    for i in range(CLIPS):
        seed = VALIDATION_SEEDS_FROM + 100 + i
        clip = make_clip(seed)
        for name in NAMES:
            frames, audio = fake(clip, name, rng, seed)
            s = score_clip(frames, audio, clip.fps, clip.face, clip.frames)
            table[name].append((s.lipsync, s.motion, s.quality))
    return {name: np.mean(values, axis=0) for name, values in table.items()}


def test_ground_truth_scores_near_the_top(suite):
    lipsync, motion, quality = suite["ground truth"]
    assert lipsync > 0.85 and motion > 0.65 and quality > 0.85  # 0.937, 0.837, 0.936


def test_stillness_and_damped_motion_lose_quality(suite):
    truth = suite["ground truth"][2]
    assert suite["still first frame"][2] < 0.1  # 0.000: it keeps none of the truth's life
    assert suite["motion x0.25"][2] < truth - 0.3  # 0.482


def test_a_still_portrait_with_a_loudness_driven_mouth_earns_no_lip_sync(suite):
    assert suite["loudness rectangle"][0] < 0.05  # 0.000: its lips never move
    assert suite["loudness 2x2 patch"][0] < 0.05  # 0.000


def test_lip_sync_judges_amplitude_and_timing(suite):
    truth = suite["ground truth"][0]
    assert suite["mouth x0.25"][0] < truth - 0.5  # 0.241
    assert suite["mouth 8 frames late"][0] < truth - 0.5  # 0.008
    assert suite["shuffled audio"][0] < truth - 0.5  # 0.204
    assert suite["key frames on a line"][0] < truth - 0.2  # the mouth's changes inside a latent frame are lost
    assert suite["noise echoing the audio"][0] < 0.05  # 0.000: the picture gate


def test_missing_blinks_and_a_four_frame_hold_lose_motion(suite):
    truth = suite["ground truth"]
    assert suite["no blinks"][1] < truth[1] - 0.1  # 0.631
    assert suite["4-frame hold"][1] < truth[1] - 0.3  # 0.357
    assert suite["4-frame hold"][2] < truth[2] - 0.1  # 0.755
    assert suite["1 px jitter"][1] < 0.1  # 0.001


def test_picture_damage_drops_quality_and_keeps_motion(suite):
    truth = suite["ground truth"]
    for name, drop in (("blur", 0.2), ("noise", 0.5), ("colour shift", 0.5)):  # 0.619, 0.000, 0.287
        assert suite[name][2] < truth[2] - drop, name
    assert suite["blur"][1] > truth[1] - 0.1


def test_scores_are_bounded():
    clip = make_clip(5)
    s = score_clip(np.zeros_like(clip.frames), clip.audio, clip.fps, clip.face, clip.frames)
    for value in (s.lipsync, s.motion, s.quality):
        assert 0.0 <= value <= 1.0


def test_the_mouth_read_back_from_the_audio_follows_the_worlds_mouth():
    """The peak envelope through the world's own mouth rule recovers the mouth the truth was drawn with."""
    for k in range(4):
        clip = make_clip(VALIDATION_SEEDS_FROM + 200 + k)
        expected = mouth_track(audio_peak_envelope(clip.audio), len(clip.frames), clip.fps)
        assert np.corrcoef(expected, clip.motion.mouth)[0, 1] > 0.9
        assert 0.8 < expected.std() / clip.motion.mouth.std() < 1.25


def test_frame_hold_ratio_is_about_one_on_truth_and_large_on_a_four_frame_hold():
    """Ground truth changes as much into a latent frame's first frame as elsewhere; the held copy changes only there."""
    rng = np.random.default_rng(0)
    for k in range(4):
        seed = VALIDATION_SEEDS_FROM + 300 + k
        clip = make_clip(seed)
        held, _ = fake(clip, "4-frame hold", rng, seed)
        assert 0.4 < frame_hold_ratio(clip.frames) < 1.6
        assert frame_hold_ratio(held) > 20
