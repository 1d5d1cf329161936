"""The built-on-first-use toy folders: the random critic thinkers of each size."""
import json
import re

import pytest
from safetensors.torch import load_file

from ft2_core.errors import InputError
from ft2_core.scoring.critic import TalkingCritic
from ft2_core.tiny import CRITIC_SIZES, tiny_critic_dir
from tests.ft2_core.scoring.test_critic import clip


def test_a_small_critic_thinker_is_twice_as_wide_and_deep_and_scores_clips(tiny_dir):
    tiny, small = (tiny_critic_dir(tiny_dir.parent, size=size) for size in ("tiny", "small"))
    assert tiny.name.startswith("tiny-critic-") and small.name.startswith("small-critic-")
    configs = [json.loads((folder / "config.json").read_text()) for folder in (tiny, small)]
    for tower, keys in (("text_config", ("hidden_size", "num_hidden_layers")), ("vision_config", ("hidden_size", "depth")),
                        ("audio_config", ("d_model", "encoder_layers"))):
        assert [configs[1][tower][k] for k in keys] == [2 * configs[0][tower][k] for k in keys]
    weights = [sum(t.numel() for t in load_file(folder / "model.safetensors").values()) for folder in (tiny, small)]
    assert weights[1] > 4 * weights[0]
    critic = TalkingCritic.from_folder(small)
    scores = critic.score([critic.features(*clip())], batch_size=1)[0]
    assert all(0 < p < 1 for p in scores.values())


def test_an_unknown_critic_size_names_the_sizes(tmp_path):
    with pytest.raises(InputError, match=re.escape(f"one of {tuple(CRITIC_SIZES)}")):
        tiny_critic_dir(tmp_path, size="huge")
