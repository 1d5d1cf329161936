"""The all-in-one path: one folder holds every part of a FantasyTalking model; one node animates a portrait."""
from __future__ import annotations

from ..ft2_core.sampling.options import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, LIMITS, UPSTREAM_FPS
from . import comfy_services as comfy
from .node_helpers import CATEGORY, DTYPES, audio_input, comfy_audio, run_on_device, says_what_to_install, torch_dtype
from .sampling_widgets import (
    AUTOMATIC,
    LOADER_MEMORY_INPUTS,
    MEMORY_INPUTS,
    OPTIONAL_TLPO_INPUTS,
    SAMPLER_INPUTS,
    WINDOWS,
    fps_input,
    frame_count_input,
    frames_or_automatic,
    long_video_inputs,
    sampler_options,
)

MINIATURE_MODEL = "(built-in miniature model: cartoon faces)"
TINY_MODEL = "(built-in tiny demo model)"


class FT2PipelineLoader:
    DESCRIPTION = ("Loads a self-contained FantasyTalking model folder from models/ft2_models (diffusers Wan2.1-I2V "
                   "folder + FantasyTalking adapter + wav2vec2), or a built-in one: the miniature model (trained on "
                   "drawn cartoon faces at 64x64; it talks, but only for faces of that world) or the tiny demo model "
                   "(random weights, for checking a graph fast; not a talking face).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_PIPELINE",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        folders = comfy.list_model_dirs("ft2_models", "transformer")
        return {"required": {
            "model_folder": ([MINIATURE_MODEL, TINY_MODEL] + folders,
                             {"tooltip": "A folder in models/ft2_models, or a built-in model (miniature: cartoon faces; "
                                         "tiny: random weights)."}),
            "dtype": (DTYPES, {"default": "auto", "tooltip": "Compute precision; auto = bf16 on GPU, fp32 on CPU."}),
            "vae_tile": ("INT", {"default": 0, "min": 0, "max": 1024, "step": 64, "tooltip": (
                "Encode and decode in overlapping tiles of this many pixels (e.g. 256): the VAE then needs the memory of "
                "one tile, not of a whole 720p frame. 0: whole frames. (The native path: use VAE Decode (Tiled).)")}),
            **LOADER_MEMORY_INPUTS,
        }}

    @says_what_to_install
    def load(self, model_folder, dtype, vae_tile=0, blocks_to_swap=0, attention="sdpa"):
        from ..ft2_core.builtin_models import model_folder as builtin_folder
        from ..ft2_core.model_paths import ModelPaths
        from ..ft2_core.pipeline import FantasyTalkingPipeline

        builtin = {MINIATURE_MODEL: "miniature", TINY_MODEL: "tiny"}
        if model_folder in builtin:
            folder = builtin_folder(builtin[model_folder])
        else:
            folder = comfy.resolve_dir("ft2_models", model_folder, "model folder")
        pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(folder), "cpu", torch_dtype(dtype, comfy.torch_device()),
                                                 vae_tile=vae_tile or None, attention=attention)
        pipe.model.swap_blocks(blocks_to_swap or comfy.default_blocks_to_swap(pipe.model.num_layers))  # 0: ComfyUI's choice
        return (pipe,)


class FT2Animate:
    DESCRIPTION = ("Portrait IMAGE + speech AUDIO + prompt -> video frames and the matching audio (trimmed or padded "
                   "to the video). Feed both to CreateVideo. The frame count follows the whole audio unless set; audio "
                   "longer than the model's trained length is animated in windows (long_method).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "AUDIO")
    RETURN_NAMES = ("frames", "audio")
    FUNCTION = "animate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "pipeline": ("FT2_PIPELINE", {"tooltip": "From FT2 Load Pipeline."}),
            "image": ("IMAGE", {"tooltip": "The portrait to animate (first image of the batch)."}),
            "audio": ("AUDIO", {"tooltip": "The speech that drives the lips and motion."}),
            "prompt": ("STRING", {"default": DEFAULT_PROMPT, "multiline": True, "tooltip": "What the video shows."}),
            "negative_prompt": ("STRING", {"default": "", "multiline": True,
                                           "tooltip": "What to avoid; empty uses Wan's standard negative prompt."}),
            "max_side": ("INT", {"default": 0, "min": 0, "max": LIMITS["max_side"][1], "step": 16,
                                 "tooltip": "Longest video side in pixels, sides rounded to multiples of 16; "
                                            "0 uses the model's recommendation (512 for Wan2.1, 128 for the tiny demo)."}),
            "num_frames": frame_count_input(AUTOMATIC, "Frames to generate (4k+1: 5, 9, ..., 81, ...); 1 follows the whole "
                                                       "audio (or max_seconds of it)."),
            "fps": fps_input(f"Video frame rate ({UPSTREAM_FPS:g} upstream)."),
            **SAMPLER_INPUTS,
            "max_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": LIMITS["max_seconds"][1], "step": 0.5,
                                      "tooltip": "Animate only the first seconds of the audio; 0 animates all of it."}),
            **long_video_inputs(AUTOMATIC, "Frames per window (4k+1); 1 uses the model's trained length (81 for Wan2.1, "
                                           "33 for the miniature model)."),
            **MEMORY_INPUTS,
        }, "optional": OPTIONAL_TLPO_INPUTS}

    @says_what_to_install
    def animate(
        self,
        pipeline,
        image,
        audio,
        prompt,
        negative_prompt,
        max_side,
        num_frames,
        fps,
        experts=(),
        gate=None,
        max_seconds=0.0,
        long_method=WINDOWS.method,
        window_frames=AUTOMATIC,
        overlap_frames=WINDOWS.overlap_frames,
        loras=(),
        **kwargs,
    ):
        from ..ft2_core.io.audio import fit_to_duration

        options = sampler_options(kwargs)
        windows = pipeline.window_options(long_method, frames_or_automatic(window_frames), overlap_frames)
        clip = audio_input(audio)
        negative = negative_prompt.strip() or DEFAULT_NEGATIVE_PROMPT
        cheap_decode = None if hasattr(pipeline.vae, "model") else pipeline.vae.decode  # the pixel latent decodes instantly
        result = run_on_device(
            [pipeline],
            lambda device: pipeline.animate(
                image[0],
                clip,
                prompt,
                negative,
                options,
                num_frames=frames_or_automatic(num_frames),
                fps=fps,
                max_side=max_side or None,
                progress=comfy.run_progress(cheap_decode),
                experts=experts,
                gate=gate,
                windows=windows,
                max_seconds=max_seconds or None,
                loras=loras,
            ),
        )
        comfy.show_first_frame(frames=result.frames)
        track = fit_to_duration(result.audio, result.frames.shape[0] / result.fps)
        return (result.frames.cpu().float(), comfy_audio(track))


NODE_CLASS_MAPPINGS = {"FT2PipelineLoader": FT2PipelineLoader, "FT2Animate": FT2Animate}
NODE_DISPLAY_NAME_MAPPINGS = {"FT2PipelineLoader": "FT2 Load Pipeline (all-in-one)", "FT2Animate": "FT2 Animate Portrait"}
