"""ComfyUI's native path: Wan's DiT and the FantasyTalking adapter as a MODEL-like input, ComfyUI's own text, CLIP
and VAE nodes for the rest, and one sampler (the same as the all-in-one path's) behind FT2 Sampler."""
from __future__ import annotations

from ..ft2_core.errors import InputError
from ..ft2_core.sampling.options import LIMITS, UPSTREAM_FPS, WindowOptions
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

WEIGHT_DTYPES = ("as stored", "compute dtype")


class ComfyVAECodec:
    """ComfyUI's VAE (pixels [T, H, W, 3] in 0..1 <-> raw latents) as ft2_core's FrameCodec (normalised latents,
    video [1, 3, T, H, W] in -1..1): what continuation uses to start each window from the last frames."""

    def __init__(self, vae):
        self.vae = vae

    def encode(self, video):
        from ..ft2_core.models.latent_format import normalize

        pixels = ((video[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)
        return normalize(self.vae.encode(pixels).float().cpu())

    def decode(self, latents):
        from ..ft2_core.models.latent_format import denormalize

        frames = self.vae.decode(denormalize(latents))
        return frames.reshape(-1, *frames.shape[-3:]).float().cpu()


class FT2ModelLoader:
    DESCRIPTION = (
        "Loads the Wan2.1-I2V-14B DiT and the FantasyTalking audio adapter from models/diffusion_models "
        "(single .safetensors DiT in original or diffusers keys, fp32/bf16/fp16/fp8, ComfyUI's fp8_scaled too; adapter .ckpt "
        "or .safetensors)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "dit_name": (
                    comfy.list_files("diffusion_models", comfy.DIT_SUFFIXES, comfy.containing("patch_embedding.")),
                    {"tooltip": "wan2.1_i2v_720p_14B_*.safetensors (or 480p)."},
                ),
                "adapter_name": (
                    comfy.list_files("diffusion_models", comfy.ADAPTER_SUFFIXES, comfy.containing("proj_model.")),
                    {"tooltip": "fantasytalking_model.ckpt or its .safetensors conversion."},
                ),
                "dtype": (DTYPES, {"default": "auto", "tooltip": "Compute precision."}),
                "weight_dtype": (
                    WEIGHT_DTYPES,
                    {
                        "default": WEIGHT_DTYPES[0],
                        "tooltip": (
                            "as stored: an fp8 file's block weights stay fp8 (about half the memory of bf16), each layer "
                            "computing in the compute precision; compute dtype: upcast every weight on load."
                        ),
                    },
                ),
                **LOADER_MEMORY_INPUTS,
            }
        }

    @says_what_to_install
    def load(self, dit_name, adapter_name, dtype, weight_dtype=WEIGHT_DTYPES[0], blocks_to_swap=0, attention="sdpa"):
        from ..ft2_core.models.attention import check_backend
        from ..ft2_core.pipeline import load_talking_model

        dit = comfy.resolve_file("diffusion_models", dit_name, "Wan2.1 DiT")
        adapter = comfy.resolve_file("diffusion_models", adapter_name, "FantasyTalking adapter")
        model = load_talking_model(
            dit, adapter, torch_dtype(dtype, comfy.torch_device()), keep_stored=weight_dtype == WEIGHT_DTYPES[0]
        )
        model.attention = check_backend(attention)
        return (model.swap_blocks(blocks_to_swap or comfy.default_blocks_to_swap(model.num_layers)),)


class FT2Wav2VecLoader:
    DESCRIPTION = (
        "Loads a wav2vec2 folder (e.g. wav2vec2-base-960h: config, weights, preprocessor config) from models/audio_encoders."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_WAV2VEC",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "wav2vec_folder": (
                    comfy.list_model_dirs("audio_encoders", "preprocessor_config.json"),
                    {"tooltip": "A wav2vec2 folder in models/audio_encoders."},
                ),
            }
        }

    @says_what_to_install
    def load(self, wav2vec_folder):
        from ..ft2_core.models.wav2vec import Wav2VecEncoder

        return (Wav2VecEncoder(comfy.resolve_dir("audio_encoders", wav2vec_folder, "wav2vec2")),)


class FT2AudioEmbeds:
    DESCRIPTION = (
        "Turns an AUDIO into wav2vec2 features for exactly the frames to generate (the whole audio by default, "
        "any length). Outputs the features, the audio trimmed or padded to the video (for CreateVideo) and the frame count."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_AUDIO_EMBEDS", "AUDIO", "INT")
    RETURN_NAMES = ("audio_embeds", "audio", "num_frames")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "wav2vec": ("FT2_WAV2VEC", {"tooltip": "From FT2 Load wav2vec2."}),
                "audio": ("AUDIO", {"tooltip": "The speech; any rate and channel count."}),
                "fps": fps_input(f"Video frame rate ({UPSTREAM_FPS:g} upstream)."),
                "num_frames": frame_count_input(
                    AUTOMATIC, "Frames to generate (4k+1: 5, 9, ..., 81, ...); 1 follows the whole audio (or max_seconds of it)."
                ),
                "max_seconds": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        "min": 0.0,
                        "max": LIMITS["max_seconds"][1],
                        "step": 0.5,
                        "tooltip": "Use only the first seconds of the audio; 0 uses all of it.",
                    },
                ),
            }
        }

    @says_what_to_install
    def encode(self, wav2vec, audio, fps, num_frames, max_seconds=0.0):
        from ..ft2_core.io.audio import clip_for_video, fit_to_duration
        from ..ft2_core.pipeline import encode_speech, plan_frames

        clip = audio_input(audio)
        num_frames = plan_frames(clip, fps, frames_or_automatic(num_frames), max_seconds or None)
        samples = clip_for_video(clip, num_frames, fps)
        progress = comfy.run_progress()
        progress.plan(len(wav2vec.chunks(len(samples))))

        def work(device):  # the weights visit the device for this call only (ft2_core.placement)
            wav2vec.device = device
            return encode_speech(wav2vec, samples, progress).cpu()

        features = run_on_device([], work)
        embeds = {"features": features, "num_frames": num_frames, "fps": fps}
        return (embeds, comfy_audio(fit_to_duration(clip, num_frames / fps)), num_frames)


class FT2Sampler:
    DESCRIPTION = (
        "Samples a FantasyTalking video from native inputs: CLIPTextEncode CONDITIONING (umT5), "
        "CLIPVisionEncode output, a start IMAGE (sides multiples of 16) encoded with the Wan VAE, and FT2 audio "
        "embeds. Audio longer than one window is animated in windows (long_method). Returns a LATENT for the "
        "native VAEDecode."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("FT2_MODEL", {"tooltip": "From FT2 Load Model."}),
                "positive": ("CONDITIONING", {"tooltip": "Prompt encoded with the Wan umT5 text encoder."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative prompt encoded with the same encoder."}),
                "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "CLIPVisionEncode of the start image (crop: none)."}),
                "vae": ("VAE", {"tooltip": "The Wan2.1 VAE, to encode the start image."}),
                "start_image": ("IMAGE", {"tooltip": "The portrait; sides must be multiples of 16 (use ImageScale)."}),
                "audio_embeds": ("FT2_AUDIO_EMBEDS", {"tooltip": "From FT2 Audio Embeds."}),
                **SAMPLER_INPUTS,
                **long_video_inputs(
                    WINDOWS.window_frames,
                    f"Frames per window (4k+1): the model's trained length, {WINDOWS.window_frames} for Wan2.1.",
                    minimum_window=5,
                ),
                **MEMORY_INPUTS,
            },
            "optional": OPTIONAL_TLPO_INPUTS,
        }

    @says_what_to_install
    def sample(
        self,
        model,
        positive,
        negative,
        clip_vision_output,
        vae,
        start_image,
        audio_embeds,
        experts=(),
        gate=None,
        long_method=WINDOWS.method,
        window_frames=WINDOWS.window_frames,
        overlap_frames=WINDOWS.overlap_frames,
        loras=(),
        **kwargs,
    ):
        import torch

        from ..ft2_core.io.image import require_multiple_of_16
        from ..ft2_core.models.conditioning import encode_i2v_condition, pad_text_embeddings
        from ..ft2_core.models.latent_format import denormalize
        from ..ft2_core.pipeline import EncodedVideo, ExpertMix, generate_latents

        options = sampler_options(kwargs)
        windows = WindowOptions(long_method, window_frames, overlap_frames).validate()
        image = require_multiple_of_16(start_image[:1], "start_image")
        num_frames = audio_embeds["num_frames"]
        codec = ComfyVAECodec(vae)
        progress = comfy.run_progress()
        progress.plan(options.steps * len(windows.windows(num_frames)))
        with progress.watching(getattr(vae, "first_stage_model", None)):  # ComfyUI's VAE: cancel between its layers
            condition = encode_i2v_condition(codec.encode, image, windows.first_window_frames(num_frames))
        config = model.transformer.config
        positive_text = pad_text_embeddings(positive[0][0], "positive conditioning", config.text_dim)
        negative_text = pad_text_embeddings(negative[0][0], "negative conditioning", config.text_dim)
        clip = clip_vision_output["penultimate_hidden_states"][:1].float()
        if not torch.isfinite(clip).all():
            raise InputError("clip_vision_output: contains NaN or infinite values (a damaged CLIP vision model?)")
        if clip.shape[-1] != config.image_dim:
            raise InputError(
                f"clip_vision_output: {clip.shape[-1]}-wide image features, but this model takes {config.image_dim} "
                "(Wan2.1 I2V uses CLIP ViT-H/14, 1280): load clip_vision_h"
            )
        video = EncodedVideo(condition, positive_text, negative_text, clip, audio_embeds["features"], num_frames)
        dtype = next(model.transformer.parameters()).dtype

        def work(device):
            with progress.watching(getattr(vae, "first_stage_model", None)):  # continuation re-encodes window ends
                return generate_latents(
                    model,
                    video,
                    options,
                    windows,
                    ExpertMix(experts, gate, loras),
                    device=device,
                    dtype=dtype,
                    codec=codec,
                    on_step=lambda info: progress.advance(preview=info.denoised),
                    check_interrupt=progress.interrupt_point,
                )

        latents = run_on_device([model], work)
        comfy.show_first_frame(latents=latents)
        return ({"samples": denormalize(latents)},)


NODE_CLASS_MAPPINGS = {
    "FT2ModelLoader": FT2ModelLoader,
    "FT2Wav2VecLoader": FT2Wav2VecLoader,
    "FT2AudioEmbeds": FT2AudioEmbeds,
    "FT2Sampler": FT2Sampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FT2ModelLoader": "FT2 Load Model (Wan2.1 + FantasyTalking)",
    "FT2Wav2VecLoader": "FT2 Load wav2vec2",
    "FT2AudioEmbeds": "FT2 Audio Embeds",
    "FT2Sampler": "FT2 Sampler",
}
