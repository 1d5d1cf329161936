"""The miniature base model's settings and how a model is built from them: shared by its trainer and by the
evaluation, which rebuilds the untrained model the trainer starts from."""
from __future__ import annotations

import json

import torch

from ft2_core.errors import InputError
from ft2_core.miniature.model import CONFIG
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, Clip, make_clip
from ft2_core.models.audio_adapter import AudioAdapter
from ft2_core.models.conditioning import condition_latents, encode_i2v_condition, video_from_frames
from ft2_core.models.deviation_prior import measure_prior
from ft2_core.models.pixel_latent import SpaceToDepthVAE
from ft2_core.models.talking_model import FantasyTalkingModel
from ft2_core.models.wan_transformer import build_transformer
from training.common.config import Option, resolve
from training.common.data_order import mix_seed

SCHEMA = {
    # prediction: what the DiT outputs (models.talking_model). "sample_from_reference" on the plain time slots holds each
    # latent frame's 4 frames alike (frame-hold ratio 3.64 on validation), on the linear time basis (shipped) it does
    # not (1.03); "sample_with_skip" passes the noisy latents under a prior measured on the training clips
    # (deviation_prior): training/miniature/results/base_candidates_validation.md
    # latent: overrides of the pixel latent (models.pixel_latent), e.g. { time_basis = "linear" }; vae: a trained Wan VAE
    # folder (training.miniature.train_vae) in its place, the DiT's latent channels then its z_dim
    "model": {"transformer": Option(dict, {}), "audio_adapter": Option(dict, {}), "latent": Option(dict, {}),
              "vae": Option(str, ""),
              "prediction": Option(str, CONFIG["prediction"], choices=("sample_from_reference", "sample_with_skip"))},
    "world": {"frames": Option(int, 33, minimum=5), "size": Option(int, 64, minimum=16)},
    "train": {"output": Option(str), "export": Option(str, ""), "steps": Option(int, 1800, minimum=1),
              "batch_size": Option(int, 8, minimum=1), "lr": Option(float, 1e-3, above=0), "warmup": Option(int, 50, minimum=0),
              "weight_decay": Option(float, 0.01, minimum=0), "ema": Option(float, 0.995, minimum=0, maximum=1),
              "audio_dropout": Option(float, 0.15, minimum=0, maximum=1), "mouth_weight": Option(float, 0.0, minimum=0),
              "pool": Option(int, 256, minimum=1),
              "refresh": Option(int, 1, minimum=0), "refresh_every": Option(int, 1, minimum=1),
              "seed": Option(int, 0, minimum=0),
              "checkpoint_every": Option(int, 100, minimum=1), "allow_changes": Option(list, [])},
}


PRIOR_CLIPS = 256  # training clips the skip prediction's prior is measured on (2 million latent vectors)


def training_clip(seed: int, index: int, frames: int, size: int) -> Clip:
    """Clip `index` of a run's stream of training-split world clips."""
    return make_clip(mix_seed(seed, index) % HELD_OUT_SEEDS_FROM, frames, size)


def deviation_prior(config: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The prior of prediction "sample_with_skip" (models.deviation_prior): the clean latents' change from the
    reference frame, as the model sees it, over the run's first PRIOR_CLIPS training clips."""
    if config["model"].get("vae", ""):
        raise InputError('model.prediction = "sample_with_skip" measures its prior on the pixel latent; model.vae is set')
    vae = SpaceToDepthVAE(**{**CONFIG["latent"], **config["model"]["latent"]})
    frames, size = config["world"]["frames"], config["world"]["size"]
    deviations = []
    for index in range(PRIOR_CLIPS):
        clip = training_clip(seed, index, frames, size)
        latents = vae.encode(video_from_frames(torch.from_numpy(clip.frames)))
        portrait = torch.from_numpy(clip.portrait)
        reference = condition_latents(encode_i2v_condition(vae.encode, portrait, frames))[:, :, :1]
        deviations.append((latents - reference).movedim(1, -1).flatten(0, -2))
    return measure_prior(torch.cat(deviations))


def latent_channels(config: dict) -> dict:
    """The DiT's input and output channels for a trained Wan VAE (noisy latents, Wan's 4 mask channels, the I2V
    condition's latents); none for the pixel latent (ft2_miniature.json's)."""
    folder = config["model"].get("vae", "")
    if not folder:
        return {}
    if config["model"]["latent"]:
        raise InputError("model.latent overrides the pixel latent and model.vae replaces it: give one of them")
    vae_config = resolve(folder) / "config.json"
    if not vae_config.is_file():
        raise InputError(f"model.vae: no config.json in {folder}; is it training.miniature.train_vae's vae folder?")
    z = json.loads(vae_config.read_text())["z_dim"]
    return {"in_channels": 2 * z + 4, "out_channels": z}


def build_model(config: dict, seed: int, prior: tuple[torch.Tensor, torch.Tensor] | None = None) -> FantasyTalkingModel:
    """The untrained model of `config`; prediction "sample_with_skip" takes its `prior` (see deviation_prior)."""
    torch.manual_seed(seed)
    transformer_config = {**CONFIG["transformer"], **latent_channels(config), **config["model"]["transformer"]}
    adapter_config = {**CONFIG["audio_adapter"], **config["model"]["audio_adapter"]}
    dit = build_transformer(transformer_config)
    dim = transformer_config["num_attention_heads"] * transformer_config["attention_head_dim"]
    adapter = AudioAdapter(transformer_config["num_layers"], dim, **adapter_config)
    return FantasyTalkingModel(dit, adapter, config["model"]["prediction"], prior)
