"""The widgets the two sampler nodes share, with their defaults read from ft2_core's option dataclasses."""
from __future__ import annotations

from ..ft2_core.models.attention import BACKENDS
from ..ft2_core.sampling.flow import SCHEDULERS
from ..ft2_core.sampling.options import FRAME_CAP, LIMITS, METHODS, UPSTREAM_FPS, SamplerOptions, WindowOptions

SAMPLER = SamplerOptions()
WINDOWS = WindowOptions()
AUTOMATIC = 1  # a frame widget at its minimum, 1, means "automatic": too short to be a video, and the frontend's snap of 0


def frame_count_input(default: int, tooltip: str, minimum: int = AUTOMATIC, maximum: int = FRAME_CAP) -> tuple:
    """An INT widget that holds only 4k+1 values in ComfyUI's frontend: it snaps typed values and arrow steps to
    min + k*step, so min must itself be 4k+1 (1 for "automatic", else at least 5)."""
    return ("INT", {"default": default, "min": minimum, "max": maximum, "step": 4, "tooltip": tooltip})


def frames_or_automatic(value: int) -> int | None:
    """A frame widget's value, None where it asks for the automatic choice."""
    return None if value == AUTOMATIC else value

SAMPLER_INPUTS = {
    "steps": ("INT", {"default": SAMPLER.steps, "min": LIMITS["steps"][0], "max": LIMITS["steps"][1],
                      "tooltip": f"Denoising steps ({SAMPLER.steps} upstream)."}),
    "cfg": (
        "FLOAT",
        {
            "default": SAMPLER.cfg,
            "min": LIMITS["cfg"][0],
            "max": LIMITS["cfg"][1],
            "step": 0.1,
            "tooltip": f"Prompt guidance scale ({SAMPLER.cfg:g} upstream).",
        },
    ),
    "audio_cfg": (
        "FLOAT",
        {
            "default": SAMPLER.audio_cfg,
            "min": LIMITS["audio_cfg"][0],
            "max": LIMITS["audio_cfg"][1],
            "step": 0.1,
            "tooltip": "Audio guidance scale: higher follows the speech more closely (3-7 works well).",
        },
    ),
    "audio_cfg_start": (
        "FLOAT",
        {
            "default": SAMPLER.audio_cfg_start,
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "Fraction of the steps where audio guidance starts.",
        },
    ),
    "audio_cfg_end": (
        "FLOAT",
        {
            "default": SAMPLER.audio_cfg_end,
            "min": 0.0,
            "max": 1.0,
            "step": 0.01,
            "tooltip": "Fraction of the steps where audio guidance ends (outside: plain prompt guidance, audio on).",
        },
    ),
    "shift": (
        "FLOAT",
        {
            "default": SAMPLER.shift,
            "min": LIMITS["shift"][0],
            "max": LIMITS["shift"][1],
            "step": 0.1,
            "tooltip": f"Flow-matching sigma shift ({SAMPLER.shift:g} upstream).",
        },
    ),
    "scheduler": (list(SCHEDULERS), {"default": SAMPLER.scheduler, "tooltip": "Euler (upstream) or UniPC."}),
    "seed": (
        "INT",
        {
            "default": SAMPLER.seed,
            "min": 0,
            "max": 0xFFFFFFFFFFFFFFFF,
            "control_after_generate": True,
            "tooltip": "Noise seed: the same seed gives the same video.",
        },
    ),
    "audio_scale": (
        "FLOAT",
        {
            "default": SAMPLER.audio_scale,
            "min": LIMITS["audio_scale"][0],
            "max": LIMITS["audio_scale"][1],
            "step": 0.05,
            "tooltip": "Strength of the audio cross-attention inside the model.",
        },
    ),
}

MEMORY_INPUTS = {
    "sequential_rows": (
        "BOOLEAN",
        {
            "default": SAMPLER.sequential_rows,
            "tooltip": (
                "Run the guidance predictions (up to 3 per step) one after another instead of as one batch: the activation "
                "memory of one, same video, somewhat slower."
            ),
        },
    ),
    "ffn_chunk_tokens": (
        "INT",
        {
            "default": SAMPLER.ffn_chunk_tokens,
            "min": 0,
            "max": 1024 * 1024,  # a multiple of the step: the frontend snaps to it
            "step": 1024,
            "tooltip": (
                "Run each block's feed-forward on this many tokens at a time (0: all at once): bounds its wide hidden layer, "
                "same video. 8192 suits 14B at 720p."
            ),
        },
    ),
}

LOADER_MEMORY_INPUTS = {
    "blocks_to_swap": (
        "INT",
        {
            "default": 0,
            "min": 0,
            "max": 40,
            "tooltip": (
                "Keep this many DiT blocks in CPU memory, each copied to the GPU just before it runs (the next one "
                "while the current runs): less GPU memory, some speed. 0: none, or ComfyUI's choice under --lowvram "
                "(half) and --novram (all)."
            ),
        },
    ),
    "attention": (
        list(BACKENDS),
        {
            "default": "sdpa",
            "tooltip": (
                "Attention kernel: PyTorch SDPA (always there), or flash-attention / SageAttention when that package "
                "is installed."
            ),
        },
    ),
}

OPTIONAL_TLPO_INPUTS = {
    "experts": ("FT2_EXPERTS", {"tooltip": "TLPO LoRA experts from FT2 Load Experts (optional)."}),
    "gate": (
        "FT2_GATE",
        {
            "tooltip": "How to mix the experts: FT2 Load Gate or FT2 Expert Schedule; "
            "without it every expert has weight 1 times its strength."
        },
    ),
    "loras": ("FT2_LORAS", {"tooltip": "Other Wan LoRAs at a fixed strength beside the experts: FT2 Load LoRA (optional)."}),
}


def fps_input(tooltip: str, maximum: float = LIMITS["fps"][1]) -> tuple:
    return ("FLOAT", {"default": UPSTREAM_FPS, "min": LIMITS["fps"][0], "max": maximum, "step": 1.0, "tooltip": tooltip})


def long_video_inputs(default_window: int, window_tooltip: str, minimum_window: int = AUTOMATIC) -> dict:
    """How audio longer than the model's trained length is animated (ft2_core.sampling.long_video), as widgets."""
    return {
        "long_method": (
            list(METHODS),
            {
                "default": WINDOWS.method,
                "tooltip": (
                    "Audio longer than one window: sliding = overlapping windows fused at every step (each hears its own audio "
                    "and sees the portrait); continuation = each window starts from the last frames of the one before; "
                    "single = everything in one window (memory grows with length; for comparison)."
                ),
            },
        ),
        "window_frames": frame_count_input(default_window, window_tooltip, minimum_window, maximum=LIMITS["window_frames"][1]),
        "overlap_frames": (
            "INT",
            {
                "default": WINDOWS.overlap_frames,
                "min": LIMITS["overlap_frames"][0],
                "max": LIMITS["overlap_frames"][1],
                "step": 4,
                "tooltip": "Frames shared by neighbouring windows (multiple of 4; continuation: "
                "the next window starts from the last overlap - 3 frames).",
            },
        ),
    }


def sampler_options(kwargs) -> SamplerOptions:
    """The node's sampler and memory widgets as checked SamplerOptions."""
    chosen = {name: kwargs[name] for name in (*SAMPLER_INPUTS, *MEMORY_INPUTS) if name in kwargs}
    return SamplerOptions(**chosen).validate()
