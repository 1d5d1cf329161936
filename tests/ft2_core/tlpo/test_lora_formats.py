"""Recognising Wan2.1 LoRA files from their tensor names."""


def test_is_wan_lora_reads_names_only():
    from ft2_core.tlpo.lora_formats import is_wan_lora

    assert is_wan_lora(["diffusion_model.blocks.3.self_attn.q.lora_down.weight", "diffusion_model.blocks.3.self_attn.q.alpha"])
    assert is_wan_lora(["lora_unet_blocks_0_cross_attn_k.lora_up.weight"])  # musubi-tuner
    assert is_wan_lora(["transformer.blocks.1.attn1.to_q.lora_A.weight"])  # diffusers
    assert not is_wan_lora(["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"])  # SDXL
    assert not is_wan_lora(["diffusion_model.blocks.3.self_attn.q.lora_down.weight", "text_encoder.lora_down.weight"])
    assert not is_wan_lora([])
