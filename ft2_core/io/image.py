"""Portrait input: load, check and resize to the sizes the Wan VAE and DiT accept."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

SIDE_MULTIPLE = 16  # VAE /8 then 2x2 patches
MIN_SIDE = 64
DECODE_MAX_SIDE = 4096  # larger images are shrunk while decoding (the model works at <= 1280)
MAX_PIXELS = 150_000_000  # beyond this a file is refused before decoding (PIL itself refuses above 179 MP)
MAX_ASPECT = 4.0  # longest side / shortest: a portrait; beyond, the video's short side would be a few pixels


def load_image(path: str | os.PathLike) -> torch.Tensor:
    """An image file -> float [H, W, 3] in 0..1 (ComfyUI's IMAGE layout, without the batch)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image: file not found: {path}")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise InputError(f"image: {path} is {width}x{height} ({width * height / 1e6:.0f} megapixels); "
                                 f"give at most {MAX_PIXELS / 1e6:.0f} megapixels")
            img.draft("RGB", (DECODE_MAX_SIDE, DECODE_MAX_SIDE))  # JPEG decodes at 1/2..1/8 scale directly
            img.thumbnail((DECODE_MAX_SIDE, DECODE_MAX_SIDE), Image.LANCZOS, reducing_gap=2.0)
            upright = ImageOps.exif_transpose(img)  # a phone's portrait is stored sideways with an orientation tag
            rgb = np.asarray(upright.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise InputError(f"image: cannot read {path} as an image ({err})") from None
    return checked_image(torch.from_numpy(rgb), str(path))


def checked_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Accept [H, W, 3] or [1, H, W, 3] float 0..1 (or 8-bit integers, scaled); reject tiny, odd-channel, non-finite,
    out-of-range (a 0-255 float image would turn white) and extremely wide or tall images."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise InputError(f"{name}: expected one image, got a batch of {image.shape[0]}")
        image = image[0]
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise InputError(f"{name}: expected [height, width, 3] RGB, got shape {tuple(image.shape)}")
    image = image[..., :3]
    if image.dtype == torch.uint8:
        image = image.float() / 255.0
    elif not image.is_floating_point():
        raise InputError(f"{name}: {image.dtype} pixels; expected floats in 0..1 (ComfyUI's IMAGE) or 8-bit integers")
    image = image.float()
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputError(f"{name}: {width}x{height} is too small; give at least {MIN_SIDE}x{MIN_SIDE} pixels")
    if max(height, width) > MAX_ASPECT * min(height, width):
        raise InputError(f"{name}: {width}x{height} is {max(height, width) / min(height, width):.1f} times longer than wide; "
                         f"crop it to at most {MAX_ASPECT:g}:1 (a portrait)")
    if not torch.isfinite(image).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    low, high = image.min().item(), image.max().item()
    if low < -0.5 or high > 1.5:  # beyond rounding overshoot: another value range, not a 0..1 picture
        raise InputError(f"{name}: values span {low:g}..{high:g}; expected 0..1 (ComfyUI's IMAGE; a 0-255 image must be "
                         "divided by 255)")
    return image.clamp(0, 1)


def target_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """Scale so the longest edge is `max_side`, then round each side up to a multiple of 16 (upstream)."""
    scale = max_side / max(height, width)
    h, w = int(height * scale), int(width * scale)
    return -(-h // SIDE_MULTIPLE) * SIDE_MULTIPLE, -(-w // SIDE_MULTIPLE) * SIDE_MULTIPLE


def fit_image(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """[H, W, 3] -> [h, w, 3] with the longest edge about `max_side` and sides multiples of 16."""
    from PIL import Image

    if max_side < MIN_SIDE or max_side % SIDE_MULTIPLE:
        raise InputError(f"max_side must be a multiple of {SIDE_MULTIPLE} and at least {MIN_SIDE}, got {max_side}")
    image = checked_image(image)
    height, width = target_size(*image.shape[:2], max_side)
    if (height, width) == tuple(image.shape[:2]):
        return image
    pil = Image.fromarray((image.numpy() * 255).round().astype(np.uint8))
    resized = pil.resize((width, height), Image.LANCZOS)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)


def require_multiple_of_16(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """For inputs that are encoded as they are (ComfyUI's native path): sides must already fit."""
    image = checked_image(image, name)
    height, width = image.shape[:2]
    if height % SIDE_MULTIPLE or width % SIDE_MULTIPLE:
        raise InputError(
            f"{name}: {width}x{height} sides must be multiples of {SIDE_MULTIPLE}; "
            f"resize to e.g. {-(-width // 16) * 16}x{-(-height // 16) * 16}"
        )
    return image
