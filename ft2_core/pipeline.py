"""FantasyTalking inference end to end: files -> encoders -> sampler -> frames (+ the soundtrack)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checks import finite_number, prompt_text
from .errors import InputError
from .io.audio import Audio, clip_for_video, frame_count
from .io.image import fit_image
from .model_paths import SAMPLER_DEFAULTS, UPSTREAM_DEFAULTS, ModelPaths
from .models.attention import check_backend
from .models.audio_adapter import load_audio_adapter
from .models.audio_windows import check_frame_count, latent_frame_count
from .models.conditioning import ImageEncoder, TextEncoder, WanVAE, encode_i2v_condition, open_vae
from .models.deviation_prior import load_prior
from .models.pixel_latent import SpaceToDepthVAE
from .models.talking_model import FantasyTalkingModel
from .models.wan_transformer import load_transformer_file, load_transformer_folder
from .models.wav2vec import Wav2VecEncoder
from .placement import visiting
from .progress import RunProgress, checked_between_layers, counting_calls
from .sampling.long_video import FrameCodec, sample_long
from .sampling.options import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, SamplerOptions, WindowOptions
from .sampling.sampler import Conditioning
from .tlpo.experts import Expert, experts_attached

log = logging.getLogger(__name__)

IMAGE_STAGES = 3  # text, CLIP image, VAE (first frame): one progress unit each; wav2vec2 counts its chunks


def plan_frames(audio: Audio, fps: float, num_frames: int | None, max_seconds: float | None = None,
                window_frames: int = WindowOptions.window_frames) -> int:
    """The given frame count, or enough frames for the whole audio (or its first `max_seconds`). A count beyond the
    audio plus one window is refused: what it adds is silence, and it is far more likely a typing slip."""
    if num_frames is not None:
        check_frame_count(num_frames)
        audio_frames = frame_count(audio.duration, fps)
        if num_frames > audio_frames + window_frames:
            raise InputError(
                f"num_frames {num_frames} ({num_frames / fps:.1f} s at {fps:g} fps) is far beyond the audio "
                f"({audio.duration:.1f} s, {audio_frames} frames): at most the audio plus one window "
                f"({audio_frames + window_frames} frames); leave it automatic to follow the audio"
            )
        return num_frames
    duration = audio.duration
    if max_seconds is not None:
        duration = min(duration, finite_number(max_seconds, "max_seconds", above=0.0))
    return frame_count(duration, fps)


def encode_speech(wav2vec: Wav2VecEncoder, samples_16k, progress: RunProgress) -> torch.Tensor:
    """wav2vec2 features of 16 kHz samples: one progress unit per pass of up to 30 s, a cancel honoured before every
    layer."""
    with progress.watching(wav2vec.model):
        return wav2vec.encode(samples_16k, on_chunk=progress.advance)


def load_talking_model(transformer: str | os.PathLike, audio_adapter: str | os.PathLike, dtype=torch.float32,
                       config: str | dict | None = None, prediction: str = "velocity",
                       keep_stored: bool = True, deviation_prior: str | os.PathLike | None = None) -> FantasyTalkingModel:
    """The DiT (folder or single file) with its FantasyTalking adapter, checked to fit each other. A single file's
    fp8 block weights stay fp8 unless `keep_stored` is False (see models.stored_linear). `deviation_prior`: the file
    that prediction "sample_with_skip" needs (models.deviation_prior)."""
    transformer = Path(transformer)
    if transformer.is_dir():
        dit = load_transformer_folder(transformer, dtype)
    else:
        dit, _ = load_transformer_file(transformer, config, dtype, keep_stored)
    dim = dit.config.num_attention_heads * dit.config.attention_head_dim
    adapter = load_audio_adapter(audio_adapter, len(dit.blocks), dim, dtype)
    prior = load_prior(deviation_prior) if deviation_prior is not None else None
    return FantasyTalkingModel(dit, adapter.requires_grad_(False), prediction, prior).eval()


@dataclass
class Animation:
    frames: torch.Tensor  # [T, H, W, 3] in 0..1
    fps: float
    audio: Audio  # the input audio; write it with the frames (write_mp4 fits it to the video)
    latents: torch.Tensor


class FantasyTalkingPipeline:
    def __init__(self, model: FantasyTalkingModel, wav2vec: Wav2VecEncoder, text_encoder: TextEncoder | None,
                 image_encoder: ImageEncoder | None, vae: WanVAE | SpaceToDepthVAE, defaults: dict | None = None,
                 device="cpu", dtype=torch.float32):
        if wav2vec.hidden_size != model.adapter.audio_in_dim:
            raise InputError(
                f"wav2vec2 gives {wav2vec.hidden_size}-d features but the audio adapter expects {model.adapter.audio_in_dim}"
            )
        self.model, self.wav2vec, self.text_encoder, self.image_encoder, self.vae = (
            model,
            wav2vec,
            text_encoder,
            image_encoder,
            vae,
        )
        self.defaults = {**UPSTREAM_DEFAULTS, **(defaults or {})}
        self.device, self.dtype = device, dtype

    @classmethod
    def from_paths(
        cls,
        paths: ModelPaths,
        device="cpu",
        dtype=torch.float32,
        keep_on_device: bool = False,
        keep_stored_weights: bool = True,
        vae_tile: int | None = None,
        blocks_to_swap: int = 0,
        attention: str = "sdpa",
    ) -> "FantasyTalkingPipeline":
        """Every component computes on `device`. By default the weights wait on the CPU and each component
        visits the device for its own stage (text, image, audio, VAE, then the DiT for sampling), so the
        peak is the largest stage, not the sum; `keep_on_device` loads everything there once instead
        (faster when one process makes many videos and memory allows). An fp8 DiT file's block weights stay fp8
        unless `keep_stored_weights` is False. `vae_tile` (pixels) makes the Wan VAE work in tiles (see WanVAE.set_tiling;
        the miniature model's pixel latent needs none). `blocks_to_swap` keeps that many DiT blocks on the CPU,
        visiting the device one at a time while sampling (models.block_swap). `attention`: sdpa, or flash / sage
        when installed (models.attention)."""
        missing = paths.missing()
        if missing:
            raise InputError(f"model files missing: {', '.join(f'{m} ({getattr(paths, m)})' for m in missing)}")
        if paths.notice:
            log.warning(paths.notice)
        model = load_talking_model(
            paths.transformer, paths.audio_adapter, dtype, paths.transformer_config, paths.prediction, keep_stored_weights,
            paths.deviation_prior,
        ).swap_blocks(blocks_to_swap)
        model.attention = check_backend(attention)
        text = TextEncoder(paths.text_encoder, paths.tokenizer, device, dtype) if paths.text_encoder else None
        image = ImageEncoder(paths.image_encoder, paths.image_processor, device, dtype) if paths.image_encoder else None
        vae = open_vae(paths.vae, device, dtype)
        if vae_tile and isinstance(vae, WanVAE):
            vae.set_tiling(vae_tile)
        pipe = cls(model, Wav2VecEncoder(paths.wav2vec, device, dtype), text, image, vae, paths.defaults, device, dtype)
        if keep_on_device:
            for module in pipe.modules():
                getattr(module, "place", module.to)(device)
        return pipe

    def modules(self) -> list[torch.nn.Module]:
        """The weight-holding modules: DiT (+ adapter), wav2vec2, and where present the VAE and encoders."""
        parts = (
            self.model,
            self.wav2vec.model,
            getattr(self.vae, "model", None),
            getattr(self.text_encoder, "model", None),
            getattr(self.image_encoder, "model", None),
        )
        return [module for module in parts if module is not None]

    def audio_features(self, audio: Audio, num_frames: int, fps: float) -> torch.Tensor:
        """wav2vec2 features of the audio that plays during `num_frames` frames, for the whole video at once (in
        chunks of 30 s when longer), so a long video's windows hear what one long window would."""
        return encode_speech(self.wav2vec, clip_for_video(audio, num_frames, fps), RunProgress())

    def sampler_options(self, **given) -> SamplerOptions:
        """SamplerOptions from what is given (None: not given), else this model's recommendation, else upstream's."""
        recommended = {name: self.defaults[name] for name in SAMPLER_DEFAULTS}
        return SamplerOptions(**{**recommended, **{k: v for k, v in given.items() if v is not None}}).validate()

    def window_options(
        self, method: str | None = None, window_frames: int | None = None, overlap_frames: int | None = None
    ) -> WindowOptions:
        """Long-video settings: what is given, else the model's defaults."""
        given = {"long_method": method, "window_frames": window_frames, "overlap_frames": overlap_frames}
        method, window_frames, overlap_frames = (self.defaults[k] if v is None else v for k, v in given.items())
        return WindowOptions(method, window_frames, overlap_frames).validate()

    def encode_text(self, prompt: str, negative_prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        if self.text_encoder is None:
            raise InputError("this pipeline has no text encoder: pass precomputed text embeddings")
        both = self.text_encoder.encode([prompt_text(prompt), prompt_text(negative_prompt, "negative prompt")])
        return both[0:1], both[1:2]

    def animate(
        self,
        image: torch.Tensor,
        audio: Audio,
        prompt: str = DEFAULT_PROMPT,
        negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
        options: SamplerOptions | None = None,
        num_frames: int | None = None,
        fps: float | None = None,
        max_side: int | None = None,
        progress: RunProgress | None = None,
        experts: list[Expert] = (),
        gate: torch.nn.Module | None = None,
        windows: WindowOptions | None = None,
        max_seconds: float | None = None,
        loras: list[Expert] = (),
    ) -> Animation:
        """Portrait [H, W, 3] + speech -> frames. The frame count follows the whole audio (or its first
        `max_seconds`) unless given; longer than one window, the video runs in `windows` (default: the
        model's, see window_options).

        `experts` (TLPO LoRA experts) are mixed by `gate` (a trained gate, a static or scheduled mix;
        default: weight 1 each) for this call only; `loras` (any other Wan LoRA) apply at their strength. `progress`
        counts every stage (3 image and text encoders, each 30 s of audio, windows x steps, each decoded latent frame);
        a cancel is honoured between units and before every layer of the model that is running.
        """
        fps = self.defaults["fps"] if fps is None else finite_number(fps, "fps", above=0.0)
        options = options or self.sampler_options()
        windows = (windows or self.window_options()).validate()
        num_frames = plan_frames(audio, fps, num_frames, max_seconds, windows.window_frames)
        image = fit_image(image, max_side or self.defaults["max_side"])
        plan = windows.windows(num_frames)
        log.info(
            "animating %d frames at %g fps, %dx%d, in %d window(s) (%s)",
            num_frames,
            fps,
            image.shape[1],
            image.shape[0],
            len(plan),
            windows.method,
        )
        progress = progress or RunProgress()
        latent_frames = latent_frame_count(num_frames)
        speech = clip_for_video(audio, num_frames, fps)
        progress.plan(IMAGE_STAGES + len(self.wav2vec.chunks(len(speech))) + options.steps * len(plan) + latent_frames)
        progress.interrupt_point()
        with progress.watching(getattr(self.text_encoder, "model", None)):
            positive, negative = self.encode_text(prompt, negative_prompt)
        progress.advance()
        with progress.watching(getattr(self.image_encoder, "model", None)):
            clip = self.image_encoder.encode(image) if self.image_encoder is not None else None
        progress.advance()
        first = windows.first_window_frames(num_frames)
        with progress.watching(getattr(self.vae, "model", None)):
            condition = encode_i2v_condition(self.vae.encode, image, first)
        progress.advance()
        features = encode_speech(self.wav2vec, speech, progress)
        with visiting(self.model, self.device):
            latents = generate_latents(
                self.model,
                EncodedVideo(condition, positive, negative, clip, features, num_frames),
                options,
                windows,
                ExpertMix(experts, gate, loras),
                device=self.device,
                dtype=self.dtype,
                codec=self.vae,
                on_step=lambda info: progress.advance(preview=info.denoised),
                check_interrupt=progress.interrupt_point,
            )
        decoder = getattr(getattr(self.vae, "model", None), "decoder", None)  # a Wan VAE decodes latent frame by frame
        with counting_calls(decoder, progress), progress.watching(getattr(self.vae, "model", None)):
            frames = self.vae.decode(latents)
        if decoder is None:
            progress.advance(latent_frames)
        return Animation(frames, fps, audio, latents)

    def to(self, device) -> "FantasyTalkingPipeline":
        """Compute on `device` from now on. Nothing moves here: each component visits the device for its own
        stage and goes back (ComfyUI sets its device for a run and the offload device after)."""
        for part in (self.wav2vec, self.vae, self.text_encoder, self.image_encoder):
            if part is not None and hasattr(part, "device"):
                part.device = torch.device(device)
        self.device = device
        return self


@dataclass
class EncodedVideo:
    """One video's encoded inputs: the first window's I2V condition [1, 4+z, F, h, w], the prompt and negative
    prompt embeddings, CLIP image features (or None) and the wav2vec2 features of the whole video."""

    condition: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    image: torch.Tensor | None
    audio_features: torch.Tensor
    num_frames: int


@dataclass
class ExpertMix:
    """TLPO experts mixed by `gate` (None: weight 1 each), plus other LoRAs at their fixed strength."""

    experts: list[Expert] = field(default_factory=list)
    gate: torch.nn.Module | None = None
    loras: list[Expert] = field(default_factory=list)


def generate_latents(
    model: FantasyTalkingModel,
    video: EncodedVideo,
    options: SamplerOptions,
    windows: WindowOptions | None = None,
    mix: ExpertMix | None = None,
    *,
    device="cpu",
    dtype=torch.float32,
    codec: FrameCodec | None = None,
    on_step=None,
    check_interrupt=None,
) -> torch.Tensor:
    """Normalised latents [1, z, F, h, w]. Without `windows` the video is one window (`video.condition` covers it);
    continuation re-encodes the end of each window with `codec`. `on_step` sees every step, `check_interrupt` may
    raise to cancel.

    The one entry into the sampler for the CLI, the all-in-one node and ComfyUI's native path.
    """
    check_frame_count(video.num_frames)
    windows = windows or WindowOptions("single")
    mix = mix or ExpertMix()
    audio = model.adapter.windows(video.audio_features.to(device), video.num_frames)
    cond = Conditioning(video.condition, video.positive, video.negative, video.image, audio.to("cpu"))
    latent_channels = model.transformer.config.out_channels
    gate = mix.gate.to(device) if mix.gate is not None else None
    with experts_attached(model, list(mix.experts), gate, list(mix.loras)), checked_between_layers([model], check_interrupt):
        latents = sample_long(
            model, cond, options, windows, video.num_frames, latent_channels, device, dtype, on_step, check_interrupt, codec
        )
    if not torch.isfinite(latents).all():
        raise InputError("sampling produced NaN or infinite values: a weight, LoRA strength or guidance scale is out of range "
                         "(or a model file is damaged); nothing was made")
    return latents
