"""ComfyUI's services as the nodes use them: --lowvram / --novram decide the blocks swapped unless the user does."""
import pytest


@pytest.mark.parametrize("vram_state, swapped", [("NORMAL_VRAM", 0), ("LOW_VRAM", 1), ("NO_VRAM", 2)])
def test_lowvram_and_novram_swap_blocks_unless_the_user_chose(ft2, model_management, vram_state, swapped):
    nodes = ft2.NODE_CLASS_MAPPINGS
    model_management(vram_state)
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32")
    (model,) = nodes["FT2ModelLoader"]().load("tiny_wan_i2v.safetensors", "tiny_fantasytalking.safetensors", "fp32")
    for loaded in (pipeline.model, model):  # the tiny DiT has 2 blocks
        assert (loaded.block_swap.count if loaded.block_swap else 0) == swapped
    (chosen,) = nodes["FT2PipelineLoader"]().load("(built-in tiny demo model)", "fp32", 0, 1)
    assert chosen.model.block_swap.count == 1  # the user's number wins


@pytest.fixture()
def comfy_previews(monkeypatch):
    """Stand-ins for ComfyUI's progress bar, previewer and preview setting, recording what reaches the frontend."""
    import enum
    import sys
    import types

    shown = []

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            shown.append((value, total, preview))

    method = enum.Enum("LatentPreviewMethod", "NoPreviews Auto Latent2RGB TAESD")
    comfy = types.ModuleType("comfy")
    comfy.utils = types.SimpleNamespace(ProgressBar=ProgressBar)
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.utils", comfy.utils)
    monkeypatch.setitem(sys.modules, "comfy.cli_args", types.SimpleNamespace(
        LatentPreviewMethod=method, args=types.SimpleNamespace(preview_method=method.Auto)))
    monkeypatch.setitem(sys.modules, "latent_preview", types.SimpleNamespace(MAX_PREVIEW_RESOLUTION=512))
    return shown


def test_the_finished_first_frame_replaces_the_last_step_preview(ft2, comfy_previews):
    import numpy as np

    from ft2_core.demo_inputs import demo_portrait
    from tests.nodes.stand_ins import SAMPLER, comfy_audio

    nodes = ft2.NODE_CLASS_MAPPINGS
    (pipeline,) = nodes["FT2PipelineLoader"]().load("(built-in miniature model: cartoon faces)", "fp32")
    portrait, speech = demo_portrait()[None], comfy_audio(0.3)
    frames, _ = nodes["FT2Animate"]().animate(pipeline, portrait, speech, "talk", "", 64, 9, 23.0, **SAMPLER)
    step_previews, (value, total, last) = comfy_previews[:-1], comfy_previews[-1]
    assert sum(preview is not None for _, _, preview in step_previews) == SAMPLER["steps"]  # each step showed its x0
    assert (value, total) == (1, 1) and last[0] == "JPEG" and last[2] == 512
    expected = (frames[0] * 255).byte().numpy()
    assert np.abs(np.asarray(last[1]).astype(int) - expected).max() <= 1


def test_no_finished_frame_when_previews_are_off(ft2, comfy_previews):
    import sys

    import torch

    cli_args = sys.modules["comfy.cli_args"]
    cli_args.args.preview_method = cli_args.LatentPreviewMethod.NoPreviews
    ft2.nodes.comfy_services.show_first_frame(frames=torch.rand(3, 8, 8, 3))
    assert comfy_previews == []


def test_the_native_sampler_shows_its_first_latent_frame(ft2, comfy_previews, monkeypatch):
    import torch

    services = ft2.nodes.comfy_services
    seen = []
    monkeypatch.setattr(services, "latent_previewer", lambda: lambda latents: seen.append(latents) or ("JPEG", "picture", 512))
    latents = torch.randn(1, 16, 5, 8, 8)
    services.show_first_frame(latents=latents)
    assert torch.equal(seen[0], latents[:, :, :1]) and comfy_previews == [(1, 1, ("JPEG", "picture", 512))]
