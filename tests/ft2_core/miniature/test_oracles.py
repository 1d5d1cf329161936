"""The oracles separate ground truth from each kind of damage, on the dimension that damage belongs to."""
import numpy as np
import pytest

from ft2_core.miniature.oracles import audio_envelope, score_clip
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, degrade, make_clip

CLIPS = 8


def damaged(clip, seed, kind, rng):
    if kind == "ground truth":
        return clip.frames, clip.audio
    if kind == "noise echoing the audio":  # the gamed lip-sync of a random model
        loud = audio_envelope(clip.audio, len(clip.frames), clip.fps)
        return rng.uniform(0, 1, clip.frames.shape) * (0.3 + 0.7 * loud / loud.max())[:, None, None, None], clip.audio
    return degrade(clip, kind, rng, make_clip(seed + 1000).audio)


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    kinds = ["ground truth", "shuffled audio", "frozen first frame", "1 px jitter", "blur", "colour shift", "noise",
             "noise echoing the audio"]
    table = {kind: [] for kind in kinds}
    for i in range(CLIPS):
        seed = HELD_OUT_SEEDS_FROM + 500 + i
        clip = make_clip(seed)
        for kind in kinds:
            frames, audio = damaged(clip, seed, kind, rng)
            s = score_clip(frames, audio, clip.fps, clip.portrait, clip.frames)
            table[kind].append((s.lipsync, s.motion, s.quality))
    return {kind: np.mean(values, axis=0) for kind, values in table.items()}


def test_ground_truth_scores_near_the_top(scores):
    lipsync, motion, quality = scores["ground truth"]
    assert lipsync > 0.9 and motion > 0.8 and quality > 0.65


def test_each_damage_drops_its_oracle(scores):
    truth = scores["ground truth"]
    assert scores["shuffled audio"][0] < truth[0] - 0.4  # lip-sync
    assert scores["frozen first frame"][1] < 0.05 and scores["frozen first frame"][0] < 0.05  # no motion, no sync
    assert scores["1 px jitter"][1] < 0.1 and scores["1 px jitter"][0] > truth[0] - 0.1  # motion, not sync
    assert scores["blur"][2] < truth[2] - 0.2 and scores["blur"][1] > truth[1] - 0.1  # quality, not motion
    assert scores["colour shift"][2] < truth[2] - 0.4 and scores["colour shift"][0] > truth[0] - 0.1
    assert scores["noise"][2] < 0.05 and scores["noise"][0] > truth[0] - 0.1  # the mouth still moves under the noise
    assert scores["noise echoing the audio"][0] < 0.05  # the picture gate: no face, no lip-sync


def test_scores_are_bounded():
    clip = make_clip(5)
    s = score_clip(np.zeros_like(clip.frames), clip.audio, clip.fps, clip.portrait, clip.frames)
    for value in (s.lipsync, s.motion, s.quality):
        assert 0.0 <= value <= 1.0


def test_frame_hold_ratio_is_about_one_on_truth_and_large_on_a_four_frame_hold():
    """Ground truth changes as much into a latent frame's first frame as elsewhere; the same clip with each latent
    frame's four frames replaced by their last one (the hold the old base made) changes only there."""
    from ft2_core.miniature.oracles import frame_hold_ratio

    for k in range(4):
        frames = make_clip(HELD_OUT_SEEDS_FROM + k).frames
        held = frames.copy()
        for start in range(1, len(frames), 4):
            held[start:start + 4] = frames[start + 3]
        assert 0.4 < frame_hold_ratio(frames) < 1.6  # measured 1.17, 0.91, 0.79, 0.54 (8 latent starts a clip)
        assert frame_hold_ratio(held) > 20  # measured 31, 47, 55, 30 (frame 1 still changes, from frame 0)
