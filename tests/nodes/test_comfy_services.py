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
