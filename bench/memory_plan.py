"""Predicted peak GPU memory of a Wan2.1-I2V-14B FantasyTalking run (81 frames, 480p and 720p) for every
combination of the memory settings, from module sizes counted on the meta device and activation
costs measured here.

    python -m bench.memory_plan [--out bench/results/memory_plan.md]

Measured (CPU, this machine; the profiler's allocation timeline, so the live set, not the OS's view):
- bytes per video token per guidance row of one forward through a 14B-wide block in bf16 (no
  gradients): the slope between 256 and 768 tokens, so what does not grow with the video (text
  context, embeddings) drops out; again with the feed-forward in 128-token chunks, where its part
  stops growing: the difference is the feed-forward's bytes per token, which a chunk of
  FFN_CHUNK tokens costs once;
- bytes per output pixel of the Wan VAE decoder decoding two latent frames (the second gives four
  video frames, with the causal cache of the first), fp32 halved for bf16: the slope between
  128x128 and 192x192 pixels.
Counted on the meta device: the DiT (40 blocks, non-block parts), the FantasyTalking adapter, three
rank-32 experts, umT5-XXL, CLIP ViT-H/14, the Wan VAE, wav2vec2-base.

A run's stages are text, image and audio encoding, VAE encoding, sampling and VAE decoding. With
every component visiting the device for its own stage (the default, ft2_core.placement) the peak is
the largest stage; "resident" (FantasyTalkingPipeline.from_paths(..., keep_on_device=True), and the
CLI and node before this plan) keeps all weights there, so stages add up. fp8 weights are kept as stored
(models/stored_linear.py), blocks can be swapped (models/block_swap.py) and the VAE can work in tiles
(WanVAE.set_tiling): every row is a setting users can pick.
"""
from __future__ import annotations

import argparse
import itertools

import torch

from ft2_core.io.atomic import write_text_atomic

GIB = 2**30
FRAMES = 81
RESOLUTIONS = {"480p": (480, 832), "720p": (720, 1280)}
CARDS = (12, 16, 24, 48, 80)
EXPERT_RANK, EXPERTS = 32, 3
SWAP_STAGING = 2  # blocks on the device while swapping: the running one and the one being prefetched
TILE = 256  # tiled decode: output tile side in pixels (plus 32 px of overlap each side)
FFN_CHUNK = 8192  # tokens per feed-forward chunk in the plan
USABLE_SHARE = 0.95  # of a card's memory: the CUDA context and the allocator's fragmentation take the rest


def fits(peak_bytes: float, card_gb: int) -> bool:
    """Whether a planned peak fits a card of `card_gb` GB (both plans use this rule)."""
    return peak_bytes <= card_gb * GIB * USABLE_SHARE


def net_and_peak(fn) -> tuple[int, int]:
    """(bytes still allocated when fn returns, peak bytes live during it), from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.cpu_parent is None), key=lambda e: e.time_range.start)
    live = peak = 0
    for event in events:
        live += event.cpu_memory_usage
        peak = max(peak, live)
    return live, peak


def live_peak(fn) -> int:
    """Peak bytes allocated (live) during fn."""
    return net_and_peak(fn)[1]


def dit_bytes_per_token(ffn_chunk: int) -> float:
    """Slope of one 14B-wide block's forward peak in the number of video tokens (one row, bf16, no grad)."""
    from ft2_core.models.audio_adapter import AudioAdapter
    from ft2_core.models.talking_model import FantasyTalkingModel
    from ft2_core.models.wan_transformer import build_transformer, shipped_configs

    config = {**shipped_configs()["wan2.1-i2v-14b-720p"]["transformer"], "num_layers": 1}
    torch.manual_seed(0)
    model = FantasyTalkingModel(build_transformer(config), AudioAdapter(1, 5120, 768, 2048)).to(torch.bfloat16).eval()
    model.ffn_chunk_tokens = ffn_chunk
    peaks = {}
    for frames in (1, 3):  # 16x16 patches per latent frame: 256 and 768 tokens
        inputs = dict(latents=torch.randn(1, 16, frames, 32, 32, dtype=torch.bfloat16),
                      condition=torch.randn(1, 20, frames, 32, 32, dtype=torch.bfloat16),
                      timestep=torch.tensor([500.0]), text=torch.randn(1, 512, 4096, dtype=torch.bfloat16),
                      image=torch.randn(1, 257, 1280, dtype=torch.bfloat16), audio=None)
        with torch.no_grad():
            peaks[frames * 256] = live_peak(lambda: model(**inputs))
    return (peaks[768] - peaks[256]) / 512


def vae_decode_bytes_per_pixel() -> float:
    """Slope of the Wan VAE decoder's peak (one latent frame -> its video frames) in output pixels, bf16."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan().eval()
    peaks = {}
    for side in (16, 24):  # latent side -> 128 and 192 output pixels
        latents = torch.randn(1, 16, 2, side, side)
        with torch.no_grad():
            peaks[(side * 8) ** 2] = live_peak(lambda: vae.decode(latents))
    (small, low), (large, high) = sorted(peaks.items())
    return (high - low) / (large - small) / 2  # fp32 measured, bf16 planned


def module_sizes() -> dict[str, float]:
    """Parameter counts (meta device) in units used below: block Linear weights, other block params, the rest."""
    from diffusers import AutoencoderKLWan
    from transformers import CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel, Wav2Vec2Config, Wav2Vec2Model

    from ft2_core.models.audio_adapter import AudioAdapter
    from ft2_core.models.fused_lora import block_linears
    from ft2_core.models.wan_transformer import build_transformer, shipped_configs
    from ft2_core.tlpo.lora_formats import EXPERT_TARGETS

    with torch.device("meta"):
        dit = build_transformer(shipped_configs()["wan2.1-i2v-14b-720p"]["transformer"], device="meta")
        adapter = AudioAdapter(40, 5120, 768, 2048)
        text = UMT5EncoderModel(UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                                           num_heads=64, feed_forward_proj="gated-gelu"))
        clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                                                num_attention_heads=16, patch_size=14, image_size=224))
        vae = AutoencoderKLWan()
        wav2vec = Wav2Vec2Model(Wav2Vec2Config())
    linears = block_linears(dit)
    block_linear = sum(m.weight.numel() for m in linears.values()) / len(dit.blocks)
    block_all = sum(p.numel() for p in dit.blocks.parameters()) / len(dit.blocks)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    lora = sum(EXPERTS * EXPERT_RANK * (m.in_features + m.out_features) for t, m in linears.items()
               if t.split(".", 2)[2] in EXPERT_TARGETS)
    shapes = {tuple(m.weight.shape) for t, m in linears.items() if t.split(".", 2)[2] in EXPERT_TARGETS}
    return {"blocks": len(dit.blocks), "block_linear": block_linear, "block_other": block_all - block_linear,
            "dit_rest": count(dit) - block_all * len(dit.blocks), "adapter": count(adapter), "experts": lora,
            "merge_scratch": sum(a * b for a, b in shapes), "text": count(text), "clip": count(clip), "vae": count(vae),
            "wav2vec": count(wav2vec)}


def video_tokens(resolution: str) -> int:
    height, width = RESOLUTIONS[resolution]
    return ((FRAMES - 1) // 4 + 1) * (height // 16) * (width // 16)


def plan(sizes, per_token, per_pixel, resolution, weights, swapped, sequential, chunked, tiled, resident) -> dict:
    """Predicted bytes per stage and the peak for one setting (bf16 everywhere except fp8 block Linears)."""
    linear_bytes = 1 if weights == "fp8" else 2
    block = sizes["block_linear"] * linear_bytes + sizes["block_other"] * 2
    on_device_blocks = sizes["blocks"] - swapped + (SWAP_STAGING if swapped else 0)
    dit = on_device_blocks * block + sizes["dit_rest"] * 2 + sizes["adapter"] * 2
    experts = sizes["experts"] * 2 * on_device_blocks / sizes["blocks"] + sizes["merge_scratch"] * 2
    rows = 1 if sequential else 2  # upstream's cfg 5 / audio cfg 5 runs two rows (see guidance)
    activations = rows * video_tokens(resolution) * per_token["whole"]
    if chunked:  # the feed-forward's share no longer grows with the tokens: one chunk's worth instead
        ffn_share = per_token["whole"] - per_token["chunked"]
        activations = rows * video_tokens(resolution) * per_token["chunked"] + FFN_CHUNK * ffn_share
    height, width = RESOLUTIONS[resolution]
    pixels = (TILE + 64) ** 2 if tiled else height * width
    stages = {
        "text": sizes["text"] * 2,
        "image": sizes["clip"] * 2,
        "audio": sizes["wav2vec"] * 2,
        "sampling": dit + experts + activations,
        "decode": sizes["vae"] * 2 + pixels * per_pixel,
    }
    peak = sum(stages.values()) if resident else max(stages.values())
    return {"stages": stages, "peak": peak, "activations": activations, "dit": dit}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results/memory_plan.md")
    args = parser.parse_args(argv)
    sizes = module_sizes()
    per_token = {"whole": dit_bytes_per_token(0), "chunked": dit_bytes_per_token(128)}
    per_pixel = vae_decode_bytes_per_pixel()
    lines = [
        f"# Memory plan: Wan2.1-I2V-14B + FantasyTalking, {FRAMES} frames",
        "",
        f"Command: `python -m bench.memory_plan --out {args.out}`",
        "",
        f"Measured: {per_token['whole'] / 1024:.1f} KiB per video token per row (one 14B-wide block, bf16, no grad), "
        f"{per_token['chunked'] / 1024:.1f} KiB with the FFN in chunks (plus one {FFN_CHUNK}-token chunk's "
        f"{(per_token['whole'] - per_token['chunked']) * FFN_CHUNK / GIB:.2f} GiB); Wan VAE decode "
        f"{per_pixel:.0f} bytes per output pixel (bf16). Counted (meta device): DiT "
        f"{(sizes['blocks'] * (sizes['block_linear'] + sizes['block_other']) + sizes['dit_rest']) / 1e9:.2f} B parameters "
        f"({sizes['block_linear'] / 1e6:.0f} M Linear weights per block), adapter {sizes['adapter'] / 1e6:.0f} M, "
        f"3 rank-{EXPERT_RANK} experts {sizes['experts'] / 1e6:.0f} M, umT5-XXL {sizes['text'] / 1e9:.2f} B, "
        f"CLIP-H {sizes['clip'] / 1e6:.0f} M, VAE {sizes['vae'] / 1e6:.0f} M, wav2vec2 {sizes['wav2vec'] / 1e6:.0f} M.",
        "",
        "| resolution | weights | blocks swapped | sequential rows | FFN chunks | tiled decode | placement | "
        "sampling GiB | decode GiB | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for resolution, weights, swapped, sequential, chunked, tiled, resident in itertools.product(
        RESOLUTIONS, ("bf16", "fp8"), (0, 10, 20, 30, 40), (False, True), (False, True), (False, True), (True, False)
    ):
        if resident and (swapped or sequential or chunked or tiled or weights == "fp8"):
            continue  # the resident row is the baseline: everything on the device, nothing bounded
        result = plan(sizes, per_token, per_pixel, resolution, weights, swapped, sequential, chunked, tiled, resident)
        rows.append(((resolution, weights, swapped, sequential, chunked, tiled, resident), result))
        lines.append(
            f"| {resolution} | {weights} | {swapped} | {'yes' if sequential else 'no'} | {'yes' if chunked else 'no'} "
            f"| {'yes' if tiled else 'no'} | {'resident' if resident else 'visiting'} "
            f"| {result['stages']['sampling'] / GIB:.1f} | {result['stages']['decode'] / GIB:.1f} | {result['peak'] / GIB:.1f} |"
        )
    lines += [
        "",
        "## What fits (fewest blocks swapped, then bf16 before fp8, then fewest other settings)",
        "",
        "| card | " + " | ".join(RESOLUTIONS) + " |",
        "|---|" + "---|" * len(RESOLUTIONS),
    ]
    for card in CARDS:
        cells = []
        for resolution in RESOLUTIONS:
            fitting = [(key, r) for key, r in rows if key[0] == resolution and not key[6] and fits(r["peak"], card)]
            if not fitting:
                cells.append("does not fit")
                continue
            key, result = min(fitting, key=lambda kr: (kr[0][2], kr[0][1] == "fp8", kr[0][3] + kr[0][4] + kr[0][5]))
            _, weights, swapped, sequential, chunked, tiled, _ = key
            settings = [weights, f"{swapped} blocks swapped"] + [
                name for name, on in (("sequential rows", sequential), ("FFN chunks", chunked), ("tiled decode", tiled)) if on
            ]
            cells.append(f"{', '.join(settings)} ({result['peak'] / GIB:.1f} GiB)")
        lines.append(f"| {card} GB | " + " | ".join(cells) + " |")
    lookup = {key: r for key, r in rows}
    lines += ["", "Each setting alone, from the visiting bf16 row with nothing else on (sampling stage / decode stage):", ""]
    for resolution in RESOLUTIONS:
        plain = lookup[(resolution, "bf16", 0, False, False, False, False)]
        saved = {
            "sequential rows": plain["stages"]["sampling"]
            - lookup[(resolution, "bf16", 0, True, False, False, False)]["stages"]["sampling"],
            "FFN chunks": plain["stages"]["sampling"]
            - lookup[(resolution, "bf16", 0, False, True, False, False)]["stages"]["sampling"],
            "fp8 weights": plain["stages"]["sampling"]
            - lookup[(resolution, "fp8", 0, False, False, False, False)]["stages"]["sampling"],
            "10 blocks swapped": plain["stages"]["sampling"]
            - lookup[(resolution, "bf16", 10, False, False, False, False)]["stages"]["sampling"],
            "tiled decode": plain["stages"]["decode"]
            - lookup[(resolution, "bf16", 0, False, False, True, False)]["stages"]["decode"],
        }
        lines.append(f"- {resolution}: " + ", ".join(f"{name} -{gib / GIB:.1f} GiB" for name, gib in saved.items()))
    baseline = {res: r["peak"] / GIB for (res, *_, resident), r in rows if resident}
    lines += [
        "",
        "Baseline (everything resident on the device, bf16, two rows at once, whole FFN, whole-frame decode): "
        + ", ".join(f"{res} {gib:.1f} GiB" for res, gib in baseline.items())
        + ". A setting fits a card when its peak is "
        "at most 95% of it (the CUDA context and the allocator's fragmentation take the rest).",
    ]
    text = "\n".join(lines) + "\n"
    write_text_atomic(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
