"""FantasyTalking inference nodes: the all-in-one path and ComfyUI's native path, one sampler behind both."""
from __future__ import annotations

import functools
import importlib

from . import comfy_services as comfy

CATEGORY = "FantasyTalking2"
MINIATURE_MODEL = "(built-in miniature model: cartoon faces)"
TINY_MODEL = "(built-in tiny demo model)"
DTYPES = ("auto", "bf16", "fp16", "fp32")
WEIGHT_DTYPES = ("as stored", "compute dtype")


def core(module: str):
    """Import an ft2_core module lazily, so a missing dependency breaks only the node that needs it."""
    return importlib.import_module(f"..ft2_core.{module}", __package__)


def says_what_to_install(function):
    """Node errors read cleanly in ComfyUI: a missing dependency names the package, and bad input is a plain
    ValueError (ComfyUI shows an exception's module path, which for our classes is built from the install folder)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ModuleNotFoundError as err:
            raise RuntimeError(f"FantasyTalking2 needs the Python package '{err.name}': {comfy.import_error_hint}") from None
        except core("errors").InputError as err:
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


SAMPLER_INPUTS = {
    "steps": ("INT", {"default": 30, "min": 1, "max": 200, "tooltip": "Denoising steps (30 upstream)."}),
    "cfg": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 20.0, "step": 0.1, "tooltip": "Prompt guidance scale (5 upstream)."}),
    "audio_cfg": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 20.0, "step": 0.1,
                            "tooltip": "Audio guidance scale: higher follows the speech more closely (3-7 works well)."}),
    "audio_cfg_start": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                  "tooltip": "Fraction of the steps where audio guidance starts."}),
    "audio_cfg_end": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                "tooltip": "Fraction of the steps where audio guidance ends (outside: plain prompt guidance, audio on)."}),
    "shift": ("FLOAT", {"default": 5.0, "min": 0.1, "max": 20.0, "step": 0.1, "tooltip": "Flow-matching sigma shift (5 upstream)."}),
    "scheduler": (["euler", "unipc"], {"default": "euler", "tooltip": "Euler (upstream) or UniPC."}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                     "tooltip": "Noise seed: the same seed gives the same video."}),
    "audio_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                              "tooltip": "Strength of the audio cross-attention inside the model."}),
}


def long_video_inputs(default_window: int, window_tooltip: str) -> dict:
    """How audio longer than the model's trained length is animated (ft2_core.sampling.long_video), as widgets."""
    return {
        "long_method": (list(core("sampling.long_video").METHODS), {"default": "sliding", "tooltip": (
            "Audio longer than one window: sliding = overlapping windows fused at every step (each hears its own audio "
            "and sees the portrait); continuation = each window starts from the last frames of the one before; "
            "single = everything in one window (memory grows with length; for comparison).")}),
        "window_frames": ("INT", {"default": default_window, "min": 0, "max": 1001, "step": 4, "tooltip": window_tooltip}),
        "overlap_frames": ("INT", {"default": 16, "min": 4, "max": 160, "step": 4,
                                   "tooltip": "Frames shared by neighbouring windows (multiple of 4; continuation: "
                                              "the next window starts from the last overlap - 3 frames)."}),
    }


FRAME_CAP = 100_000  # num_frames widgets: any length the audio asks for


class ComfyVAECodec:
    """ComfyUI's VAE (pixels [T, H, W, 3] in 0..1 <-> raw latents) as ft2_core's FrameCodec (normalised latents,
    video [1, 3, T, H, W] in -1..1): what continuation uses to start each window from the last frames."""

    def __init__(self, vae):
        self.vae = vae

    def encode(self, video):
        pixels = ((video[0].permute(1, 2, 3, 0) + 1) / 2).clamp(0, 1)
        return core("models.latent_format").normalize(self.vae.encode(pixels).float().cpu())

    def decode(self, latents):
        frames = self.vae.decode(core("models.latent_format").denormalize(latents))
        return frames.reshape(-1, *frames.shape[-3:]).float().cpu()


OPTIONAL_TLPO_INPUTS = {
    "experts": ("FT2_EXPERTS", {"tooltip": "TLPO LoRA experts from FT2 Load Experts (optional)."}),
    "gate": ("FT2_GATE", {"tooltip": "How to mix the experts: FT2 Load Gate or FT2 Expert Schedule; "
                                     "without it every expert has weight 1 times its strength."}),
    "loras": ("FT2_LORAS", {"tooltip": "Other Wan LoRAs at a fixed strength beside the experts: FT2 Load LoRA (optional)."}),
}


MEMORY_INPUTS = {
    "sequential_rows": ("BOOLEAN", {"default": False, "tooltip": (
        "Run the guidance predictions (up to 3 per step) one after another instead of as one batch: the activation "
        "memory of one, same video, somewhat slower.")}),
    "ffn_chunk_tokens": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "step": 1024, "tooltip": (
        "Run each block's feed-forward on this many tokens at a time (0: all at once): bounds its wide hidden layer, "
        "same video. 8192 suits 14B at 720p.")}),
}


LOADER_MEMORY_INPUTS = {
    "blocks_to_swap": ("INT", {"default": 0, "min": 0, "max": 40, "tooltip": (
        "Keep this many DiT blocks in CPU memory, each copied to the GPU just before it runs (the next one "
        "while the current runs): less GPU memory, some speed. 0: none, or ComfyUI's choice under --lowvram "
        "(half) and --novram (all).")}),
    "attention": (["sdpa", "flash", "sage"], {"default": "sdpa", "tooltip": (
        "Attention kernel: PyTorch SDPA (always there), or flash-attention / SageAttention when that package "
        "is installed.")}),
}


def sampler_options(kwargs):
    options = core("sampling.sampler").SamplerOptions
    memory = {name: kwargs[name] for name in MEMORY_INPUTS if name in kwargs}
    return options(**{name: kwargs[name] for name in SAMPLER_INPUTS}, **memory).validate()


def run_on_device(modules, work):
    """Make room in ComfyUI's model management for what will visit the device, move modules (anything with `.to`;
    a pipeline's parts visit one at a time, see FantasyTalkingPipeline.to) to ComfyUI's device for `work`, then
    offload and return the cached memory."""
    device = comfy.torch_device()
    device_bytes = core("placement").device_bytes
    comfy.make_room(max((device_bytes(m) for m in modules), default=0), device)
    try:
        for module in modules:
            getattr(module, "place", module.to)(device)  # a model with swapped blocks leaves those on the CPU
        return work(device)
    finally:
        for module in modules:
            getattr(module, "place", module.to)(comfy.offload_device())
        comfy.free_cached_memory()


# ---------------------------------------------------------------- all-in-one path
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
        pipeline = core("pipeline")
        if model_folder == MINIATURE_MODEL:
            folder = core("miniature.model").miniature_model_dir()
        elif model_folder == TINY_MODEL:
            folder = core("tiny").tiny_model_dir()
        else:
            folder = comfy.resolve_dir("ft2_models", model_folder, "model folder")
        paths = pipeline.ModelPaths.from_folder(folder)
        pipe = pipeline.FantasyTalkingPipeline.from_paths(paths, "cpu", torch_dtype(dtype, comfy.torch_device()),
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
            "prompt": ("STRING", {"default": "A person is talking.", "multiline": True, "tooltip": "What the video shows."}),
            "negative_prompt": ("STRING", {"default": "", "multiline": True,
                                           "tooltip": "What to avoid; empty uses Wan's standard negative prompt."}),
            "max_side": ("INT", {"default": 0, "min": 0, "max": 1280, "step": 16,
                                 "tooltip": "Longest video side in pixels, sides rounded to multiples of 16; "
                                            "0 uses the model's recommendation (512 for Wan2.1, 128 for the tiny demo)."}),
            "num_frames": ("INT", {"default": 0, "min": 0, "max": FRAME_CAP, "step": 4,
                                   "tooltip": "Frames to generate (4k+1); 0 follows the whole audio (or max_seconds of it)."}),
            "fps": ("FLOAT", {"default": 23.0, "min": 1.0, "max": 60.0, "step": 1.0, "tooltip": "Video frame rate (23 upstream)."}),
            **SAMPLER_INPUTS,
            "max_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0, "step": 0.5,
                                      "tooltip": "Animate only the first seconds of the audio; 0 animates all of it."}),
            **long_video_inputs(0, "Frames per window (4k+1); 0 uses the model's trained length (81 for Wan2.1, "
                                   "33 for the miniature model)."),
            **MEMORY_INPUTS,
        }, "optional": OPTIONAL_TLPO_INPUTS}

    @says_what_to_install
    def animate(self, pipeline, image, audio, prompt, negative_prompt, max_side, num_frames, fps, experts=(), gate=None,
                max_seconds=0.0, long_method="sliding", window_frames=0, overlap_frames=16, loras=(), **kwargs):
        from_waveform = core("models.audio").audio_from_waveform
        options = sampler_options(kwargs)
        windows = pipeline.window_options(long_method, window_frames or None, overlap_frames)
        clip = from_waveform(audio["waveform"], audio["sample_rate"], "audio input")
        negative = negative_prompt.strip() or core("pipeline").DEFAULT_NEGATIVE_PROMPT
        cheap_decode = None if hasattr(pipeline.vae, "model") else pipeline.vae.decode  # the pixel latent decodes instantly
        result = run_on_device([pipeline], lambda device: pipeline.animate(
            image[0], clip, prompt, negative, options, num_frames=num_frames or None, fps=fps, max_side=max_side or None,
            progress=comfy.run_progress(cheap_decode), experts=experts, gate=gate, windows=windows,
            max_seconds=max_seconds or None, loras=loras,
        ))
        track = core("models.audio").fit_to_duration(result.audio, result.frames.shape[0] / result.fps)
        return (result.frames.cpu().float(), comfy_audio(track))


# ---------------------------------------------------------------- native path
class FT2ModelLoader:
    DESCRIPTION = ("Loads the Wan2.1-I2V-14B DiT and the FantasyTalking audio adapter from models/diffusion_models "
                   "(single .safetensors DiT in original or diffusers keys, fp32/bf16/fp16/fp8, ComfyUI's fp8_scaled too; adapter .ckpt "
                   "or .safetensors).")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_MODEL",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "dit_name": (comfy.list_files("diffusion_models", comfy.DIT_SUFFIXES, "patch_embedding."),
                         {"tooltip": "wan2.1_i2v_720p_14B_*.safetensors (or 480p)."}),
            "adapter_name": (comfy.list_files("diffusion_models", comfy.ADAPTER_SUFFIXES, "proj_model."),
                             {"tooltip": "fantasytalking_model.ckpt or its .safetensors conversion."}),
            "dtype": (DTYPES, {"default": "auto", "tooltip": "Compute precision."}),
            "weight_dtype": (WEIGHT_DTYPES, {"default": WEIGHT_DTYPES[0], "tooltip": (
                "as stored: an fp8 file's block weights stay fp8 (about half the memory of bf16), each layer computing "
                "in the compute precision; compute dtype: upcast every weight on load.")}),
            **LOADER_MEMORY_INPUTS,
        }}

    @says_what_to_install
    def load(self, dit_name, adapter_name, dtype, weight_dtype=WEIGHT_DTYPES[0], blocks_to_swap=0, attention="sdpa"):
        load_talking_model = core("pipeline").load_talking_model
        dit = comfy.resolve_file("diffusion_models", dit_name, "Wan2.1 DiT")
        adapter = comfy.resolve_file("diffusion_models", adapter_name, "FantasyTalking adapter")
        model = load_talking_model(dit, adapter, torch_dtype(dtype, comfy.torch_device()), keep_stored=weight_dtype == WEIGHT_DTYPES[0])
        model.attention = core("models.attention").check_backend(attention)
        return (model.swap_blocks(blocks_to_swap or comfy.default_blocks_to_swap(model.num_layers)),)


class FT2Wav2VecLoader:
    DESCRIPTION = "Loads a wav2vec2 folder (e.g. wav2vec2-base-960h: config, weights, preprocessor config) from models/audio_encoders."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_WAV2VEC",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wav2vec_folder": (comfy.list_model_dirs("audio_encoders", "preprocessor_config.json"),
                               {"tooltip": "A wav2vec2 folder in models/audio_encoders."}),
        }}

    @says_what_to_install
    def load(self, wav2vec_folder):
        encoder = core("models.audio").Wav2VecEncoder
        return (encoder(comfy.resolve_dir("audio_encoders", wav2vec_folder, "wav2vec2")),)


class FT2AudioEmbeds:
    DESCRIPTION = ("Turns an AUDIO into wav2vec2 features for exactly the frames to generate (the whole audio by default, "
                   "any length). Outputs the features, the audio trimmed or padded to the video (for CreateVideo) and the frame count.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("FT2_AUDIO_EMBEDS", "AUDIO", "INT")
    RETURN_NAMES = ("audio_embeds", "audio", "num_frames")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "wav2vec": ("FT2_WAV2VEC", {"tooltip": "From FT2 Load wav2vec2."}),
            "audio": ("AUDIO", {"tooltip": "The speech; any rate and channel count."}),
            "fps": ("FLOAT", {"default": 23.0, "min": 1.0, "max": 60.0, "step": 1.0, "tooltip": "Video frame rate (23 upstream)."}),
            "num_frames": ("INT", {"default": 0, "min": 0, "max": FRAME_CAP, "step": 4,
                                   "tooltip": "Frames to generate (4k+1); 0 follows the whole audio (or max_seconds of it)."}),
            "max_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0, "step": 0.5,
                                      "tooltip": "Use only the first seconds of the audio; 0 uses all of it."}),
        }}

    @says_what_to_install
    def encode(self, wav2vec, audio, fps, num_frames, max_seconds=0.0):
        audio_mod = core("models.audio")
        clip = audio_mod.audio_from_waveform(audio["waveform"], audio["sample_rate"], "audio input")
        num_frames = core("pipeline").plan_frames(clip, fps, num_frames or None, max_seconds or None)
        def work(device):  # the weights visit the device for this call only (ft2_core.placement)
            wav2vec.device = device
            return wav2vec.encode(audio_mod.clip_for_video(clip, num_frames, fps)).cpu()

        features = run_on_device([], work)
        embeds = {"features": features, "num_frames": num_frames, "fps": fps}
        return (embeds, comfy_audio(audio_mod.fit_to_duration(clip, num_frames / fps)), num_frames)


class FT2Sampler:
    DESCRIPTION = ("Samples a FantasyTalking video from native inputs: CLIPTextEncode CONDITIONING (umT5), "
                   "CLIPVisionEncode output, a start IMAGE (sides multiples of 16) encoded with the Wan VAE, and FT2 audio "
                   "embeds. Audio longer than one window is animated in windows (long_method). Returns a LATENT for the "
                   "native VAEDecode.")
    CATEGORY = CATEGORY
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("FT2_MODEL", {"tooltip": "From FT2 Load Model."}),
            "positive": ("CONDITIONING", {"tooltip": "Prompt encoded with the Wan umT5 text encoder."}),
            "negative": ("CONDITIONING", {"tooltip": "Negative prompt encoded with the same encoder."}),
            "clip_vision_output": ("CLIP_VISION_OUTPUT", {"tooltip": "CLIPVisionEncode of the start image (crop: none)."}),
            "vae": ("VAE", {"tooltip": "The Wan2.1 VAE, to encode the start image."}),
            "start_image": ("IMAGE", {"tooltip": "The portrait; sides must be multiples of 16 (use ImageScale)."}),
            "audio_embeds": ("FT2_AUDIO_EMBEDS", {"tooltip": "From FT2 Audio Embeds."}),
            **SAMPLER_INPUTS,
            **long_video_inputs(81, "Frames per window (4k+1): the model's trained length, 81 for Wan2.1."),
            **MEMORY_INPUTS,
        }, "optional": OPTIONAL_TLPO_INPUTS}

    @says_what_to_install
    def sample(self, model, positive, negative, clip_vision_output, vae, start_image, audio_embeds,
               experts=(), gate=None, long_method="sliding", window_frames=81, overlap_frames=16, loras=(), **kwargs):
        import torch

        options = sampler_options(kwargs)
        windows = core("sampling.long_video").WindowOptions(long_method, window_frames, overlap_frames).validate()
        conditioning, latent_format = core("models.conditioning"), core("models.latent_format")
        image = core("io.image").require_multiple_of_16(start_image[:1], "start_image")
        num_frames = audio_embeds["num_frames"]
        first = windows.first_window_frames(num_frames)
        video = torch.full((first, *image.shape), 0.5)  # first frame, then mid-grey (= Wan's zeros in -1..1)
        video[0] = image
        raw = vae.encode(video)
        condition = conditioning.i2v_condition(latent_format.normalize(raw), first)
        config = model.transformer.config
        positive_text = conditioning.pad_text_embeddings(positive[0][0], "positive conditioning", config.text_dim)
        negative_text = conditioning.pad_text_embeddings(negative[0][0], "negative conditioning", config.text_dim)
        clip = clip_vision_output["penultimate_hidden_states"][:1].float()
        if clip.shape[-1] != config.image_dim:
            raise core("errors").InputError(
                f"clip_vision_output: {clip.shape[-1]}-wide image features, but this model takes {config.image_dim} "
                "(Wan2.1 I2V uses CLIP ViT-H/14, 1280): load clip_vision_h")
        dtype = next(model.transformer.parameters()).dtype
        generate = core("pipeline").generate_latents

        progress = comfy.run_progress()
        if progress is not None:
            progress.plan(options.steps * len(windows.windows(num_frames)))

        def work(device):
            return generate(model, condition, positive_text, negative_text, clip, audio_embeds["features"], num_frames,
                            options, device, dtype, progress and (lambda info: progress.advance(preview=info.denoised)),
                            progress and progress.interrupt_point, experts, gate, windows, ComfyVAECodec(vae), loras)

        latents = run_on_device([model], work)
        return ({"samples": latent_format.denormalize(latents)},)


NODE_CLASS_MAPPINGS = {
    "FT2PipelineLoader": FT2PipelineLoader,
    "FT2Animate": FT2Animate,
    "FT2ModelLoader": FT2ModelLoader,
    "FT2Wav2VecLoader": FT2Wav2VecLoader,
    "FT2AudioEmbeds": FT2AudioEmbeds,
    "FT2Sampler": FT2Sampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FT2PipelineLoader": "FT2 Load Pipeline (all-in-one)",
    "FT2Animate": "FT2 Animate Portrait",
    "FT2ModelLoader": "FT2 Load Model (Wan2.1 + FantasyTalking)",
    "FT2Wav2VecLoader": "FT2 Load wav2vec2",
    "FT2AudioEmbeds": "FT2 Audio Embeds",
    "FT2Sampler": "FT2 Sampler",
}
