"""Critic nodes: the tiny critic and the proxies score a video made by FT2 Animate."""
import math

import pytest
import torch

from ft2_core.demo_inputs import demo_portrait
from tests.nodes.stand_ins import SAMPLER, comfy_audio

DIMENSIONS_ORDER = ("motion", "lipsync", "quality")  # the score node's outputs


@pytest.fixture()
def video(ft2):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
    return nodes["FT2Animate"]().animate(pipeline, demo_portrait()[None], comfy_audio(0.5), "talk", "", 64, 9, 23.0, **SAMPLER)


def test_tiny_critic_scores_a_generated_video(ft2, video, tiny_critic):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (critic,) = nodes["FT2CriticLoader"]().load("(built-in tiny critic: random, for trying the graph)", "none")
    frames, audio = video
    out = nodes["FT2CriticScore"]().score(critic, frames, audio, 23.0)
    motion, lipsync, quality, summary = out["result"]
    assert all(0 < v < 1 for v in (motion, lipsync, quality))
    assert summary == out["ui"]["text"][0] and summary.startswith("motion: ")
    from ft2_core.io.audio import audio_from_waveform

    direct = tiny_critic.score_clip(frames, 23.0, audio_from_waveform(audio["waveform"], audio["sample_rate"]))
    assert abs(direct["lipsync"] - lipsync) < 1e-5


def test_proxies_score_without_weights(ft2, video):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (proxies,) = nodes["FT2CriticLoader"]().load("(proxy metrics: no weights)", "none")
    frames, audio = video
    motion, lipsync, quality, summary = nodes["FT2CriticScore"]().score(proxies, frames, audio, 23.0)["result"]
    assert 0 <= motion <= 1 and 0 <= quality <= 1
    assert math.isnan(lipsync) and "lipsync: unknown: needs models/mediapipe/face_landmarker.task" in summary  # none here


def test_mismatched_fps_is_named(ft2, video):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (proxies,) = nodes["FT2CriticLoader"]().load("(proxy metrics: no weights)", "none")
    frames, audio = video
    with pytest.raises(ValueError, match="is the fps right"):
        nodes["FT2CriticScore"]().score(proxies, frames, audio, 2.0)
    with pytest.raises(ValueError, match="zero frames"):
        nodes["FT2CriticScore"]().score(proxies, torch.zeros(0, 64, 64, 3), audio, 23.0)


def test_critic_folder_and_lora_from_models_folder(ft2, models_dir, tiny_critic, tiny_dir, video):
    import shutil

    from ft2_core.scoring.critic import TalkingCritic
    from ft2_core.tiny import tiny_critic_dir

    base = models_dir / "ft2_critics" / "tiny-thinker"
    shutil.copytree(tiny_critic_dir(tiny_dir.parent), base, dirs_exist_ok=True)
    trained = TalkingCritic.from_folder(base)
    for param in trained.add_lora(4, 8.0):
        torch.nn.init.normal_(param, std=0.05)
    trained.save_lora(models_dir / "ft2_critics" / "critic_lora.safetensors")
    nodes = ft2.NODE_CLASS_MAPPINGS
    spec = nodes["FT2CriticLoader"].INPUT_TYPES()["required"]
    assert "tiny-thinker" in spec["critic_base"][0] and spec["critic_lora"][0] == ["none", "critic_lora.safetensors"]
    (critic,) = nodes["FT2CriticLoader"]().load("tiny-thinker", "critic_lora.safetensors")
    frames, audio = video
    got = nodes["FT2CriticScore"]().score(critic, frames, audio, 23.0)["result"][:3]
    from ft2_core.io.audio import audio_from_waveform

    want = trained.score_clip(frames, 23.0, audio_from_waveform(audio["waveform"], audio["sample_rate"]))
    assert all(abs(g - want[d]) < 1e-5 for g, d in zip(got, ("motion", "lipsync", "quality")))
    plain = tiny_critic.score_clip(frames, 23.0, audio_from_waveform(audio["waveform"], audio["sample_rate"]))
    assert any(abs(g - plain[d]) > 1e-4 for g, d in zip(got, ("motion", "lipsync", "quality")))  # the LoRA was applied


def test_the_miniature_critic_loads_from_the_node(ft2, video):
    from ft2_core.io.audio import audio_from_waveform
    from ft2_core.miniature.model import miniature_critic_dir
    from ft2_core.scoring.critic import TalkingCritic

    nodes = ft2.NODE_CLASS_MAPPINGS
    choice = next(c for c in nodes["FT2CriticLoader"].INPUT_TYPES()["required"]["critic_base"][0] if "miniature critic" in c)
    (critic,) = nodes["FT2CriticLoader"]().load(choice, "none")
    frames, audio = video
    got = nodes["FT2CriticScore"]().score(critic, frames, audio, 23.0)["result"][:3]
    direct = TalkingCritic.from_folder(miniature_critic_dir())
    want = direct.score_clip(frames, 23.0, audio_from_waveform(audio["waveform"], audio["sample_rate"]))
    assert all(abs(g - want[d]) < 1e-5 for g, d in zip(got, DIMENSIONS_ORDER))
