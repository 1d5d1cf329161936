"""Which attention kernel the DiT's self-attention and text/image cross-attention run on.

PyTorch SDPA is the default and always there. flash-attention and SageAttention are optional: picked by
the user, used when installed (through diffusers' attention dispatch), never required. The FantasyTalking
audio attention (at most 17 keys per latent frame, with a padding mask for the windows at the video's
edges) always runs in SDPA, whose masking is exact, whatever the backend.
"""
from __future__ import annotations

import importlib.util
from contextlib import contextmanager

from ..errors import InputError

BACKENDS = {"sdpa": None, "flash": "flash", "sage": "sage"}  # ours -> diffusers' attention backend
PACKAGES = {"flash": ("flash_attn", "flash-attn"), "sage": ("sageattention", "sageattention")}  # import name, pip name


def check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise InputError(f"attention must be one of {tuple(BACKENDS)}, got {name!r}")
    if name in PACKAGES and importlib.util.find_spec(PACKAGES[name][0]) is None:
        raise InputError(f"attention {name!r} needs the optional package {PACKAGES[name][1]} "
                         f"(pip install {PACKAGES[name][1]}); or use sdpa, the default")
    return name


@contextmanager
def attention_kernel(name: str):
    """Run the enclosed DiT forward with backend `name` (no-op for sdpa)."""
    if BACKENDS[check_backend(name)] is None:
        yield
        return
    from diffusers.models.attention_dispatch import attention_backend

    with attention_backend(BACKENDS[name]):
        yield
