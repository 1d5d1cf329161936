"""Recognising Wan2.1 LoRA files from their tensor names, and refusing what would swamp a layer."""
import re

import pytest


def test_is_wan_lora_reads_names_only():
    from ft2_core.tlpo.lora_formats import is_wan_lora

    assert is_wan_lora(["diffusion_model.blocks.3.self_attn.q.lora_down.weight", "diffusion_model.blocks.3.self_attn.q.alpha"])
    assert is_wan_lora(["lora_unet_blocks_0_cross_attn_k.lora_up.weight"])  # musubi-tuner
    assert is_wan_lora(["transformer.blocks.1.attn1.to_q.lora_A.weight"])  # diffusers
    assert not is_wan_lora(["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"])  # SDXL
    assert not is_wan_lora(["diffusion_model.blocks.3.self_attn.q.lora_down.weight", "text_encoder.lora_down.weight"])
    assert not is_wan_lora([])


@pytest.mark.hostile(item=4, ends="refused")
@pytest.mark.parametrize("alpha, rank, expected", [
    (1e30, 4, "has alpha 1e+30; expected a finite value of at most 4096"),
    (float("nan"), 4, "has alpha nan"),
    (-float("inf"), 4, "has alpha -inf"),
    (4.0, 1025, "has rank 1025; expected at most 1024"),
])
def test_an_alpha_or_rank_that_would_swamp_the_layer_is_refused(alpha, rank, expected):
    import torch

    from ft2_core.errors import InputError
    from ft2_core.tlpo.lora_formats import parse_lora_state

    prefix = "diffusion_model.blocks.0.self_attn.q"
    state = {f"{prefix}.lora_down.weight": torch.zeros(rank, 8), f"{prefix}.lora_up.weight": torch.zeros(8, rank),
             f"{prefix}.alpha": torch.tensor(alpha)}
    with pytest.raises(InputError, match=re.escape(f"x.safetensors: blocks.0.self_attn.q {expected}")):
        parse_lora_state(state, "x.safetensors")
