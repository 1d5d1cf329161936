"""The built-in miniature critic ships trained: on the world's held-out clips it beats the best constant answer."""
import numpy as np
import torch

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.miniature.model import miniature_critic_dir
from ft2_core.miniature.world import DEGRADATIONS, FPS, HELD_OUT_SEEDS_FROM, HURTS, degrade, make_clip
from ft2_core.scoring.critic import TalkingCritic

CONDITIONS = 20  # x 7 clips (the true clip and each kind of damage); seeds from the held-out range, never trained on


def test_the_miniature_critic_beats_the_majority_answer_on_held_out_world_clips():
    critic = TalkingCritic.from_folder(miniature_critic_dir())
    assert critic.settings.max_frames == 34  # its training's frame sampling is read from the folder
    rng = np.random.default_rng(0)
    features, truth = [], []
    for index in range(CONDITIONS):
        clip = make_clip(HELD_OUT_SEEDS_FROM + 30_000 + index, 33)
        other = make_clip(HELD_OUT_SEEDS_FROM + 30_000 + index + 1, 33).audio
        for kind in ("ground truth", *DEGRADATIONS):
            frames, audio = (clip.frames, clip.audio) if kind == "ground truth" else degrade(clip, kind, rng, other)
            features.append(critic.features(torch.from_numpy(np.asarray(frames)).float(), FPS, audio, kind))
            truth.append([d not in HURTS.get(kind, ()) for d in DIMENSION_NAMES])
    answers = np.array([[s[d] >= 0.5 for d in DIMENSION_NAMES] for s in critic.score(features, batch_size=8)])
    truth = np.array(truth)
    accuracy = (answers == truth).mean(axis=0)
    majority = np.maximum(truth.mean(axis=0), 1 - truth.mean(axis=0))  # the best constant answer on these very clips
    assert (accuracy > majority + 0.05).all(), dict(zip(DIMENSION_NAMES, zip(accuracy.round(3), majority.round(3))))
