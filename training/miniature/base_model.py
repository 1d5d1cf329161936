"""The miniature base model's settings and how a model is built from them: shared by its trainer and by the
evaluation, which rebuilds the untrained model the trainer starts from."""
from __future__ import annotations

import torch

from ft2_core.miniature.model import CONFIG
from ft2_core.models.audio_adapter import AudioAdapter
from ft2_core.models.talking_model import FantasyTalkingModel
from ft2_core.models.wan_transformer import build_transformer
from training.common.config import Option

SCHEMA = {
    # prediction: what the DiT outputs (models.talking_model). "sample_from_reference" (shipped) holds each latent frame's
    # 4 frames alike (frame-hold ratio 3.64 on validation); "sample_with_skip" moves every frame (1.07) but leaves grainy
    # frames (quality 0.008 against 0.507): training/miniature/results/base_candidates_validation.md
    # latent: overrides of the pixel latent (models.pixel_latent), e.g. { time_basis = "haar", latent_std = [...] }
    "model": {"transformer": Option(dict, {}), "audio_adapter": Option(dict, {}), "latent": Option(dict, {}),
              "prediction": Option(str, CONFIG["prediction"], choices=("sample_from_reference", "sample_with_skip"))},
    "world": {"frames": Option(int, 33, minimum=5), "size": Option(int, 64, minimum=16)},
    "train": {"output": Option(str), "export": Option(str, ""), "steps": Option(int, 1800, minimum=1),
              "batch_size": Option(int, 8, minimum=1), "lr": Option(float, 1e-3, above=0), "warmup": Option(int, 50, minimum=0),
              "weight_decay": Option(float, 0.01, minimum=0), "ema": Option(float, 0.995, minimum=0, maximum=1),
              "audio_dropout": Option(float, 0.15, minimum=0, maximum=1), "pool": Option(int, 256, minimum=1),
              "refresh": Option(int, 1, minimum=0), "seed": Option(int, 0, minimum=0),
              "checkpoint_every": Option(int, 100, minimum=1), "allow_changes": Option(list, [])},
}


def build_model(config: dict, seed: int) -> FantasyTalkingModel:
    torch.manual_seed(seed)
    transformer_config = {**CONFIG["transformer"], **config["model"]["transformer"]}
    adapter_config = {**CONFIG["audio_adapter"], **config["model"]["audio_adapter"]}
    dit = build_transformer(transformer_config)
    dim = transformer_config["num_attention_heads"] * transformer_config["attention_head_dim"]
    adapter = AudioAdapter(transformer_config["num_layers"], dim, **adapter_config)
    return FantasyTalkingModel(dit, adapter, config["model"]["prediction"])
