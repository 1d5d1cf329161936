"""What the node families share: clean errors, and room made in ComfyUI's memory for each run."""
import pytest
import torch

from ft2_core.demo_inputs import demo_portrait
from tests.nodes.stand_ins import SAMPLER, WanVaeStandIn, comfy_audio, native_sampler_inputs


def test_errors_read_cleanly_in_comfyui(ft2, tiny_pipeline):
    """ComfyUI shows an exception's module path: ours must be plain ValueErrors, and widths must be named."""
    nodes = ft2.NODE_CLASS_MAPPINGS
    model, embeds, clip_out = native_sampler_inputs(ft2)
    umt5 = [[torch.zeros(1, 7, 4096), {}]]  # native umT5-XXL features into a model of text width 32
    with pytest.raises(ValueError) as caught:
        nodes["FT2Sampler"]().sample(
            model, umt5, umt5, clip_out, WanVaeStandIn(tiny_pipeline.vae.model), torch.rand(1, 64, 64, 3), embeds, **SAMPLER
        )
    assert type(caught.value) is ValueError  # a builtin: ComfyUI prints just "ValueError"
    assert "positive conditioning: 4096-wide text features, but this model takes 32" in str(caught.value)
    clip_out["penultimate_hidden_states"] = torch.zeros(1, 257, 1280)
    with pytest.raises(ValueError, match="clip_vision_output: 1280-wide image features, but this model takes 32"):
        nodes["FT2Sampler"]().sample(
            model,
            [[torch.zeros(1, 5, 32), {}]],
            [[torch.zeros(1, 5, 32), {}]],
            clip_out,
            WanVaeStandIn(tiny_pipeline.vae.model),
            torch.rand(1, 64, 64, 3),
            embeds,
            **SAMPLER,
        )

def test_runs_make_room_in_comfyuis_memory_and_give_it_back(ft2, model_management):
    from ft2_core.placement import device_bytes

    nodes = ft2.NODE_CLASS_MAPPINGS
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
    fake = model_management()
    nodes["FT2Animate"]().animate(pipeline, demo_portrait()[None], comfy_audio(0.3), "talk", "", 64, 9, 23.0, **SAMPLER)
    largest = max(device_bytes(m) for m in pipeline.modules())  # its parts visit the device one at a time
    assert fake.calls[0] == ("free_memory", largest, torch.device("cpu")) and largest == device_bytes(pipeline)
    assert fake.calls[-1] == ("soft_empty_cache",)
