"""What every node family shares: the category, clean errors, dtypes, ComfyUI's AUDIO, and running on its device."""
from __future__ import annotations

import functools

from ..ft2_core.errors import InputError
from . import comfy_services as comfy

CATEGORY = "FantasyTalking2"
DTYPES = ("auto", "bf16", "fp16", "fp32")


def says_what_to_install(function):
    """Node errors read cleanly in ComfyUI: a missing dependency names the package, and bad input is a plain
    ValueError (ComfyUI shows an exception's module path, which for our classes is built from the install folder)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ModuleNotFoundError as err:
            raise RuntimeError(f"FantasyTalking2 needs the Python package '{err.name}': {comfy.import_error_hint}") from None
        except InputError as err:
            raise ValueError(str(err)) from None

    return wrapper


def torch_dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.bfloat16 if getattr(device, "type", str(device)) == "cuda" else torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def comfy_audio(audio):
    """Our Audio -> ComfyUI's AUDIO dict."""
    import torch

    return {"waveform": torch.from_numpy(audio.waveform)[None], "sample_rate": audio.sample_rate}


def audio_input(audio):
    """ComfyUI's AUDIO dict -> our Audio, checked."""
    from ..ft2_core.io.audio import audio_from_waveform

    return audio_from_waveform(audio["waveform"], audio["sample_rate"], "audio input")


def run_on_device(modules, work):
    """Make room in ComfyUI's model management for what will visit the device, move modules (anything with `.to`;
    a pipeline's parts visit one at a time, see FantasyTalkingPipeline.to) to ComfyUI's device for `work`, then
    offload and return the cached memory."""
    from ..ft2_core.placement import device_bytes

    device = comfy.torch_device()
    comfy.make_room(max((device_bytes(m) for m in modules), default=0), device)
    try:
        for module in modules:
            getattr(module, "place", module.to)(device)  # a model with swapped blocks leaves those on the CPU
        return work(device)
    finally:
        for module in modules:
            getattr(module, "place", module.to)(comfy.offload_device())
        comfy.free_cached_memory()
