"""Building and loading the Wan2.1 DiT (diffusers `WanTransformer3DModel`) from the files users have."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from ..checks import finite_tensors
from ..errors import InputError
from ..io.checkpoint_io import load_state_dict
from .stored_linear import FP8_DTYPES, StoredLinear
from .wan_keys import is_original_layout, original_to_diffusers, strip_original_prefix

CONFIG_DIR = Path(__file__).parents[1] / "configs"


def shipped_configs() -> dict[str, dict]:
    """Model configs that ship with the package, by name (real Wan2.1 sizes; no hub needed)."""
    configs = {}
    for path in sorted(CONFIG_DIR.glob("*.json")):
        config = json.loads(path.read_text())
        configs[config["name"]] = config
    return configs


def read_model_config(config: str | os.PathLike | dict) -> dict:
    """A model config from a dict, a shipped name, or a JSON path (checked: check_model_config)."""
    if isinstance(config, dict):
        return config
    shipped = shipped_configs()
    if str(config) in shipped:
        return shipped[str(config)]
    if not Path(config).is_file():
        raise InputError(f"model config {config}: not a shipped name ({', '.join(shipped)}) nor a JSON file")
    try:
        loaded = json.loads(Path(config).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"model config {config} is not valid JSON ({err})") from None
    return check_model_config(loaded, f"model config {config}")


def positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# WanTransformer3DModel's settings: what each must be (a check, and its words for the error)
TRANSFORMER_SETTINGS = {
    **{key: (positive_int, "a positive whole number") for key in (
        "attention_head_dim", "num_attention_heads", "in_channels", "out_channels", "text_dim", "freq_dim", "ffn_dim",
        "num_layers", "rope_max_seq_len")},
    **{key: (lambda v: v is None or positive_int(v), "a positive whole number or null") for key in (
        "image_dim", "added_kv_proj_dim", "pos_embed_seq_len")},
    "patch_size": (lambda v: isinstance(v, list) and len(v) == 3 and all(map(positive_int, v)), "three positive whole numbers"),
    "cross_attn_norm": (lambda v: isinstance(v, bool), "true or false"),
    "qk_norm": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "eps": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1, "a number between 0 and 1"),
}


def check_model_config(config, what: str) -> dict:
    """A user's model config: a "transformer" object of WanTransformer3DModel settings, each of the right kind (keys
    starting with _ are notes); one sentence naming the setting otherwise."""
    if not isinstance(config, dict) or not isinstance(config.get("transformer"), dict):
        raise InputError(f'{what} must be a JSON object with a "transformer" object of WanTransformer3DModel settings')
    for key, value in config["transformer"].items():
        if key.startswith("_"):
            continue
        if key not in TRANSFORMER_SETTINGS:
            raise InputError(f"{what}: transformer.{key} is not a WanTransformer3DModel setting; those are "
                             f"{', '.join(TRANSFORMER_SETTINGS)}")
        valid, kind = TRANSFORMER_SETTINGS[key]
        if not valid(value):
            raise InputError(f"{what}: transformer.{key} must be {kind}, got {value!r}")
    return config


def build_transformer(transformer_config: dict, device="cpu") -> WanTransformer3DModel:
    """A randomly initialised fp32 DiT of the given diffusers config (keys starting with _ ignored)."""
    config = {k: v for k, v in transformer_config.items() if not k.startswith("_")}
    return WanTransformer3DModel(**config).to(device=device)


def config_matching(state: dict[str, torch.Tensor], what: str) -> dict:
    """The shipped config whose DiT shapes fit a state dict (diffusers keys)."""
    dim, in_channels = state["patch_embedding.weight"].shape[:2]
    indices = {k.split(".")[1] for k in state if k.startswith("blocks.")}
    if not indices or not all(i.isdigit() for i in indices):
        raise InputError(f"{what}: no transformer blocks (blocks.0., blocks.1., ...); this is not a whole Wan2.1 DiT")
    num_layers = 1 + max(map(int, indices))
    for config in shipped_configs().values():
        t = config["transformer"]
        if t["num_attention_heads"] * t["attention_head_dim"] == dim and t["num_layers"] == num_layers:
            if t["in_channels"] != in_channels:
                raise InputError(
                    f"{what}: has {in_channels} input channels but Wan2.1 I2V needs {t['in_channels']} "
                    "(a T2V checkpoint cannot animate a portrait)"
                )
            return config
    raise InputError(
        f"{what}: no shipped config fits a DiT of width {dim} with {num_layers} layers; pass a model config JSON"
    )


def load_transformer_file(
    path: str | os.PathLike, config: dict | str | None = None, dtype=torch.float32, keep_stored: bool = True
) -> tuple[WanTransformer3DModel, dict]:
    """Load a single-file Wan2.1 DiT (original or diffusers keys; fp32/bf16/fp16/fp8, ComfyUI's fp8_scaled too).

    The model is created on the meta device and the file's tensors are assigned into it, so the weights
    exist once in memory. The blocks' fp8 Linear weights stay as stored (`StoredLinear`, computing in
    `dtype` one layer at a time) unless `keep_stored` is False; everything else is cast to `dtype`, and
    an fp8_scaled weight that is upcast gets its `scale_weight` applied.
    """
    what = f"Wan2.1 DiT file {Path(path).name}"
    state = load_state_dict(path, what)
    for key in list(state):  # ComfyUI's fp8 markers and input scales: not weights
        if strip_original_prefix(key) == "scaled_fp8" or key.endswith(".scale_input"):
            del state[key]
    if is_original_layout(state):
        state = original_to_diffusers(state, what)
    scales = {key[: -len(".scale_weight")]: state.pop(key) for key in list(state) if key.endswith(".scale_weight")}
    finite_tensors({f"{key}.scale_weight": scale for key, scale in scales.items()}, what)  # one number each: cheap
    if "patch_embedding.weight" not in state:
        raise InputError(f"{what}: no patch_embedding.weight; this is not a Wan2.1 DiT checkpoint")
    model_config = read_model_config(config) if config is not None else config_matching(state, what)
    with torch.device("meta"):
        model = build_transformer(model_config["transformer"], device="meta")
    check_state_fits(model, state, what)
    unscaled = sorted(set(scales) - {key.rpartition(".")[0] for key in state})
    if unscaled:
        raise InputError(f"{what}: scale_weight for {unscaled[0]}, which has no weight")
    stored = []
    for key in state:  # one tensor at a time, so the file never exists twice at full size; each checked finite as it is
        module, _, param = key.rpartition(".")
        tensor = state[key]
        if (keep_stored and tensor.dtype in FP8_DTYPES and param == "weight" and key.startswith("blocks.")
                and isinstance(model.get_submodule(module), torch.nn.Linear)):
            stored.append(module)
        else:
            tensor = tensor.to(compute_dtype(key, dtype))
            tensor = state[key] = tensor * scales[module].to(tensor.dtype) if param == "weight" and module in scales else tensor
        finite_tensors({key: tensor}, what)
    for module in stored:  # their tensors stay in `state` and are assigned below like every other
        stored_linear = StoredLinear(state[f"{module}.weight"], state.get(f"{module}.bias"), scales.get(module), dtype)
        model.set_submodule(module, stored_linear)
    model.load_state_dict(state, strict=True, assign=True)
    # Non-persistent buffers (rotary tables) are not in the file: compute them for real.
    t = model_config["transformer"]
    model.rope = WanRotaryPosEmbed(t["attention_head_dim"], tuple(t["patch_size"]), t.get("rope_max_seq_len", 1024))
    return model.eval().requires_grad_(False), model_config


def compute_dtype(key: str, dtype: torch.dtype) -> torch.dtype:
    """diffusers keeps Wan's norms, modulation tables and time embedder in fp32 whatever the compute dtype."""
    parts = key.split(".")
    return torch.float32 if any(name in parts for name in WanTransformer3DModel._keep_in_fp32_modules) else dtype


def check_state_fits(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        hint = " (no image cross-attention: is this a T2V model?)" if any("add_k_proj" in k for k in missing) else ""
        raise InputError(f"{what}: {len(missing)} tensors missing, e.g. {missing[0]}{hint}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise InputError(f"{what}: {len(unexpected)} unexpected tensors, e.g. {unexpected[0]}")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise InputError(f"{what}: {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}")


def load_transformer_folder(folder: str | os.PathLike, dtype=torch.float32) -> WanTransformer3DModel:
    """Load a diffusers `transformer/` folder (config.json + safetensors shards) from disk only."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError(f"Wan2.1 DiT folder {folder} has no config.json; expected a diffusers transformer folder")
    model = WanTransformer3DModel.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
    finite_tensors(dict(model.named_parameters()), f"Wan2.1 DiT folder {folder}")
    return model.eval().requires_grad_(False)
