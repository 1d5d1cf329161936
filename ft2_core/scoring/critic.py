"""Talking-Critic: a Qwen2.5-Omni thinker (+ LoRA) that watches a clip with its audio and answers
three yes/no questions; a dimension's score is P("Yes") from the Yes/No logits of the answer token.

Frames are prepared here in the thinker's layout (Qwen2-VL patches: resize to multiples of 28,
CLIP-normalise, group frames in pairs, flatten merge-ordered 14x14 patches), without torchvision.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..dimensions import DIMENSION_NAMES, QUESTIONS
from ..errors import InputError
from ..io.atomic import staged_folder
from ..io.audio import WAV2VEC_RATE, Audio, to_mono_16k
from ..io.checkpoint_io import load_state_dict, read_metadata, save_safetensors

SYSTEM = "You are a careful judge of talking-head videos."
VIDEO_SETTINGS_FILE = "ft2_video_settings.json"  # in a thinker folder saved by `save_thinker`
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# The language model's attention and MLP, the audio and vision encoders' blocks, and the projections that bring
# audio and video into the language model (the encoders must learn to see mouths and hear syllables).
LORA_TARGETS = (r".*(language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
                r"|audio_tower\.(proj|layers\.\d+\.(self_attn\.(q|k|v|out)_proj|fc1|fc2))"
                r"|visual\.(merger\.mlp\.[02]|blocks\.\d+\.(attn\.(q|k|v|proj)|mlp\.(gate|up|down)_proj)))")


@dataclass
class VideoSettings:
    """How clips are sampled and sized for the thinker (Qwen2.5-Omni uses 2 fps by default)."""

    sample_fps: float = 2.0
    max_frames: int = 32
    min_pixels: int = 28 * 28 * 4
    max_pixels: int = 224 * 224

    def to_metadata(self) -> dict[str, str]:
        return {f"ft2.{f.name}": str(getattr(self, f.name)) for f in fields(self)}

    def update_from(self, metadata: dict) -> None:
        """Take the settings a critic was trained with (files without them keep the defaults)."""
        for f in fields(self):
            if f"ft2.{f.name}" in metadata:
                setattr(self, f.name, type(getattr(self, f.name))(float(metadata[f"ft2.{f.name}"])))


def smart_size(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's rule: sides multiples of `factor`, area within [min, max], aspect kept."""
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = max(factor, math.floor(height / beta / factor) * factor), max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


@dataclass
class ClipFeatures:
    """One clip, ready for the thinker."""

    patches: torch.Tensor  # [grid_t*grid_h*grid_w, 3*2*14*14]
    grid: tuple[int, int, int]
    audio_features: torch.Tensor  # [128, frames] log-mel
    seconds_per_grid: float

    @property
    def video_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w // 4

    @property
    def audio_tokens(self) -> int:
        length = self.audio_features.shape[-1]
        return ((length - 1) // 2 + 1 - 2) // 2 + 1


def check_clip(frames, fps: float, audio: Audio | None, name: str = "clip") -> torch.Tensor:
    """frames [T, H, W, 3] (uint8 or float 0..1) -> float tensor; refuse clips the critic cannot judge."""
    tensor = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
    if tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise InputError(f"{name}: frames must be [frames, height, width, 3], got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise InputError(f"{name}: zero frames")
    if not fps or fps <= 0:
        raise InputError(f"{name}: fps must be positive, got {fps}")
    if audio is None:
        raise InputError(f"{name}: no audio; the critic judges lip-sync from the soundtrack")
    video_seconds, audio_seconds = tensor.shape[0] / fps, audio.duration
    if abs(video_seconds - audio_seconds) > max(0.5, 0.25 * video_seconds):
        raise InputError(f"{name}: {tensor.shape[0]} frames at {fps:g} fps last {video_seconds:.2f} s but the audio lasts "
                         f"{audio_seconds:.2f} s; is the fps right?")
    return tensor.float() / 255 if tensor.dtype == torch.uint8 else tensor.float()


def video_patches(frames: torch.Tensor, fps: float, settings: VideoSettings, mean=CLIP_MEAN, std=CLIP_STD):
    """[T, H, W, 3] in 0..1 -> (patches, (grid_t, grid_h, grid_w), seconds per temporal grid)."""
    count = max(2, min(settings.max_frames, round(frames.shape[0] / fps * settings.sample_fps)))
    count += count % 2  # frames go in pairs (temporal patch 2)
    index = torch.linspace(0, frames.shape[0] - 1, count).round().long()
    picked = frames[index].permute(0, 3, 1, 2)  # [t, 3, H, W]
    height, width = smart_size(picked.shape[2], picked.shape[3], 28, settings.min_pixels, settings.max_pixels)
    picked = F.interpolate(picked, size=(height, width), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    picked = (picked - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    grid_t, grid_h, grid_w = count // 2, height // 14, width // 14
    patches = picked.view(grid_t, 2, 3, grid_h // 2, 2, 14, grid_w // 2, 2, 14)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(grid_t * grid_h * grid_w, 3 * 2 * 14 * 14)
    return patches, (grid_t, grid_h, grid_w), 2 / (count / (frames.shape[0] / fps))


class TalkingCritic:
    def __init__(self, thinker, tokenizer, feature_extractor, settings: VideoSettings | None = None,
                 questions: dict | None = None):
        self.thinker, self.tokenizer, self.feature_extractor = thinker, tokenizer, feature_extractor
        # what runs the thinker's forward: the thinker itself, or a distributed wrapper of it while training (DDP
        # syncs gradients in its forward's hooks); its methods and config are always read from the thinker
        self.forward_module = thinker
        self.settings = settings or VideoSettings()
        self.questions = questions or dict(QUESTIONS)
        self.yes_id, self.no_id = self._single_token("Yes"), self._single_token("No")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise InputError(f"critic tokenizer: {word!r} is not a single token ({ids})")
        return ids[0]

    @property
    def device(self):
        return next(self.thinker.parameters()).device

    def features(self, frames, fps: float, audio: Audio | None, name: str = "clip") -> ClipFeatures:
        pixels = check_clip(frames, fps, audio, name)
        patches, grid, seconds = video_patches(pixels, fps, self.settings)
        wave = to_mono_16k(audio)
        mel = self.feature_extractor(wave, sampling_rate=WAV2VEC_RATE, padding="longest", return_tensors="pt").input_features[0]
        return ClipFeatures(patches, grid, mel, seconds)

    def prefix_ids(self, clip: ClipFeatures) -> list[int]:
        """What the three questions share: the system turn and the user turn's video and audio."""
        return self.tokenizer.encode(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
                                     f"<|vision_bos|>{'<|VIDEO|>' * clip.video_tokens}<|vision_eos|>"
                                     f"<|audio_bos|>{'<|AUDIO|>' * clip.audio_tokens}<|audio_eos|>", add_special_tokens=False)

    def question_ids(self, question: str) -> list[int]:
        """The rest of the user turn, then the assistant's turn up to its answer token."""
        return self.tokenizer.encode(f"{question} Answer Yes or No.<|im_end|>\n<|im_start|>assistant\n",
                                     add_special_tokens=False)

    def _media(self, clips: list[ClipFeatures]) -> dict:
        """The clips' video patches and audio features in the thinker's input layout (one entry per clip)."""
        frames = max(clip.audio_features.shape[-1] for clip in clips)
        mels = torch.zeros(len(clips), clips[0].audio_features.shape[0], frames)
        mel_mask = torch.zeros(len(clips), frames, dtype=torch.long)
        for r, clip in enumerate(clips):
            mels[r, :, :clip.audio_features.shape[-1]] = clip.audio_features
            mel_mask[r, :clip.audio_features.shape[-1]] = 1
        device, dtype = self.device, next(self.thinker.parameters()).dtype
        return {"pixel_values_videos": torch.cat([clip.patches for clip in clips]).to(device, dtype),
                "video_grid_thw": torch.tensor([clip.grid for clip in clips], device=device),
                "video_second_per_grid": torch.tensor([clip.seconds_per_grid for clip in clips], device=device),
                "input_features": mels.to(device, dtype), "feature_attention_mask": mel_mask.to(device)}

    def _padded(self, sequences: list[list[int]], left: bool) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(ids) for ids in sequences)
        input_ids = torch.full((len(sequences), longest), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for r, ids in enumerate(sequences):
            span = slice(longest - len(ids), longest) if left else slice(0, len(ids))
            input_ids[r, span], attention[r, span] = torch.tensor(ids), 1
        return input_ids.to(self.device), attention.to(self.device)

    def answer_logits(self, clips: list[ClipFeatures], dimensions=DIMENSION_NAMES) -> torch.Tensor:
        """[clips * dimensions, 2] logits of (Yes, No) for the answer token, rows clip-major.

        Each clip is encoded once: the video, the audio and the prompt up to them run as one prefix (left-padded
        across clips), then its key/value cache is repeated for the questions, which run together as suffixes
        (right-padded) at the positions they hold in the full prompt. Training with gradient checkpointing runs the
        plain way instead (see `checkpoint_layers`)."""
        if self.thinker.training and self.thinker.is_gradient_checkpointing:
            return self.answer_logits_per_question(clips, dimensions)
        input_ids, attention = self._padded([self.prefix_ids(clip) for clip in clips], left=True)
        media = self._media(clips)
        positions, _ = self.thinker.get_rope_index(input_ids, None, media["video_grid_thw"], attention,
                                                        audio_seqlens=media["feature_attention_mask"].sum(-1),
                                                        second_per_grids=media["video_second_per_grid"])
        from transformers import DynamicCache

        cache = DynamicCache(config=self.thinker.config.text_config)
        self.forward_module(input_ids=input_ids, attention_mask=attention, position_ids=positions, past_key_values=cache,
                            use_cache=True, **media, logits_to_keep=1)
        asked = len(dimensions)
        cache.batch_repeat_interleave(asked)
        questions = [self.question_ids(self.questions[d]) for d in dimensions] * len(clips)
        suffix, suffix_mask = self._padded(questions, left=False)
        start = (positions.amax(dim=(0, 2)) + 1).repeat_interleave(asked)  # text after the media goes on from their last
        text_positions = start[:, None] + torch.arange(suffix.shape[1], device=self.device)
        suffix_positions = text_positions.expand(positions.shape[0], -1, -1)  # text: the same in M-RoPE's t, h and w
        mask = torch.cat([attention.repeat_interleave(asked, 0), suffix_mask], 1)
        logits = self.forward_module(input_ids=suffix, attention_mask=mask, position_ids=suffix_positions, past_key_values=cache,
                                     use_cache=True).logits
        last = suffix_mask.sum(1) - 1
        return logits[torch.arange(len(questions)), last][:, [self.yes_id, self.no_id]].float()

    def answer_logits_per_question(self, clips: list[ClipFeatures], dimensions=DIMENSION_NAMES) -> torch.Tensor:
        """The same logits the plain way, one full sequence per (clip, question), so the encoders and the prefix
        run once per question: the reference `answer_logits` is checked and timed against."""
        rows = [(clip, self.prefix_ids(clip) + self.question_ids(self.questions[d])) for clip in clips for d in dimensions]
        input_ids, attention = self._padded([ids for _, ids in rows], left=True)
        logits = self.forward_module(input_ids=input_ids, attention_mask=attention, **self._media([clip for clip, _ in rows]),
                                     use_cache=False, logits_to_keep=1).logits[:, -1]
        return logits[:, [self.yes_id, self.no_id]].float()

    @torch.no_grad()
    def score(self, clips: list[ClipFeatures], batch_size: int = 4) -> list[dict[str, float]]:
        """P(Yes) per dimension for each clip."""
        scores = []
        for start in range(0, len(clips), batch_size):
            chunk = clips[start:start + batch_size]
            probabilities = self.answer_logits(chunk).softmax(dim=-1)[:, 0].view(len(chunk), len(DIMENSION_NAMES))
            scores += [dict(zip(DIMENSION_NAMES, map(float, row))) for row in probabilities]
        return scores

    def score_clip(self, frames, fps: float, audio: Audio | None, name: str = "clip") -> dict[str, float]:
        """One clip's scores (the interface the proxy scorer shares)."""
        return self.score([self.features(frames, fps, audio, name)], batch_size=1)[0]

    def checkpoint_layers(self) -> None:
        """Keep no layer's activations for the backward; recompute them there. A shared prefix's key/value cache cannot
        be recomputed (transformers turns the cache off under checkpointing), so training then runs each question with
        its own copy of the prefix (`answer_logits_per_question`): about 3x the prefix's compute for its activations."""
        self.thinker.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # ------------------------------------------------------------ LoRA
    def add_lora(self, rank: int = 8, alpha: float = 16.0) -> list[torch.nn.Parameter]:
        """Trainable LoRA (peft) on LORA_TARGETS; returns its parameters."""
        from peft import LoraConfig, inject_adapter_in_model

        self.thinker.requires_grad_(False)
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS, lora_dropout=0.0), self.thinker)
        self.lora = {"rank": rank, "alpha": alpha}
        trained = [p for n, p in self.thinker.named_parameters() if "lora_" in n]
        for parameter in trained:  # fp32 over any thinker dtype: AdamW's small steps survive (peft casts the input)
            parameter.data = parameter.data.float()
        return trained

    def save_thinker(self, folder: str | os.PathLike) -> Path:
        """The whole thinker as a folder `from_folder` reads (weights, tokenizer, features, video settings): a base
        for a later LoRA. Written beside the target and renamed, so a crash leaves no half folder."""
        with staged_folder(folder) as staging:
            self.thinker.save_pretrained(staging, safe_serialization=True)
            self.tokenizer.save_pretrained(staging)
            self.feature_extractor.save_pretrained(staging)
            (staging / VIDEO_SETTINGS_FILE).write_text(json.dumps(self.settings.to_metadata(), indent=1))
        return Path(folder)

    def save_lora(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        from peft import get_peft_model_state_dict

        state = get_peft_model_state_dict(self.thinker)
        metadata = {"ft2.kind": "critic", "ft2.rank": str(self.lora["rank"]), "ft2.alpha": str(self.lora["alpha"]),
                    "ft2.targets": LORA_TARGETS, "ft2.questions": json.dumps(self.questions),
                    **self.settings.to_metadata(), **(extra or {})}
        return save_safetensors(state, path, metadata)

    def load_lora(self, path: str | os.PathLike) -> None:
        from peft import set_peft_model_state_dict

        what = f"critic LoRA {Path(path).name}"
        metadata = read_metadata(path, what)
        if metadata.get("ft2.kind") != "critic":
            raise InputError(f"{what}: not an FT2 critic file (ft2.kind is {metadata.get('ft2.kind')!r})")
        self.add_lora(int(metadata["ft2.rank"]), float(metadata["ft2.alpha"]))
        self.questions = json.loads(metadata.get("ft2.questions", json.dumps(QUESTIONS)))
        self.settings.update_from(metadata)
        result = set_peft_model_state_dict(self.thinker, load_state_dict(path, what))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise InputError(f"{what}: does not fit this thinker (e.g. {unexpected[0]})")
        self.thinker.requires_grad_(False)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, lora: str | os.PathLike | None = None, device="cpu",
                    dtype=torch.float32, quantize: str = "none") -> "TalkingCritic":
        """A Qwen2.5-Omni thinker folder (config, weights, tokenizer, preprocessor config) + optional LoRA. `quantize`
        ("8bit", "4bit": bitsandbytes, on a CUDA device) loads the frozen base quantised, the QLoRA way."""
        from transformers import AutoTokenizer, Qwen2_5OmniThinkerForConditionalGeneration, WhisperFeatureExtractor

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise InputError(f"critic base folder {folder} has no config.json; expected a Qwen2.5-Omni thinker folder")
        quantized = {} if quantize == "none" else {"quantization_config": quantization(quantize, device, dtype),
                                                   "device_map": {"": str(device)}}  # loaded in place, never moved
        thinker = Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(folder, local_files_only=True, torch_dtype=dtype,
                                                                             **quantized)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        extractor = WhisperFeatureExtractor.from_pretrained(folder, local_files_only=True)
        critic = cls((thinker if quantized else thinker.to(device)).eval(), tokenizer, extractor)
        if (folder / VIDEO_SETTINGS_FILE).is_file():  # a thinker trained here keeps the sampling it learned with
            critic.settings.update_from(json.loads((folder / VIDEO_SETTINGS_FILE).read_text()))
        if lora is not None:
            critic.load_lora(lora)
        return critic


QUANTIZE = ("none", "8bit", "4bit")


def quantization(quantize: str, device, dtype: torch.dtype):
    """The transformers config that loads the thinker's weights in 8 or 4 bits (NF4, computing in `dtype`)."""
    if quantize not in QUANTIZE:
        raise InputError(f"critic quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if torch.device(device).type != "cuda":
        raise InputError(f'a {quantize} critic base runs on a CUDA GPU (bitsandbytes); on {device} use quantize = "none"')
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError(f"a {quantize} critic base needs the bitsandbytes package: pip install bitsandbytes") from None
    from transformers import BitsAndBytesConfig

    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype,
                              bnb_4bit_use_double_quant=True)
