"""The oracles separate ground truth from each kind of damage, on the dimension that damage belongs to."""
import numpy as np
import pytest

from ft2_core.miniature.oracles import _blur, audio_envelope, score_clip
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, make_clip

CLIPS = 8


def damaged(clip, kind, rng):
    frames = clip.frames
    if kind == "ground truth":
        return frames, clip.audio
    if kind == "shuffled audio":
        return frames, make_clip(clip_seed(clip) + 1000).audio
    if kind == "frozen first frame":
        return np.repeat(frames[:1], len(frames), axis=0), clip.audio
    if kind == "1 px jitter":
        shifts = rng.integers(-1, 2, (len(frames), 2))
        return np.stack([np.roll(f, tuple(s), axis=(0, 1)) for f, s in zip(frames, shifts)]), clip.audio
    if kind == "blur":
        return _blur(frames, 1), clip.audio
    if kind == "colour shift":
        return np.clip(frames + np.array([0.08, -0.05, 0.0]), 0, 1), clip.audio
    if kind == "noise":
        return np.clip(frames + rng.normal(0, 0.15, frames.shape), 0, 1), clip.audio
    if kind == "noise echoing the audio":  # the gamed lip-sync of a random model
        loud = audio_envelope(clip.audio, len(frames), clip.fps)
        return rng.uniform(0, 1, frames.shape) * (0.3 + 0.7 * loud / loud.max())[:, None, None, None], clip.audio
    raise ValueError(kind)


SEEDS = {}


def clip_seed(clip):
    return SEEDS[id(clip)]


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(0)
    kinds = ["ground truth", "shuffled audio", "frozen first frame", "1 px jitter", "blur", "colour shift", "noise",
             "noise echoing the audio"]
    table = {kind: [] for kind in kinds}
    for i in range(CLIPS):
        clip = make_clip(HELD_OUT_SEEDS_FROM + 500 + i)
        SEEDS[id(clip)] = HELD_OUT_SEEDS_FROM + 500 + i
        for kind in kinds:
            frames, audio = damaged(clip, kind, rng)
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
