"""FT2 Load Pipeline and FT2 Animate Portrait on the tiny model."""
import torch

from ft2_core.demo_inputs import demo_portrait
from tests.nodes.stand_ins import SAMPLER, comfy_audio


def test_all_in_one_nodes_give_frames_and_fitted_audio(ft2):
    nodes = ft2.NODE_CLASS_MAPPINGS
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "auto")
    frames, audio = nodes["FT2Animate"]().animate(
        pipeline,
        demo_portrait()[None],
        comfy_audio(1.0),
        "a person talks",
        "",
        0,
        ft2.nodes.sampling_widgets.AUTOMATIC,
        23.0,
        **SAMPLER,
    )
    # 1 s -> 25 frames; the 320x256 portrait at the tiny model's 128 max side -> 128x112 (102.4 -> 102 -> 112)
    assert frames.shape == (25, 128, 128, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1
    assert audio["sample_rate"] == 44100 and audio["waveform"].shape == (1, 2, round(25 / 23 * 44100))
