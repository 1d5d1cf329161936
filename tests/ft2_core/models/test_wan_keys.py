import pytest

from ft2_core.errors import InputError
from ft2_core.models.wan_keys import diffusers_to_original, is_original_layout, original_to_diffusers


def test_round_trip_covers_every_diffusers_key(tiny_model):
    keys = {k: None for k in tiny_model.transformer.state_dict()}
    original = diffusers_to_original(keys)
    assert is_original_layout(original) and not is_original_layout(keys)
    assert set(original_to_diffusers(dict(original))) == set(keys)


def test_known_original_names():
    names = ["blocks.3.self_attn.q.weight", "blocks.3.cross_attn.k_img.bias", "blocks.3.norm3.weight",
             "blocks.3.modulation", "head.modulation", "img_emb.proj.4.bias", "model.diffusion_model.blocks.0.ffn.2.weight"]
    got = list(original_to_diffusers({n: None for n in names}))
    assert got == ["blocks.3.attn1.to_q.weight", "blocks.3.attn2.add_k_proj.bias", "blocks.3.norm2.weight",
                   "blocks.3.scale_shift_table", "scale_shift_table", "condition_embedder.image_embedder.norm2.bias",
                   "blocks.0.ffn.net.2.weight"]


def test_unknown_keys_are_listed():
    with pytest.raises(InputError, match="2 keys are not Wan2.1 DiT keys.*vace_blocks.0.x"):
        original_to_diffusers({"head.modulation": None, "vace_blocks.0.x": None, "foo.weight": None})
