"""The shipped sync model reads true clips as in sync (offset 0, confident), a mouth 8 frames late as offset 8, and
finds no sync in a still portrait or under another condition's speech."""
import numpy as np
import pytest

from ft2_core.miniature.gaming import fake
from ft2_core.miniature.sync_model import SyncModel
from ft2_core.miniature.world import VALIDATION_SEEDS_FROM, make_clip

SEEDS = [VALIDATION_SEEDS_FROM + 400 + k for k in range(4)]


@pytest.fixture(scope="module")
def readings():
    model, rng = SyncModel.load(), np.random.default_rng(0)
    table = {}
    for name in ("ground truth", "mouth 8 frames late", "still first frame", "shuffled audio"):
        table[name] = []
        for seed in SEEDS:
            clip = make_clip(seed)
            frames, audio = fake(clip, name, rng, seed)
            table[name].append(model.read(frames, audio, clip.fps, clip.portrait))
    return table


def test_true_clips_read_in_sync_and_a_late_mouth_reads_late(readings):
    assert [r.offset for r in readings["ground truth"]] == [0] * len(SEEDS)
    assert [r.offset for r in readings["mouth 8 frames late"]] == [8] * len(SEEDS)


def test_no_sync_reads_less_confident_than_the_truth(readings):
    truth = np.mean([r.confidence for r in readings["ground truth"]])
    for name in ("still first frame", "shuffled audio"):
        assert np.mean([r.confidence for r in readings[name]]) < truth / 2, name


def test_a_clip_shorter_than_the_models_reach_is_refused():
    clip = make_clip(SEEDS[0], 13)
    with pytest.raises(ValueError, match="at least 21 frames"):
        SyncModel.load().read(clip.frames, clip.audio, clip.fps, clip.portrait)
