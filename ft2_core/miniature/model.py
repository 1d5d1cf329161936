"""The miniature FantasyTalking model of the talking-face world: its folder, its frozen parts, its inputs.

The model folder has the layout of a real one (diffusers transformer/, the adapter file, wav2vec2/,
umT5/CLIP folders, vae/), so it goes through the real loaders. Only the DiT and the audio adapter
are trained; the encoders are tiny random models of the real classes, kept frozen (the prompt is
constant in this world, CLIP features only echo the portrait, and wav2vec2's random convolutions
still carry the loudness the mouth follows), and the latent space is the fixed pixel latent (or, for a base
trained with model.vae, a Wan VAE trained on the world beforehand: training.miniature.train_vae).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..io.audio import Audio, clip_for_video
from ..models.conditioning import ImageEncoder, TextEncoder, WanVAE, encode_i2v_condition, open_vae, video_from_frames
from ..models.pixel_latent import SpaceToDepthVAE
from ..models.wan_transformer import shipped_configs
from ..models.wav2vec import Wav2VecEncoder
from ..sampling.options import DEFAULT_PROMPT
from .world import Clip

SHIPPED_DIR = Path(__file__).parent / "weights"
CONFIG = shipped_configs()["ft2-miniature"]
NOTICE = ("Using the built-in miniature model: a 1.6M-parameter FantasyTalking DiT trained on procedurally drawn "
          "cartoon faces (64x64). It shows the method working in a miniature world; it is not a real-face model. "
          "Pass --model-dir for real weights.")


def save_frozen_parts(folder: Path, seed: int = 0, latent: dict | None = None, vae: str | Path = "") -> None:
    """The encoders (tiny, random, real classes) and the latent space, written in the real layouts: a trained Wan VAE
    folder (`vae`, training.miniature.train_vae's output) copied, or the pixel latent's config (ft2_miniature.json's
    plain time slots, or with `latent`'s overrides: the shipped model sets time_basis "linear")."""
    from ..tiny import save_tiny_image_encoder, save_tiny_text_encoder, save_tiny_wav2vec

    for offset, save in enumerate((lambda: save_tiny_wav2vec(folder / "wav2vec2"),
                                   lambda: save_tiny_text_encoder(folder / "text_encoder", folder / "tokenizer"),
                                   lambda: save_tiny_image_encoder(folder / "image_encoder", folder / "image_processor"))):
        torch.manual_seed(seed * 10 + offset)
        save()
    if vae:
        shutil.copytree(vae, folder / "vae", dirs_exist_ok=True)
    else:
        SpaceToDepthVAE(**{**CONFIG["latent"], **(latent or {})}).save(folder / "vae")


def write_manifest(folder: Path, produced_by: dict, prediction: str, deviation_prior: str | None = None) -> None:
    manifest = {"name": CONFIG["name"], "notice": NOTICE, "defaults": CONFIG["defaults"], "prediction": prediction,
                **({"deviation_prior": deviation_prior} if deviation_prior else {}),
                "audio_adapter": "audio_adapter.safetensors", "wav2vec": "wav2vec2", "produced_by": produced_by}
    (folder / "ft2_model.json").write_text(json.dumps(manifest, indent=2))


def miniature_model_dir() -> Path:
    """The trained miniature model that ships with the package."""
    return SHIPPED_DIR


def miniature_critic_dir() -> Path:
    """The critic thinker that has learned to watch this world (see its ft2_produced_by.json); a critic LoRA starts here."""
    return Path(__file__).parent / "critic"


@dataclass
class WorldEncoders:
    """The frozen encoders, loaded once; turn world clips into the DiT's inputs."""

    wav2vec: Wav2VecEncoder
    text: torch.Tensor  # [1, 512, text_dim] for DEFAULT_PROMPT
    negative: torch.Tensor
    image_encoder: ImageEncoder
    vae: SpaceToDepthVAE | WanVAE

    @classmethod
    def from_folder(cls, folder: Path) -> "WorldEncoders":
        text_encoder = TextEncoder(folder / "text_encoder", folder / "tokenizer")
        positive, negative = text_encoder.encode([DEFAULT_PROMPT, ""]).split(1)
        return cls(
            Wav2VecEncoder(folder / "wav2vec2"),
            positive,
            negative,
            ImageEncoder(folder / "image_encoder", folder / "image_processor"),
            open_vae(folder / "vae"),
        )

    def clip_inputs(self, clip: Clip) -> dict:
        """Clean latents, I2V condition, CLIP features and wav2vec2 features of one clip (batch of one)."""
        portrait, count = torch.from_numpy(clip.portrait), len(clip.frames)
        return dict(
            latents=self.vae.encode(video_from_frames(torch.from_numpy(clip.frames))),
            condition=self.condition(portrait, count),
            image=self.image_encoder.encode(portrait),
            audio_features=self.audio_features(clip.audio, count, clip.fps),
        )

    def condition(self, portrait: torch.Tensor, num_frames: int) -> torch.Tensor:
        return encode_i2v_condition(self.vae.encode, portrait, num_frames)

    def audio_features(self, audio: Audio, num_frames: int, fps: float) -> torch.Tensor:
        return self.wav2vec.encode(clip_for_video(audio, num_frames, fps))
