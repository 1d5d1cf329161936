"""TLPO nodes: load the three LoRA experts, load or define their mix, and show what a gate does."""
from __future__ import annotations

from ..ft2_core.dimensions import DIMENSION_NAMES, LABELS
from ..ft2_core.sampling.options import LIMITS
from . import comfy_services as comfy
from .node_helpers import CATEGORY, says_what_to_install

NONE = "none"


class FT2LoadExperts:
    DESCRIPTION = (f"Loads up to three TLPO LoRA experts ({', '.join(LABELS.values())}) from models/loras, "
                   "each with its own strength. Any LoRA layout works (ComfyUI, musubi-tuner, diffusers, DiffSynth, "
                   "diffusion-pipe); files are checked against the model when sampling.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_EXPERTS",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        loras = [NONE] + comfy.wan_loras()
        inputs = {}
        for name in DIMENSION_NAMES:
            inputs[f"{name}_lora_name"] = (loras, {"default": NONE, "tooltip": f"The {LABELS[name]} expert, or none."})
            low, high = LIMITS["strength"]
            inputs[f"{name}_strength"] = ("FLOAT", {"default": 1.0, "min": low, "max": high, "step": 0.05,
                                                   "tooltip": f"Multiplies the {LABELS[name]} expert's update."})
        return {"required": inputs}

    @says_what_to_install
    def load(self, **kwargs):
        from ..ft2_core.tlpo.experts import Expert
        from ..ft2_core.tlpo.lora_formats import load_lora

        experts = []
        for name in DIMENSION_NAMES:
            if kwargs[f"{name}_lora_name"] != NONE:
                source = f"FT2 Load Experts {name}_lora_name {kwargs[f'{name}_lora_name']!r}"
                path = comfy.resolve_file("loras", kwargs[f"{name}_lora_name"], source)
                experts.append(Expert(name, load_lora(path, source), kwargs[f"{name}_strength"], source))
        if not experts:
            raise ValueError("FT2 Load Experts: choose at least one expert file")
        return (experts,)


class FT2LoadLora:
    DESCRIPTION = ("Loads any other Wan LoRA from models/loras (a step-distillation or style LoRA) to apply at a fixed "
                   "strength beside the TLPO experts, through the same fused path (nothing is merged into the model). "
                   "Chain several through `loras`.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_LORAS",)
    RETURN_NAMES = ("loras",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "lora_name": (comfy.wan_loras(), {"tooltip": "A Wan2.1 LoRA file (files of other models are not listed)."}),
                "strength": (
                    "FLOAT",
                    {"default": 1.0, "min": LIMITS["strength"][0], "max": LIMITS["strength"][1], "step": 0.05,
                     "tooltip": "Multiplies the LoRA's update."},
                ),
            },
            "optional": {"loras": ("FT2_LORAS", {"tooltip": "LoRAs loaded before this one (optional)."})},
        }

    @says_what_to_install
    def load(self, lora_name, strength, loras=()):
        from ..ft2_core.tlpo.experts import Expert
        from ..ft2_core.tlpo.lora_formats import load_lora

        source = f"FT2 Load LoRA lora_name {lora_name!r}"
        path = comfy.resolve_file("loras", lora_name, source)
        lora = Expert(f"lora{len(loras)}", load_lora(path, source), strength, source)
        return (list(loras) + [lora],)


class FT2LoadGate:
    DESCRIPTION = "Loads a trained TLPO gate (models/ft2_gates): per-layer, per-timestep weights for the three experts."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_GATE",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "gate_name": (
                    comfy.list_files("ft2_gates", (".safetensors",)),
                    {"tooltip": "A gate file written by python -m training.train_gate."},
                )
            }
        }

    @says_what_to_install
    def load(self, gate_name):
        from ..ft2_core.tlpo.gate import load_gate

        return (load_gate(comfy.resolve_file("ft2_gates", gate_name, "gate")),)


class FT2ExpertSchedule:
    DESCRIPTION = (
        "Mixes the experts without a trained gate: one line per timestep point, 't: motion, lipsync, quality' "
        "(t from 1000 = pure noise to 0 = clean), linear in between; a single line is a fixed mix."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_GATE",)
    FUNCTION = "build"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "schedule": (
                    "STRING",
                    {
                        "default": "1000: 1.0, 0.6, 0.4\n0: 0.6, 1.0, 1.0",
                        "multiline": True,
                        "tooltip": "Lines 't: w_motion, w_lipsync, w_quality' (weights for the experts in the order loaded).",
                    },
                ),
            }
        }

    @says_what_to_install
    def build(self, schedule):
        from ..ft2_core.tlpo.gate import ScheduledMix, parse_schedule

        first = next((line for line in schedule.splitlines() if ":" in line), "")
        points, weights = parse_schedule(schedule, len(first.split(":", 1)[-1].split(",")))
        return (ScheduledMix(points, weights),)


class FT2GateHeatmap:
    DESCRIPTION = "Draws a gate as an IMAGE: expert weight per DiT layer (rows) and timestep (columns), one panel per expert."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "draw"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "gate": ("FT2_GATE", {"tooltip": "A trained gate or a schedule."}),
                "num_layers": (
                    "INT",
                    {
                        "default": 40,
                        "min": 1,
                        "max": 100,
                        "tooltip": "Rows to draw for a schedule (a trained gate uses its own layer count).",
                    },
                ),
            }
        }

    @says_what_to_install
    def draw(self, gate, num_layers):
        import torch

        from ..ft2_core.tlpo.gate_plot import render_gate

        layers = getattr(gate, "num_layers", num_layers)
        names = getattr(gate, "experts", ()) or DIMENSION_NAMES[: gate.num_experts]
        pixels = render_gate(gate.cpu(), layers, tuple(names))
        return (torch.from_numpy(pixels).float().div(255)[None],)


NODE_CLASS_MAPPINGS = {
    "FT2LoadExperts": FT2LoadExperts,
    "FT2LoadGate": FT2LoadGate,
    "FT2LoadLora": FT2LoadLora,
    "FT2ExpertSchedule": FT2ExpertSchedule,
    "FT2GateHeatmap": FT2GateHeatmap,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FT2LoadExperts": "FT2 Load Experts (TLPO)",
    "FT2LoadGate": "FT2 Load Gate (TLPO)",
    "FT2LoadLora": "FT2 Load LoRA (fixed strength)",
    "FT2ExpertSchedule": "FT2 Expert Schedule",
    "FT2GateHeatmap": "FT2 Gate Heatmap",
}
