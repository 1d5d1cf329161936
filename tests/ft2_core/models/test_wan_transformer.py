import pytest
import torch
from safetensors.torch import save_file

from ft2_core.errors import InputError
from ft2_core.models.wan_keys import diffusers_to_original
from ft2_core.models.wan_transformer import config_matching, load_transformer_file, load_transformer_folder
from ft2_core.tiny import TINY_CONFIG
from tests.conftest import in_the_map_of, make_model_inputs


def forward(transformer, inputs):
    x = torch.cat([inputs["latents"], inputs["condition"]], dim=1)
    with torch.no_grad():
        return transformer(x, inputs["timestep"], inputs["text"], inputs["image"], return_dict=False)[0]


@pytest.fixture(scope="module")
def reference(tiny_model):
    inputs = make_model_inputs(tiny_model, batch=1)
    return tiny_model.transformer, inputs, forward(tiny_model.transformer, inputs)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16, torch.float16, torch.float8_e4m3fn])
def test_original_single_file_loads_in_every_precision(tmp_path, reference, prefix, stored):
    transformer, inputs, _ = reference
    original = diffusers_to_original(transformer.state_dict())
    path = tmp_path / "wan.safetensors"
    save_file({prefix + k: v.to(stored).contiguous() for k, v in original.items()}, str(path))
    loaded, _ = load_transformer_file(path, TINY_CONFIG, dtype=torch.float32)
    # What the file holds, upcast: the same model with its weights rounded to the stored precision.
    rounded = type(transformer).from_config(transformer.config)
    rounded.load_state_dict({k: v.to(stored).float() for k, v in transformer.state_dict().items()})
    torch.testing.assert_close(forward(loaded, inputs), forward(rounded.eval(), inputs), rtol=1e-5, atol=1e-5)
    stored_linears = {n for n, p in loaded.named_parameters() if p.dtype == torch.float8_e4m3fn}
    assert all(p.dtype == torch.float32 for n, p in loaded.named_parameters() if n not in stored_linears)
    assert (stored == torch.float8_e4m3fn) == bool(stored_linears)  # fp8 block Linears stay as stored


def test_bf16_compute_keeps_norms_and_modulation_in_fp32(tmp_path, reference):
    transformer, _, _ = reference
    path = tmp_path / "wan.safetensors"
    save_file(diffusers_to_original(transformer.state_dict()), str(path))
    loaded, _ = load_transformer_file(path, TINY_CONFIG, dtype=torch.bfloat16)
    assert loaded.blocks[0].scale_shift_table.dtype == torch.float32
    assert loaded.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
    assert loaded.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16


def test_diffusers_keys_in_a_single_file_load_too(tmp_path, reference):
    transformer, inputs, expected = reference
    path = tmp_path / "wan_diffusers_keys.safetensors"
    save_file({k: v.contiguous() for k, v in transformer.state_dict().items()}, str(path))
    loaded, _ = load_transformer_file(path, TINY_CONFIG)
    torch.testing.assert_close(forward(loaded, inputs), expected)


def test_diffusers_folder_loads(tmp_path, reference):
    transformer, inputs, expected = reference
    transformer.save_pretrained(tmp_path / "transformer")
    loaded = load_transformer_folder(tmp_path / "transformer")
    torch.testing.assert_close(forward(loaded, inputs), expected)


@pytest.mark.hostile(item=7, ends="refused")
def test_truncated_file_is_named(tmp_path, reference):
    transformer, _, _ = reference
    path = tmp_path / "wan.safetensors"
    save_file(diffusers_to_original(transformer.state_dict()), str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        load_transformer_file(path, TINY_CONFIG)


def test_missing_file_and_garbage_are_named(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_transformer_file(tmp_path / "nope.safetensors", TINY_CONFIG)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(InputError, match="corrupt safetensors header"):
        load_transformer_file(garbage, TINY_CONFIG)


def test_t2v_checkpoint_is_refused_with_reason(tmp_path, reference):
    transformer, _, _ = reference
    state = {k: v for k, v in diffusers_to_original(transformer.state_dict()).items() if "_img" not in k and "img_emb" not in k}
    path = tmp_path / "t2v.safetensors"
    save_file(state, str(path))
    with pytest.raises(InputError, match="missing.*T2V"):
        load_transformer_file(path, TINY_CONFIG)


def test_wrong_shape_is_named(tmp_path, reference):
    transformer, _, _ = reference
    state = diffusers_to_original(transformer.state_dict())
    state["blocks.1.ffn.0.weight"] = torch.zeros(10, 32)
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(InputError, match="blocks.1.ffn.net.0.proj.weight has shape \\(10, 32\\)"):
        load_transformer_file(path, TINY_CONFIG)


def test_shipped_14b_config_is_found_by_shape():
    meta = dict(device="meta")
    state = {"patch_embedding.weight": torch.empty(5120, 36, 1, 2, 2, **meta),
             "blocks.39.attn1.to_q.weight": torch.empty(1, **meta)}
    assert config_matching(state, "x")["transformer"]["num_layers"] == 40
    state["patch_embedding.weight"] = torch.empty(5120, 16, 1, 2, 2, **meta)
    with pytest.raises(InputError, match="T2V"):
        config_matching(state, "x")
    state["patch_embedding.weight"] = torch.empty(1536, 36, 1, 2, 2, **meta)
    with pytest.raises(InputError, match="no shipped config fits a DiT of width 1536"):  # 1.3B is T2V-only
        config_matching(state, "x")


def test_single_file_without_config_is_matched_by_shape(tmp_path, reference):
    transformer, inputs, expected = reference
    path = tmp_path / "tiny.safetensors"
    save_file(diffusers_to_original(transformer.state_dict()), str(path))
    loaded, config = load_transformer_file(path)
    assert config["name"] == "ft2-tiny"
    torch.testing.assert_close(forward(loaded, inputs), expected)


def fp8_scaled(state: dict) -> dict:
    """ComfyUI's fp8_scaled layout: each block Linear weight divided by a per-tensor scale and stored in fp8,
    with `<module>.scale_weight` beside it and a `scaled_fp8` marker."""
    out = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, tensor in state.items():
        module, _, param = key.rpartition(".")
        if key.startswith("blocks.") and param == "weight" and tensor.ndim == 2:
            scale = tensor.abs().max() / 448.0
            out[key] = (tensor / scale).to(torch.float8_e4m3fn)
            out[f"{module}.scale_weight"] = scale.reshape(1)
        else:
            out[key] = tensor.to(torch.bfloat16)
    return out


@pytest.mark.parametrize("layout", ["fp8", "fp8_scaled"])
def test_fp8_weights_stay_as_stored_and_match_the_upcast_model(tmp_path, reference, layout):
    """About one byte per block-Linear parameter, and the same outputs as loading the same file upcast."""
    from ft2_core.models.stored_linear import StoredLinear

    transformer, inputs, expected = reference
    original = diffusers_to_original(transformer.state_dict())
    fp8_blocks = {k: v.to(torch.float8_e4m3fn) if k.startswith("blocks.") and v.ndim == 2 else v for k, v in original.items()}
    state = fp8_scaled(original) if layout == "fp8_scaled" else fp8_blocks
    path = tmp_path / "wan_fp8.safetensors"
    save_file({"model.diffusion_model." + k: v.contiguous() for k, v in state.items()}, str(path))
    kept, _ = load_transformer_file(path, TINY_CONFIG)
    upcast, _ = load_transformer_file(path, TINY_CONFIG, keep_stored=False)
    stored = [m for m in kept.modules() if isinstance(m, StoredLinear)]
    linear_params = sum(m.weight.numel() for m in stored)
    assert len(stored) == 2 * 12 and all(m.weight.dtype == torch.float8_e4m3fn for m in stored)  # 12 Linears per block
    assert sum(m.weight.numel() * m.weight.element_size() for m in stored) == linear_params  # one byte each
    assert not any(isinstance(m, StoredLinear) for m in upcast.modules())
    torch.testing.assert_close(forward(kept, inputs), forward(upcast, inputs), rtol=1e-5, atol=1e-5)
    error = (forward(kept, inputs) - expected).abs().max() / expected.abs().max()
    assert 0 < error < 0.1  # fp8 rounding of the fp32 original: close, not equal


def test_scale_without_a_weight_is_named(tmp_path, reference):
    transformer, _, _ = reference
    state = fp8_scaled(diffusers_to_original(transformer.state_dict()))
    state["blocks.0.self_attn.q.scale_weight"] = torch.ones(1)
    del state["blocks.0.self_attn.q.weight"]
    path = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(InputError, match="tensors missing|has no weight"):
        load_transformer_file(path, TINY_CONFIG)


def test_a_bf16_or_fp32_model_stored_as_fp8_at_load_equals_the_fp8_scaled_file(tmp_path, reference):
    """store_blocks_as_fp8 (training from a bf16 file or a diffusers folder) gives the layout and the numbers of
    ComfyUI's fp8_scaled file of the same weights, written here by a plain independent conversion."""
    import copy

    from ft2_core.models.stored_linear import StoredLinear, store_blocks_as_fp8

    transformer, inputs, expected = reference
    converted = copy.deepcopy(transformer)
    assert store_blocks_as_fp8(converted, torch.float32) == 2 * 12
    stored = [m for m in converted.modules() if isinstance(m, StoredLinear)]
    assert len(stored) == 2 * 12 and all(m.weight.dtype == torch.float8_e4m3fn for m in stored)
    path = tmp_path / "wan_fp8_scaled.safetensors"
    original = diffusers_to_original(transformer.state_dict())
    scaled = fp8_scaled(original)  # fp8 block weights and their scales; everything else stays as it was (fp32)
    state = {k: v if v.dtype == torch.float8_e4m3fn or k.endswith("scale_weight") else original[k] for k, v in scaled.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    from_file, _ = load_transformer_file(path, TINY_CONFIG)
    torch.testing.assert_close(forward(converted, inputs), forward(from_file, inputs), rtol=1e-5, atol=1e-5)
    error = (forward(converted, inputs) - expected).abs().max() / expected.abs().max()
    assert 0 < error < 0.1


@pytest.mark.hostile(item=4, ends="refused")
def test_a_nan_fp8_scale_is_refused_at_load(tmp_path, reference):
    transformer, _, _ = reference
    state = fp8_scaled(diffusers_to_original(transformer.state_dict()))
    state["blocks.0.self_attn.q.scale_weight"] = torch.full((1,), float("nan"))
    path = tmp_path / "nan_scale.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(InputError, match="scale_weight contains NaN or infinite values; the file is damaged"):
        load_transformer_file(path, TINY_CONFIG)


@pytest.mark.hostile(item=4, ends="refused")
@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16, torch.float8_e4m3fn])
def test_a_nan_weight_is_refused_at_load_in_every_precision(tmp_path, reference, stored):
    """A NaN weight would give a black video; fp8 block weights kept as stored are checked from their bits."""
    transformer, _, _ = reference
    state = {k: v.to(stored).clone() for k, v in diffusers_to_original(transformer.state_dict()).items()}  # not the model's
    state["blocks.1.ffn.0.weight"][3, 2] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    with pytest.raises(InputError, match="tensor blocks.1.ffn.net.0.proj.weight contains NaN or infinite values"):
        load_transformer_file(tmp_path / "nan.safetensors", TINY_CONFIG)


@pytest.mark.hostile(item=7, ends="refused")
def test_a_file_with_no_blocks_is_named(tmp_path, reference):
    transformer, _, _ = reference
    state = {k: v for k, v in transformer.state_dict().items() if not k.startswith("blocks.")}
    save_file(state, str(tmp_path / "headless.safetensors"))
    with pytest.raises(InputError, match="headless.safetensors: no transformer blocks .*not a whole Wan2.1 DiT"):
        load_transformer_file(tmp_path / "headless.safetensors")


@pytest.mark.hostile(item=7, ends="refused")
@pytest.mark.parametrize("text, expected", [
    ("[1", "is not valid JSON"),
    ('{"foo": 1}', 'must be a JSON object with a "transformer" object'),
    ('{"transformer": {"num_layers": "x"}}', "transformer.num_layers must be a positive whole number, got 'x'"),
    ('{"transformer": {"num_layerz": 2}}', "transformer.num_layerz is not a WanTransformer3DModel setting"),
    ('{"transformer": {"patch_size": [1, 2]}}', "transformer.patch_size must be three positive whole numbers"),
    ('{"transformer": {"eps": -1}}', "transformer.eps must be a number between 0 and 1"),
])
def test_a_bad_model_config_is_one_sentence_naming_it(tmp_path, reference, text, expected):
    transformer, _, _ = reference
    save_file(transformer.state_dict(), str(tmp_path / "dit.safetensors"))
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(InputError) as caught:
        load_transformer_file(tmp_path / "dit.safetensors", str(tmp_path / "config.json"))
    assert str(caught.value).startswith(f"model config {tmp_path / 'config.json'}") and expected in str(caught.value)
    with pytest.raises(InputError, match="model config wan-99b: not a shipped name .*wan2.1-i2v-14b-480p.* nor a JSON file"):
        load_transformer_file(tmp_path / "dit.safetensors", "wan-99b")


def test_a_base_loaded_in_its_stored_dtype_stays_in_the_file_map(tmp_path, reference):
    """A single file or a diffusers folder loaded in the dtype it is stored in keeps its weights in the file's memory
    map, so processes loading one base (FSDP ranks) share one copy of it in host memory; a cast makes a copy."""
    transformer, _, _ = reference
    save_file({k: v.contiguous() for k, v in transformer.state_dict().items()}, str(tmp_path / "dit.safetensors"))
    transformer.save_pretrained(tmp_path / "folder", safe_serialization=True)
    single, _ = load_transformer_file(tmp_path / "dit.safetensors", TINY_CONFIG)
    folder = load_transformer_folder(tmp_path / "folder")
    shard = next((tmp_path / "folder").glob("*.safetensors"))
    assert all(in_the_map_of(tmp_path / "dit.safetensors", p) for p in single.parameters())
    assert all(in_the_map_of(shard, p) for p in folder.parameters())
    cast, _ = load_transformer_file(tmp_path / "dit.safetensors", TINY_CONFIG, dtype=torch.bfloat16)
    converted = [p for p in cast.parameters() if p.dtype == torch.bfloat16]  # norms and modulation stay fp32
    assert converted and not any(in_the_map_of(tmp_path / "dit.safetensors", p) for p in converted)
