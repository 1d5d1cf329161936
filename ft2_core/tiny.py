"""The built-in tiny model: every real component class at toy width, random deterministic weights.

It exercises the real loaders and the real sampler on a CPU in seconds. It is a plumbing demo, not
a trained model: its videos are coloured noise shaped by the portrait, not a talking face.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import InputError
from .io.checkpoint_io import save_safetensors
from .model_paths import MANIFEST
from .models.audio_adapter import AudioAdapter, ours_to_upstream
from .models.wan_transformer import build_transformer, shipped_configs

VERSION = 2  # bump when the built folder changes
NOTICE = (
    "Using the built-in tiny model: random weights, a plumbing demo that runs the real code path; "
    "its output is not a talking face. Pass --model-dir for real weights."
)
TINY_CONFIG = shipped_configs()["ft2-tiny"]  # shipped, so a single-file tiny DiT is recognised by shape
TINY_TRANSFORMER = TINY_CONFIG["transformer"]
TINY_AUDIO = TINY_CONFIG["audio_adapter"]
TINY_DEFAULTS = TINY_CONFIG["defaults"]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def default_cache_dir() -> Path:
    root = os.environ.get("FT2_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "ft2")
    return Path(root)


def tiny_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The tiny FantasyTalking model folder, built on first use."""
    return cached_folder(f"tiny-v{VERSION}", build_tiny_model, MANIFEST, cache_dir)


def tiny_critic_dir(cache_dir: str | os.PathLike | None = None, size: str = "tiny") -> Path:
    """A random Talking-Critic base (a Qwen2.5-Omni thinker of one of `CRITIC_SIZES`), built on first use."""
    if size not in CRITIC_SIZES:
        raise InputError(f"critic size must be one of {tuple(CRITIC_SIZES)}, got {size!r}")
    return cached_folder(f"{size}-critic-v{VERSION}", lambda folder: build_tiny_critic(folder, size=size), "config.json",
                         cache_dir)


def cached_folder(name: str, build, marker: str, cache_dir=None) -> Path:
    """Build into a staging folder and rename: a crash never leaves half a folder; parallel builders are fine."""
    target = Path(cache_dir or default_cache_dir()) / name
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first
            if not (target / marker).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tiny_model(folder: Path, seed: int = 0) -> None:
    """Write every component in the layout real users have (diffusers/transformers folders)."""
    torch.manual_seed(seed)
    transformer = build_transformer(TINY_TRANSFORMER)
    transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    model_dim = TINY_TRANSFORMER["num_attention_heads"] * TINY_TRANSFORMER["attention_head_dim"]
    adapter = tiny_audio_adapter(TINY_TRANSFORMER["num_layers"], model_dim)
    save_safetensors(ours_to_upstream(adapter.state_dict()), folder / "audio_adapter.safetensors")
    save_tiny_wav2vec(folder / "wav2vec2")
    save_tiny_text_encoder(folder / "text_encoder", folder / "tokenizer")
    save_tiny_image_encoder(folder / "image_encoder", folder / "image_processor")
    save_tiny_vae(folder / "vae")
    manifest = {"name": "ft2-tiny", "version": VERSION, "notice": NOTICE, "defaults": TINY_DEFAULTS,
                "audio_adapter": "audio_adapter.safetensors", "wav2vec": "wav2vec2"}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))


def tiny_audio_adapter(num_layers: int, model_dim: int) -> AudioAdapter:
    """Random (not upstream's zero-init) k/v so the audio visibly changes the output."""
    adapter = AudioAdapter(num_layers, model_dim, **TINY_AUDIO)
    for kv in adapter.blocks:
        torch.nn.init.normal_(kv.k_proj.weight, std=0.2)
        torch.nn.init.normal_(kv.v_proj.weight, std=0.2)
    return adapter


def save_tiny_wav2vec(folder: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=TINY_AUDIO["audio_in_dim"], num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=32,
    )
    Wav2Vec2Model(config).save_pretrained(folder, safe_serialization=True)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(folder)


def save_tiny_text_encoder(model_folder: Path, tokenizer_folder: Path) -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{ch: i + 3 for i, ch in enumerate(letters)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    ).save_pretrained(tokenizer_folder)
    config = UMT5Config(
        vocab_size=64, d_model=TINY_TRANSFORMER["text_dim"], d_kv=16, d_ff=64, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, is_encoder_decoder=False, use_cache=False,
    )
    UMT5EncoderModel(config).save_pretrained(model_folder, safe_serialization=True)


def save_tiny_image_encoder(model_folder: Path, processor_folder: Path) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=TINY_TRANSFORMER["image_dim"], intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=224, patch_size=14, projection_dim=32,
    )
    CLIPVisionModel(config).save_pretrained(model_folder, safe_serialization=True)
    processor_folder.mkdir(parents=True, exist_ok=True)
    (processor_folder / "preprocessor_config.json").write_text(json.dumps({
        "crop_size": {"height": 224, "width": 224}, "size": {"shortest_edge": 224}, "do_normalize": True,
        "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "image_processor_type": "CLIPImageProcessor",
    }, indent=2))


def save_tiny_vae(folder: Path) -> None:
    from diffusers import AutoencoderKLWan

    AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1).save_pretrained(
        folder, safe_serialization=True
    )


CRITIC_SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>", "<|IMAGE|>",
                         "<|VIDEO|>", "<|vision_bos|>", "<|vision_eos|>")


# Widths of the random thinkers: "tiny" is the test suite's and the built-in world-pretrained critic's; "small" has
# twice the width and depth in every tower (978 k weights against 182 k).
CRITIC_SIZES = {
    "tiny": {"audio": dict(d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, output_dim=64),
             "vision": dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64),
             "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=1)},
    "small": {"audio": dict(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128, output_dim=128),
              "vision": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, out_hidden_size=128),
              "text": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2)},
}


def build_tiny_critic(folder: Path, seed: int = 0, size: str = "tiny") -> None:
    """A random Qwen2.5-Omni thinker at toy width (`CRITIC_SIZES`) with a word-level tokenizer and Whisper features."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        PreTrainedTokenizerFast,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
        WhisperFeatureExtractor,
    )

    from .dimensions import QUESTIONS
    from .scoring.critic import SYSTEM

    words = sorted({w for text in [SYSTEM, "Answer Yes or No.", "system user assistant", *QUESTIONS.values()]
                    for w in text.replace("?", " ?").replace(".", " .").split()})
    vocab = {"<|pad|>": 0, "<unk>": 1, **{t: i + 2 for i, t in enumerate(CRITIC_SPECIAL_TOKENS)}}
    vocab.update({w: len(vocab) + i for i, w in enumerate(words)})
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|pad|>", unk_token="<unk>",
                                   additional_special_tokens=list(CRITIC_SPECIAL_TOKENS))
    ids = {t: vocab[t] for t in CRITIC_SPECIAL_TOKENS}
    widths = CRITIC_SIZES[size]
    torch.manual_seed(seed)
    config = Qwen2_5OmniThinkerConfig(
        audio_config=dict(**widths["audio"], num_mel_bins=128, n_window=50, initializer_range=0.1),
        vision_config=dict(**widths["vision"], patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                           fullatt_block_indexes=[0], window_size=112, initializer_range=0.1),
        text_config=dict(**widths["text"], vocab_size=64, initializer_range=0.1,  # heads of 32: mrope_section sums to 16
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 4, 4]}),
        initializer_range=0.1,
        audio_token_index=ids["<|AUDIO|>"], image_token_index=ids["<|IMAGE|>"], video_token_index=ids["<|VIDEO|>"],
        audio_start_token_id=ids["<|audio_bos|>"], audio_end_token_id=ids["<|audio_eos|>"],
        vision_start_token_id=ids["<|vision_bos|>"], vision_end_token_id=ids["<|vision_eos|>"], user_token_id=vocab["user"],
    )
    if len(vocab) > config.text_config.vocab_size:
        raise RuntimeError(f"tiny critic vocabulary has {len(vocab)} words; raise vocab_size")
    Qwen2_5OmniThinkerForConditionalGeneration(config).save_pretrained(folder, safe_serialization=True)
    fast.save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=128).save_pretrained(folder)
