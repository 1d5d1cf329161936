"""Wan2.1 I2V conditioning: umT5 text embeddings, CLIP-vision image features and the VAE latents.

Each encoder loads from a local folder; every sampler input can also be given as a precomputed
tensor, which is how ComfyUI's native encoders feed the same sampler.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..placement import visiting
from .latent_format import denormalize, normalize

TEXT_LEN = 512  # Wan pads every prompt to 512 tokens; diffusers' I2V attention relies on it
VAE_TIME_STRIDE = 4
VAE_SPACE_STRIDE = 8


def _require_folder(folder, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what}: folder not found: {folder}")
    return folder


class TextEncoder:
    """umT5 (transformers `UMT5EncoderModel`) + its tokenizer, as diffusers' Wan pipelines use them."""

    def __init__(self, model_folder, tokenizer_folder, device="cpu", dtype=torch.float32):
        from transformers import AutoTokenizer, UMT5EncoderModel

        self.tokenizer = AutoTokenizer.from_pretrained(_require_folder(tokenizer_folder, "tokenizer"), local_files_only=True)
        self.model = UMT5EncoderModel.from_pretrained(
            _require_folder(model_folder, "text encoder"), local_files_only=True, torch_dtype=dtype
        )
        self.model.eval().requires_grad_(False)
        self.device = torch.device(device)  # where encode runs; the weights wait on the CPU (placement.visiting)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """-> [B, 512, dim]: the prompt's token states followed by zeros (Wan's padding)."""
        tokens = self.tokenizer(
            [" ".join(p.split()) for p in prompts],
            padding="max_length", max_length=TEXT_LEN, truncation=True, add_special_tokens=True, return_tensors="pt",
        )
        with visiting(self.model, self.device) as model:
            mask = tokens.attention_mask.to(self.device)
            states = model(tokens.input_ids.to(self.device), mask).last_hidden_state
            return (states * mask[..., None].to(states.dtype)).float()


class ImageEncoder:
    """CLIP vision (transformers) with its preprocessor config; features are the penultimate hidden states."""

    def __init__(self, model_folder, processor_folder, device="cpu", dtype=torch.float32):
        from transformers import CLIPVisionModel

        config_path = _require_folder(processor_folder, "image processor") / "preprocessor_config.json"
        if not config_path.is_file():
            raise InputError(f"image processor: {config_path} not found")
        config = json.loads(config_path.read_text())
        size = config.get("crop_size") or config.get("size")
        self.size = size if isinstance(size, int) else size.get("height", size.get("shortest_edge"))
        self.mean = torch.tensor(config["image_mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(config["image_std"]).view(1, 3, 1, 1)
        self.model = CLIPVisionModel.from_pretrained(
            _require_folder(model_folder, "image encoder"), local_files_only=True, torch_dtype=dtype
        )
        self.model.eval().requires_grad_(False)
        self.device = torch.device(device)  # where encode runs; the weights wait on the CPU (placement.visiting)

    @torch.no_grad()
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """[H, W, 3] in 0..1 -> [1, tokens, dim] (257 x 1280 for CLIP ViT-H/14)."""
        pixels = image.permute(2, 0, 1)[None].float()
        pixels = F.interpolate(pixels, size=(self.size, self.size), mode="bicubic", align_corners=False).clamp(0, 1)
        pixels = (pixels - self.mean) / self.std
        with visiting(self.model, self.device) as model:
            param = next(model.parameters())
            out = model(pixel_values=pixels.to(param.device, param.dtype), output_hidden_states=True)
            return out.hidden_states[-2].float()


class WanVAE:
    """diffusers `AutoencoderKLWan`, with Wan's latent normalisation (mean/std per channel)."""

    def __init__(self, folder, device="cpu", dtype=torch.float32):
        from diffusers import AutoencoderKLWan

        self.model = AutoencoderKLWan.from_pretrained(
            _require_folder(folder, "VAE"), local_files_only=True, torch_dtype=dtype
        )
        self.model.eval().requires_grad_(False)
        self.device = torch.device(device)  # where encode/decode run; the weights wait on the CPU (placement.visiting)
        self.mean, self.std = tuple(self.model.config.latents_mean), tuple(self.model.config.latents_std)

    @property
    def z_dim(self) -> int:
        return self.model.config.z_dim

    def set_tiling(self, tile: int | None = 256, overlap: int = 64) -> None:
        """Encode and decode in spatial tiles of `tile` pixels that overlap by `overlap` and are blended (diffusers'
        tiling, as upstream decodes): memory of one tile instead of the whole frame. None turns it off.
        Tiles see less context than the whole frame, so the picture can differ slightly at their joins."""
        if tile is None:
            self.model.disable_tiling()
            return
        if tile < 64 or not 0 <= overlap < tile or tile % 8 or overlap % 8:
            raise InputError(f"VAE tiles must be at least 64 px with an overlap below the tile, both multiples of 8; "
                             f"got tile {tile}, overlap {overlap}")
        self.model.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                                 tile_sample_stride_height=tile - overlap, tile_sample_stride_width=tile - overlap)

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] in -1..1 -> normalised latents [B, z, (T-1)/4+1, H/8, W/8] (distribution mode)."""
        with visiting(self.model, self.device) as model:
            param = next(model.parameters())
            latents = model.encode(video.to(param.device, param.dtype)).latent_dist.mode().float().cpu()
        return normalize(latents, self.mean, self.std)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [1, z, F, h, w] -> frames [T, H, W, 3] in 0..1."""
        raw = denormalize(latents.cpu(), self.mean, self.std)
        with visiting(self.model, self.device) as model:
            param = next(model.parameters())
            video = model.decode(raw.to(param.device, param.dtype)).sample.float().cpu()
        return ((video[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)


def open_vae(folder, device="cpu", dtype=torch.float32):
    """The latent space of a model's vae/ folder: the pixel latent (models.pixel_latent) or a Wan VAE (diffusers)."""
    from .pixel_latent import SpaceToDepthVAE, is_pixel_latent_folder

    return SpaceToDepthVAE.from_folder(folder) if is_pixel_latent_folder(folder) else WanVAE(folder, device, dtype)


def known_frames_mask(num_frames: int, latent_height: int, latent_width: int, known: int = 1) -> torch.Tensor:
    """Wan's I2V mask [1, 4, F_latent, h, w]: 1 for the `known` leading video frames (the first repeated 4x), 0 elsewhere."""
    mask = torch.zeros(1, num_frames + VAE_TIME_STRIDE - 1, latent_height, latent_width)
    mask[:, :VAE_TIME_STRIDE + known - 1] = 1
    return mask.view(1, -1, VAE_TIME_STRIDE, latent_height, latent_width).transpose(1, 2)


def i2v_condition(known_latents: torch.Tensor, num_frames: int, known: int = 1) -> torch.Tensor:
    """Mask channels + latents of [known frames (the portrait), zeros...] -> the DiT's extra input [1, 4+z, F, h, w]."""
    _, _, latent_frames, height, width = known_latents.shape
    mask = known_frames_mask(num_frames, height, width, known)
    if mask.shape[2] != latent_frames:
        raise InputError(f"condition latents have {latent_frames} frames; {num_frames} video frames need {mask.shape[2]}")
    return torch.cat([mask.to(known_latents.dtype), known_latents], dim=1)


def pad_text_embeddings(embeddings: torch.Tensor, name: str = "text embeddings", width: int | None = None) -> torch.Tensor:
    """[1, L, dim] prompt states (ComfyUI keeps only the real tokens) -> [1, 512, dim] zero-padded, as Wan."""
    if embeddings.ndim != 3 or embeddings.shape[0] != 1:
        raise InputError(f"{name}: expected [1, tokens, dim], got shape {tuple(embeddings.shape)}")
    if width is not None and embeddings.shape[2] != width:
        raise InputError(f"{name}: {embeddings.shape[2]}-wide text features, but this model takes {width} "
                         "(Wan2.1 uses umT5-XXL, 4096): encode the prompt with the Wan text encoder (CLIPLoader type wan)")
    if not torch.isfinite(embeddings).all():
        raise InputError(f"{name}: contains NaN or infinite values (a damaged text encoder?)")
    tokens = embeddings.shape[1]
    if tokens >= TEXT_LEN:
        return embeddings[:, :TEXT_LEN].float()
    return torch.cat([embeddings.float(), embeddings.new_zeros(1, TEXT_LEN - tokens, embeddings.shape[2]).float()], dim=1)


def video_from_frames(frames: torch.Tensor) -> torch.Tensor:
    """Frames [T, H, W, 3] in 0..1 -> the video a VAE encodes, [1, 3, T, H, W] in -1..1."""
    return frames.permute(3, 0, 1, 2)[None] * 2 - 1


def condition_video(frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Known frames [H, W, 3] or [K, H, W, 3] in 0..1 -> [1, 3, T, H, W] in -1..1: the frames then black (zero)
    frames, as Wan encodes an I2V condition (K = 1: the portrait; more: the end of a video being continued)."""
    known = video_from_frames(frames[None] if frames.ndim == 3 else frames)
    rest = known.new_zeros(1, 3, num_frames - known.shape[2], *known.shape[-2:])
    return torch.cat([known, rest], dim=2)


def encode_i2v_condition(encode, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Known frames ([H, W, 3] the portrait, or [K, H, W, 3] the end of a video being continued) in 0..1 -> the DiT's
    I2V input [1, 4+z, F, h, w] for a `num_frames` video: the frames then black, encoded by `encode` (video
    [1, 3, T, H, W] in -1..1 -> normalised latents), behind Wan's mask of the known frames."""
    known = 1 if frames.ndim == 3 else frames.shape[0]
    return i2v_condition(encode(condition_video(frames, num_frames)), num_frames, known)


def condition_latents(condition: torch.Tensor) -> torch.Tensor:
    """The latents of an I2V condition (what follows its mask channels)."""
    return condition[:, VAE_TIME_STRIDE:]
