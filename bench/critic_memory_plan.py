"""Predicted peak GPU memory of one Talking-Critic LoRA step on the Qwen2.5-Omni-7B thinker (8.9 B parameters),
per clip in flight, at the frame sampling lip-sync needs, for base precisions (bf16, 8-bit, 4-bit) with and
without gradient checkpointing; from module sizes counted on the meta device and activation costs measured here.

    python -m bench.critic_memory_plan [--out bench/results/critic_memory_plan.md]

Measured (CPU, this machine; the profiler's allocation timeline): one layer of each tower at the real width (language
model 3584 wide with its 18,944 MLP; vision 1280 wide; audio 1280 wide), in bf16 with a rank-8 LoRA on the critic's
targets, trained: the bytes per token that a layer's forward keeps for the backward (`saved`) and the peak above
them while its backward runs, as slopes between two lengths, so what does not grow with the clip drops out.
A step holds: the frozen base (2 bytes a weight in bf16, 1 in 8-bit, 0.5625 in NF4 with its double-quantised scales),
the LoRA with its gradient and AdamW moments (fp32, 16 bytes a weight), and the activations: every layer's saved
bytes without checkpointing; with it (train.gradient_checkpointing) each layer's input plus one layer's saved and
backward bytes, for three copies of the prompt (checkpointing runs each question with its own prefix).
"""
from __future__ import annotations

import argparse
import math

import torch

from bench.memory_plan import GIB, USABLE_SHARE, fits, net_and_peak
from ft2_core.io.atomic import write_text_atomic

LORA_RANK = 8
BASE_BYTES = {"bf16": 2.0, "8bit": 1.0, "4bit": 0.5 + 1 / 16}  # NF4: 4 bits + an 8-bit scale per 64 weights (+ tiny)
LORA_STATE_BYTES = 4 * 4  # fp32 LoRA weight, its gradient and AdamW's two moments
QUESTIONS = 3
FRAMES, FPS = 81, 23.0  # one window of the model; lip-sync needs every frame (the thinker's default 2 fps sees ~7)
SAMPLINGS = {"every frame (23 fps), 224x224": (23.0, 224 * 224), "12 fps, 224x224": (12.0, 224 * 224),
             "every frame, 336x336": (23.0, 336 * 336), "2 fps (Qwen's default), 224x224": (2.0, 224 * 224)}
TEXT_TOKENS = 80  # system turn, question and answer prompt


def thinker_config():
    """Qwen2.5-Omni-7B's thinker. transformers' default config widens the vision tower to 3584 (11.3 B parameters);
    the released model's vision tower is 1280 wide (as Qwen2.5-VL-7B's), which gives its 8.9 B."""
    from transformers import Qwen2_5OmniThinkerConfig

    config = Qwen2_5OmniThinkerConfig()
    config.vision_config.hidden_size = 1280
    return config


def parameter_counts() -> dict[str, int]:
    """Weights of the whole thinker and of the LoRA the critic trains, counted on the meta device."""
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from ft2_core.scoring.critic import LORA_TARGETS

    with torch.device("meta"):
        thinker = Qwen2_5OmniThinkerForConditionalGeneration(thinker_config())
        base = sum(p.numel() for p in thinker.parameters())
        inject_adapter_in_model(LoraConfig(r=LORA_RANK, lora_alpha=16, target_modules=LORA_TARGETS), thinker)
    lora = sum(p.numel() for n, p in thinker.named_parameters() if "lora_" in n)
    return {"base": base, "lora": lora}


def one_layer_thinker():
    """The thinker with one layer per tower at the real widths, bf16, a trainable rank-8 LoRA on the critic's targets."""
    from peft import LoraConfig, inject_adapter_in_model
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from ft2_core.scoring.critic import LORA_TARGETS

    config = thinker_config()
    config.text_config.num_hidden_layers = 1
    config.vision_config.depth, config.vision_config.fullatt_block_indexes = 1, [0]
    config.audio_config.encoder_layers = 1
    torch.manual_seed(0)
    thinker = Qwen2_5OmniThinkerForConditionalGeneration(config).to(torch.bfloat16)
    thinker.requires_grad_(False)
    inject_adapter_in_model(LoraConfig(r=LORA_RANK, lora_alpha=16, target_modules=LORA_TARGETS), thinker)
    for name, parameter in thinker.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return thinker


def layer_costs(run, sizes: tuple[int, int]) -> dict[str, float]:
    """Saved and backward bytes per token of one layer: slopes of `run(n)`'s net allocation after the forward and of
    the backward's peak, between two token counts."""
    measured = {}
    for size in sizes:
        held = {}
        saved, _ = net_and_peak(lambda: held.update(out=run(size)))
        _, backward = net_and_peak(lambda: held.pop("out").float().square().mean().backward())
        measured[size] = (saved, backward)
    low, high = sizes
    return {"saved": (measured[high][0] - measured[low][0]) / (high - low),
            "backward": (measured[high][1] - measured[low][1]) / (high - low)}


def measured_costs() -> dict[str, dict[str, float]]:
    """Per token: language model (per prompt token), vision (per 14x14 patch), audio (per mel frame)."""
    thinker = one_layer_thinker()
    model = thinker.model

    def text(tokens):
        return model.language_model(inputs_embeds=torch.randn(1, tokens, 3584, dtype=torch.bfloat16),
                                    use_cache=False).last_hidden_state

    def vision(grids):  # grids of 16x16 patches (224x224 pairs of frames)
        return model.visual(torch.randn(grids * 256, 3 * 2 * 14 * 14, dtype=torch.bfloat16),
                            grid_thw=torch.tensor([[grids, 16, 16]])).last_hidden_state

    def audio(frames):
        return model.audio_tower(torch.randn(128, frames, dtype=torch.bfloat16), feature_lens=torch.tensor([frames]),
                                 aftercnn_lens=torch.tensor([(frames - 1) // 2 + 1])).last_hidden_state

    costs = {"text": layer_costs(text, (256, 768))}
    vision_costs = layer_costs(vision, (2, 6))
    costs["vision"] = {k: v / 256 for k, v in vision_costs.items()}  # per patch
    costs["audio"] = layer_costs(audio, (400, 1200))
    return costs


def clip_tokens(sample_fps: float, max_pixels: int) -> dict[str, int]:
    """Tokens one 81-frame clip gives each tower at a sampling (the critic's video_patches and smart_size rules)."""
    frames = max(2, round(FRAMES / FPS * sample_fps))
    frames += frames % 2
    side = int(math.sqrt(max_pixels)) // 28 * 28  # a square clip
    patches = frames * (side // 14) ** 2 // 2  # temporal patch 2
    mel = round(FRAMES / FPS * 100)
    return {"patches": patches, "text": patches // 4 + mel // 4 + TEXT_TOKENS, "mel": mel}


def plan_bytes(counts, costs, tokens, base: str, checkpointing: bool) -> float:
    """One clip's peak: weights, LoRA state, activations (see the module docstring)."""
    config = thinker_config()
    layers = {"text": config.text_config.num_hidden_layers, "vision": config.vision_config.depth,
              "audio": config.audio_config.encoder_layers}
    width = {"text": 3584, "vision": 1280, "audio": 1280}
    per_tower = {"text": tokens["text"], "vision": tokens["patches"], "audio": tokens["mel"]}  # what the costs are per
    hidden = {**per_tower, "audio": tokens["mel"] // 2}  # the audio layers' hidden states: one per two mel frames
    weights = counts["base"] * BASE_BYTES[base] + counts["lora"] * LORA_STATE_BYTES
    if not checkpointing:
        saved = sum(layers[t] * costs[t]["saved"] * per_tower[t] for t in layers)
        peak = max(costs[t]["backward"] * per_tower[t] for t in layers)
        return weights + saved + peak
    copies = QUESTIONS
    inputs = sum(layers[t] * width[t] * 2 * hidden[t] for t in layers)
    one_layer = max((costs[t]["saved"] + costs[t]["backward"]) * per_tower[t] for t in layers)
    return weights + copies * (inputs + one_layer)


def table(counts, costs) -> str:
    lines = ["| sampling | tokens (vision patches / prompt) | base | checkpointing | peak | "
             + " | ".join(f"{c} GB" for c in (24, 48, 80)) + " |", "|" + "---|" * 8]
    for name, (fps, pixels) in SAMPLINGS.items():
        tokens = clip_tokens(fps, pixels)
        for base in BASE_BYTES:
            for checkpointing in (False, True):
                peak = plan_bytes(counts, costs, tokens, base, checkpointing)
                marks = " | ".join("yes" if fits(peak, card) else "no" for card in (24, 48, 80))
                lines.append(f"| {name} | {tokens['patches']:,} / {tokens['text']:,} | {base} | "
                             f"{'on' if checkpointing else 'off'} | {peak / GIB:.1f} GiB | {marks} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/critic_memory_plan.md")
    args = parser.parse_args(argv)
    counts, costs = parameter_counts(), measured_costs()
    measured = "\n".join(f"- {tower}: saved {c['saved'] / 1024:.1f} KiB, backward peak {c['backward'] / 1024:.1f} KiB per "
                         f"{'patch' if tower == 'vision' else 'mel frame' if tower == 'audio' else 'token'} per layer"
                         for tower, c in costs.items())
    text = (f"# Talking-Critic training memory plan (one clip in flight, LoRA rank {LORA_RANK})\n\n"
            f"`python -m bench.critic_memory_plan` (CPU measurements; not checked on a GPU). Thinker: "
            f"{counts['base'] / 1e9:.2f} B weights; LoRA on the critic's targets: {counts['lora'] / 1e6:.1f} M.\n\n"
            f"Measured per layer, bf16, trained LoRA:\n{measured}\n\n"
            f"A clip is {FRAMES} frames at {FPS:g} fps ({FRAMES / FPS:.1f} s). `train.micro_batch_size` clips (a pair is "
            f"two) run at once per process: multiply the activations (peak minus weights) by it. Fits: at most "
            f"{USABLE_SHARE:.0%} of the card.\n\n{table(counts, costs)}\n")
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
