"""Load the repository the way ComfyUI loads a custom node folder, with stand-ins for ComfyUI's services."""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "custom_nodes_ft2_under_test"


def load_as_custom_node(name: str = PACKAGE):
    """ComfyUI's loader: spec from the folder's __init__.py under a made-up module name."""
    spec = importlib.util.spec_from_file_location(name, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_folder_paths(models_dir: Path) -> types.ModuleType:
    """A stand-in for ComfyUI's `folder_paths` with the functions and registry our nodes use."""
    fp = types.ModuleType("folder_paths")
    fp.models_dir = str(models_dir)
    fp.folder_names_and_paths = {
        name: ([str(models_dir / name)], {".safetensors", ".ckpt", ".pt", ".pth", ".bin"})
        for name in ("diffusion_models", "loras", "vae", "text_encoders", "clip_vision")
    }

    def get_folder_paths(folder):
        return fp.folder_names_and_paths[folder][0]

    def get_filename_list(folder):
        paths, extensions = fp.folder_names_and_paths[folder]
        names = []
        for root in paths:
            for dirpath, _, files in os.walk(root):
                for f in files:
                    if not extensions or os.path.splitext(f)[1] in extensions:
                        names.append(os.path.relpath(os.path.join(dirpath, f), root))
        return sorted(names)

    def get_full_path(folder, name):
        for root in get_folder_paths(folder):
            path = os.path.join(root, name)
            if os.path.isfile(path):
                return path
        return None

    def get_input_directory():
        return str(models_dir.parent / "input")

    fp.get_folder_paths, fp.get_filename_list, fp.get_full_path = get_folder_paths, get_filename_list, get_full_path
    fp.get_input_directory = get_input_directory
    return fp


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, tiny_dir):
    """A ComfyUI-like models/ tree holding the tiny model's files where users put the real ones."""
    import shutil

    from safetensors.torch import save_file

    from ft2_core.models.wan_keys import diffusers_to_original
    from ft2_core.models.wan_transformer import load_transformer_folder

    root = tmp_path_factory.mktemp("models")
    (root / "diffusion_models").mkdir()
    dit = load_transformer_folder(tiny_dir / "transformer")
    save_file({f"model.diffusion_model.{k}": v.contiguous() for k, v in diffusers_to_original(dit.state_dict()).items()},
              str(root / "diffusion_models" / "tiny_wan_i2v.safetensors"))
    shutil.copy(tiny_dir / "audio_adapter.safetensors", root / "diffusion_models" / "tiny_fantasytalking.safetensors")
    (root / "diffusion_models" / "notes.txt").write_text("not a model")
    shutil.copytree(tiny_dir / "wav2vec2", root / "audio_encoders" / "tiny-wav2vec2")
    shutil.copytree(tiny_dir, root / "ft2_models" / "tiny-folder")
    write_tlpo_files(root, dit)
    return root


def write_tlpo_files(root: Path, dit) -> None:
    """Three tiny experts in models/loras and a trained-looking gate in models/ft2_gates."""
    import torch

    from ft2_core.models.fused_lora import block_linears
    from ft2_core.tlpo.gate import TimestepLayerGate, save_gate
    from ft2_core.tlpo.lora_formats import LoraModule, LoraWeights, save_expert

    linears = block_linears(dit)
    for seed, dimension in enumerate(("motion", "lipsync", "quality")):
        g = torch.Generator().manual_seed(seed)
        modules = {
            name: LoraModule(
                torch.randn(2, m.in_features, generator=g) * 0.3, torch.randn(m.out_features, 2, generator=g) * 0.3, 2.0
            )
            for name, m in linears.items()
            if name.split(".", 2)[2] in ("self_attn.q", "ffn.0", "cross_attn.o")
        }
        save_expert(LoraWeights(modules, "test"), root / "loras" / f"tiny_{dimension}.safetensors", dimension, "ft2-tiny")
    (root / "loras" / "readme.txt").write_text("not a LoRA")
    gate = TimestepLayerGate(len(dit.blocks), 3, experts=("motion", "lipsync", "quality"))
    with torch.no_grad():
        gate.proj.normal_(generator=torch.Generator().manual_seed(9))
    save_gate(gate, root / "ft2_gates" / "tiny_gate.safetensors")


@pytest.fixture()
def ft2(models_dir, tiny_dir, monkeypatch):
    """The package as ComfyUI sees it, with `folder_paths` present and the tiny model cache in place."""
    monkeypatch.setitem(sys.modules, "folder_paths", make_folder_paths(models_dir))
    monkeypatch.setenv("FT2_CACHE", str(tiny_dir.parent))
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        monkeypatch.delitem(sys.modules, name)
    return load_as_custom_node()


@pytest.fixture()
def model_management(monkeypatch):
    """Install a stand-in comfy.model_management (comfy.utils stays absent: no progress bar)."""
    import types

    from tests.nodes.stand_ins import FakeModelManagement

    def install(vram_state="NORMAL_VRAM"):
        fake = FakeModelManagement(vram_state)
        package = types.ModuleType("comfy")
        package.model_management = fake
        monkeypatch.setitem(sys.modules, "comfy", package)
        monkeypatch.setitem(sys.modules, "comfy.model_management", fake)
        return fake

    return install
