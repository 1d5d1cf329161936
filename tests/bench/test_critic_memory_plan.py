"""The critic plan's instruments: its token counts against the critic's own frame sampling, its weight count against
the released thinker's, and the plan's arithmetic by hand."""
import numpy as np
import torch

from bench.critic_memory_plan import FPS, FRAMES, LORA_STATE_BYTES, QUESTIONS, clip_tokens, parameter_counts, plan_bytes
from ft2_core.scoring.critic import VideoSettings, video_patches


def test_clip_tokens_are_the_critics_own():
    frames = torch.zeros(FRAMES, 224, 224, 3)
    for sample_fps in (2.0, 12.0, 23.0):
        patches, grid, _ = video_patches(frames, FPS, VideoSettings(sample_fps=sample_fps, max_frames=1000,
                                                                    max_pixels=224 * 224))
        assert clip_tokens(sample_fps, 224 * 224)["patches"] == patches.shape[0] == np.prod(grid)


def test_the_thinker_has_the_released_models_weights():
    """Qwen2.5-Omni-7B's thinker: 8.93 B parameters (its model card's 7 B is the language model)."""
    counts = parameter_counts()
    assert abs(counts["base"] / 8.93e9 - 1) < 0.005 and 10e6 < counts["lora"] < 100e6


def test_the_plan_adds_weights_state_and_activations():
    counts = {"base": 1000, "lora": 10}
    costs = {t: {"saved": 100.0, "backward": 10.0} for t in ("text", "vision", "audio")}
    tokens = {"text": 4, "patches": 8, "mel": 6}
    kept = plan_bytes(counts, costs, tokens, "bf16", False)
    assert kept == 2000 + 10 * LORA_STATE_BYTES + 100 * (28 * 4 + 32 * 8 + 32 * 6) + 10 * 8
    recomputed = plan_bytes(counts, costs, tokens, "4bit", True)
    inputs = 28 * 3584 * 2 * 4 + 32 * 1280 * 2 * 8 + 32 * 1280 * 2 * 3
    assert recomputed == 1000 * 0.5625 + 10 * LORA_STATE_BYTES + QUESTIONS * (inputs + 110 * 8)
