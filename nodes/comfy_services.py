"""ComfyUI's services (folders, devices, progress, cancellation), imported lazily.

Outside ComfyUI (tests, scripts) each falls back to plain behaviour: CPU, no progress bar, no folders.
"""
from __future__ import annotations

import os
from pathlib import Path

import_error_hint = "run `pip install -r requirements.txt` in ComfyUI's Python environment"

# Model folders this extension registers, with the file endings ComfyUI may list in them.
EXTRA_FOLDERS = {
    "ft2_models": {".json", ".safetensors", ".ckpt"},  # model folders: diffusers Wan I2V + adapter + wav2vec2
    "audio_encoders": {".json", ".safetensors", ".bin"},  # wav2vec2 folders (ComfyUI >= 0.3.50 has it already)
    "ft2_gates": {".safetensors"},  # TLPO gates
    "ft2_critics": {".safetensors", ".json"},  # critic LoRAs, and Qwen2.5-Omni thinker folders
    "mediapipe": {".task"},  # face_landmarker.task
}
DIT_SUFFIXES = (".safetensors",)
ADAPTER_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
_header_cache: dict[tuple, list[str]] = {}


def folder_paths():
    try:
        import folder_paths as module
    except ImportError:
        return None
    return module


def register_folders() -> None:
    """Add our model folders to ComfyUI's registry (once; keeps paths users configured)."""
    fp = folder_paths()
    if fp is None:
        return
    for name, extensions in EXTRA_FOLDERS.items():
        if name not in fp.folder_names_and_paths:
            fp.folder_names_and_paths[name] = ([os.path.join(fp.models_dir, name)], set(extensions))


EXAMPLE_INPUTS = Path(__file__).resolve().parents[1] / "example_workflows" / "inputs"


def install_example_inputs() -> list[Path]:
    """Copy the example workflows' portrait and speech into ComfyUI's input folder (never over a user's file),
    so the example graphs run on first open."""
    import shutil

    fp = folder_paths()
    if fp is None or not EXAMPLE_INPUTS.is_dir():
        return []
    target = Path(fp.get_input_directory())
    copied = []
    for source in sorted(EXAMPLE_INPUTS.iterdir()):
        destination = target / source.name
        if source.is_file() and not destination.exists():
            try:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, destination)
                copied.append(destination)
            except OSError:  # a read-only input folder: the user can still upload the files
                pass
    return copied


def list_files(folder: str, suffixes: tuple[str, ...], keys_fit=None) -> list[str]:
    """Files in a ComfyUI model folder that fit: one of `suffixes` and, for safetensors, tensor names that
    `keys_fit(keys)` accepts (read from the header only, cached by size and mtime; an unreadable header never fits)."""
    fp = folder_paths()
    if fp is None:
        return []
    names = []
    for name in fp.get_filename_list(folder):
        if not name.lower().endswith(suffixes):
            continue
        if keys_fit is not None and name.lower().endswith(".safetensors"):
            keys = safetensors_keys(fp.get_full_path(folder, name))
            if keys is None or not keys_fit(keys):
                continue
        names.append(name)
    return sorted(names)


def containing(marker: str):
    """A `keys_fit` for list_files: some tensor name contains `marker`."""
    return lambda keys: any(marker in key for key in keys)


def wan_loras() -> list[str]:
    """The Wan2.1 LoRA files in models/loras (other models' LoRAs and unreadable files are left out)."""
    from ..ft2_core.tlpo.lora_formats import is_wan_lora

    return list_files("loras", (".safetensors",), is_wan_lora)


def safetensors_keys(path: str) -> list[str] | None:
    """Tensor names of a safetensors file from its JSON header; None when it cannot be read."""
    import json
    import struct

    try:
        stat = os.stat(path)
        cache_key = (path, stat.st_size, stat.st_mtime_ns)
        if cache_key not in _header_cache:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                _header_cache[cache_key] = [k for k in json.loads(handle.read(length)) if k != "__metadata__"]
        return _header_cache[cache_key]
    except (OSError, ValueError, struct.error):
        return None


def list_model_dirs(folder: str, marker: str) -> list[str]:
    """Sub-folders of a ComfyUI model folder that contain `marker` (e.g. config.json)."""
    fp = folder_paths()
    if fp is None:
        return []
    found = set()
    for root in fp.get_folder_paths(folder):
        if os.path.isdir(root):
            found.update(
                entry.name for entry in os.scandir(root) if entry.is_dir() and os.path.exists(os.path.join(entry.path, marker))
            )
    return sorted(found)


def resolve_file(folder: str, name: str, what: str) -> Path:
    fp = folder_paths()
    path = fp.get_full_path(folder, name) if fp is not None else None
    if path is None or not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: {name!r} not found in models/{folder}")
    return Path(path)


def resolve_dir(folder: str, name: str, what: str) -> Path:
    fp = folder_paths()
    for root in fp.get_folder_paths(folder) if fp is not None else []:
        if os.path.isdir(os.path.join(root, name)):
            return Path(root, name)
    raise FileNotFoundError(f"{what}: folder {name!r} not found in models/{folder}")


def torch_device():
    try:
        import comfy.model_management as mm
    except ImportError:
        import torch

        return torch.device("cpu")
    return mm.get_torch_device()


def offload_device():
    try:
        import comfy.model_management as mm
    except ImportError:
        import torch

        return torch.device("cpu")
    return mm.unet_offload_device()


def make_room(nbytes: int, device) -> None:
    """Ask ComfyUI's model management to unload what other models hold on `device` until `nbytes` are free
    (its own `free_memory`, as its loaders call it before loading)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.free_memory(nbytes, device)


def default_blocks_to_swap(num_layers: int) -> int:
    """Blocks to keep on the CPU when the user chose none: ComfyUI's --lowvram swaps half, --novram all, else none."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return 0
    return {mm.VRAMState.LOW_VRAM: num_layers // 2, mm.VRAMState.NO_VRAM: num_layers}.get(mm.vram_state, 0)


def free_cached_memory() -> None:
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.soft_empty_cache()


def interrupt_check():
    """A callable that raises ComfyUI's interruption when the user cancels (None outside ComfyUI)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return None
    return mm.throw_exception_if_processing_interrupted


def run_progress(decode_preview=None):
    """A RunProgress on ComfyUI's bar (a silent one outside ComfyUI): cancel is honoured at every unit, and step
    previews follow ComfyUI's preview setting (off with --preview-method none). Wan2.1 latents use ComfyUI's
    own Wan2.1 previewer; `decode_preview(latents) -> frames [T, H, W, 3]` serves other latent spaces."""
    from ..ft2_core.progress import RunProgress

    try:
        import comfy.utils
    except ImportError:
        return RunProgress(check_interrupt=interrupt_check())

    previewer = latent_previewer(decode_preview)
    bar = None

    def report(done, total, preview):
        nonlocal bar
        if bar is None or bar.total != total:
            bar = comfy.utils.ProgressBar(total)
        bar.update_absolute(done, total, previewer(preview) if preview is not None and previewer is not None else None)

    return RunProgress(report, interrupt_check())


def latent_previewer(decode_preview=None):
    """latents -> ComfyUI's preview tuple, or None when previews are off."""
    try:
        import latent_preview
        from comfy.cli_args import LatentPreviewMethod, args
    except ImportError:
        return None
    if args.preview_method == LatentPreviewMethod.NoPreviews:
        return None
    if decode_preview is not None:
        from PIL import Image

        def show(latents):
            frames = decode_preview(latents)
            middle = (frames[frames.shape[0] // 2].clamp(0, 1) * 255).byte().numpy()
            return "JPEG", Image.fromarray(middle), latent_preview.MAX_PREVIEW_RESOLUTION

        return show
    import comfy.latent_formats

    previewer = latent_preview.get_previewer(torch_device(), comfy.latent_formats.Wan21())
    if previewer is None:
        return None
    return lambda latents: previewer.decode_latent_to_preview_image("JPEG", latents.to(torch_device()))


def show_first_frame(frames=None, latents=None) -> None:
    """After a run, put the finished video's first frame under the node in place of the last step preview (ComfyUI
    keeps showing the newest one): decoded `frames` [T, H, W, 3] in 0..1, or Wan2.1 `latents` [1, z, F, h, w] through
    ComfyUI's previewer. Nothing outside ComfyUI or when previews are off."""
    try:
        import comfy.utils
        import latent_preview
        from comfy.cli_args import LatentPreviewMethod, args
    except ImportError:
        return
    if args.preview_method == LatentPreviewMethod.NoPreviews:
        return
    if frames is not None:
        from PIL import Image

        first = Image.fromarray((frames[0].clamp(0, 1) * 255).byte().cpu().numpy())
        picture = ("JPEG", first, latent_preview.MAX_PREVIEW_RESOLUTION)
    else:
        previewer = latent_previewer()
        if previewer is None:
            return
        picture = previewer(latents[:, :, :1])
    comfy.utils.ProgressBar(1).update_absolute(1, 1, picture)
