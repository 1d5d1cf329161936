"""Accuracy of fp8 weights kept as stored, on the tiny model and on 1.3B-shaped Wan blocks (CPU, fp32 compute).

For each model: its fp32 DiT is written as an fp8_e4m3fn single file and as ComfyUI's fp8_scaled (a per-tensor
scale per block Linear), then loaded twice, weights kept as stored and upcast on load. Reported: the largest
difference between the two loads (the stored path should change nothing), and each fp8 file's error against
the fp32 original (what fp8 itself costs), relative to the output's largest magnitude.

    python -m bench.fp8_accuracy [--blocks 2] [--tokens 1024]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from bench.fusion_overhead import WAN_1_3B
from ft2_core.models.wan_keys import diffusers_to_original
from ft2_core.models.wan_transformer import build_transformer, load_transformer_file
from ft2_core.tiny import TINY_CONFIG


def fp8_files(state: dict, folder: Path) -> dict[str, Path]:
    plain, scaled = {}, {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, tensor in diffusers_to_original(state).items():
        module, _, param = key.rpartition(".")
        if key.startswith("blocks.") and param == "weight" and tensor.ndim == 2:
            plain[key] = tensor.to(torch.float8_e4m3fn)
            scale = tensor.abs().max() / 448.0
            scaled[key] = (tensor / scale).to(torch.float8_e4m3fn)
            scaled[f"{module}.scale_weight"] = scale.reshape(1)
        else:
            plain[key] = scaled[key] = tensor
    paths = {"fp8_e4m3fn": folder / "plain.safetensors", "fp8_scaled": folder / "scaled.safetensors"}
    save_file({k: v.contiguous() for k, v in plain.items()}, str(paths["fp8_e4m3fn"]))
    save_file({k: v.contiguous() for k, v in scaled.items()}, str(paths["fp8_scaled"]))
    return paths


def forward(model, inputs):
    with torch.no_grad():
        x = torch.cat([inputs["latents"], inputs["condition"]], dim=1)
        return model(x, inputs["timestep"], inputs["text"], inputs["image"], return_dict=False)[0]


def measure(name: str, config: dict, tokens: int) -> None:
    torch.manual_seed(0)
    original = build_transformer(config["transformer"]).eval()
    frames = max(1, tokens // 256)
    inputs = dict(
        latents=torch.randn(1, config["transformer"]["out_channels"], frames, 32, 32),
        condition=torch.randn(1, config["transformer"]["in_channels"] - config["transformer"]["out_channels"], frames, 32, 32),
        timestep=torch.tensor([500.0]),
        text=torch.randn(1, 512, config["transformer"]["text_dim"]),
        image=torch.randn(1, 257, config["transformer"]["image_dim"]) if config["transformer"].get("image_dim") else None,
    )
    reference = forward(original, inputs)
    size = reference.abs().max()
    with tempfile.TemporaryDirectory() as folder:
        for layout, path in fp8_files(original.state_dict(), Path(folder)).items():
            kept, _ = load_transformer_file(path, config)
            upcast, _ = load_transformer_file(path, config, keep_stored=False)
            out_kept, out_upcast = forward(kept, inputs), forward(upcast, inputs)
            print(
                f"{name:>10} {layout:>10}: stored vs upcast max |diff| {float((out_kept - out_upcast).abs().max()):.2e}, "
                f"fp8 vs fp32 max |diff| / max |out| {float((out_kept - reference).abs().max() / size):.4f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=1024)
    args = parser.parse_args()
    measure("tiny", TINY_CONFIG, args.tokens)
    wan = {**WAN_1_3B, "num_layers": args.blocks, "in_channels": 36, "image_dim": 1280, "added_kv_proj_dim": 1536}
    measure("1.3B-shape", {"transformer": wan}, args.tokens)


if __name__ == "__main__":
    main()
