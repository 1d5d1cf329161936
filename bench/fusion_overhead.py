"""Forward-time overhead of three rank-32 experts + gate on Wan2.1-1.3B-shaped blocks (CPU).

Variants, timed interleaved in one process (medians): the plain model; ours on the low-rank path
(one fused low-rank product per Linear, gate-scaled middle activations: what training runs); ours on
the inference path that sampling picks when cheaper (each layer's mixed weight formed in a scratch
matrix shared by every Linear of its shape); peft with the same three adapters active; and a dense
re-merge W + sum_k g_k s_k B_k A_k of every adapted weight into new tensors before each forward
(what weight-patching LoRA schedulers do when strengths change every step).

    python -m bench.fusion_overhead [--blocks 2] [--repeats 5] [--tokens 4096]

The last line printed is `fused/base=R1 scratch/base=R2 peft/base=R3 merge/base=R4`.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.models.audio_adapter import AudioAdapter
from ft2_core.models.fused_lora import FusedLoRALinear, block_linears
from ft2_core.models.talking_model import FantasyTalkingModel
from ft2_core.models.wan_keys import BLOCK_LEVEL
from ft2_core.models.wan_transformer import build_transformer
from ft2_core.tlpo.experts import Expert, attach_experts
from ft2_core.tlpo.gate import TimestepLayerGate
from ft2_core.tlpo.lora_formats import EXPERT_TARGETS, LoraModule, LoraWeights

WAN_1_3B = dict(patch_size=[1, 2, 2], num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024)
RANK, EXPERTS = 32, DIMENSION_NAMES


def random_expert(model, name, seed) -> Expert:
    g = torch.Generator().manual_seed(seed)
    modules = {
        t: LoraModule(
            torch.randn(RANK, m.in_features, generator=g) * 0.01, torch.randn(m.out_features, RANK, generator=g) * 0.01, RANK
        )
        for t, m in block_linears(model.transformer).items()
        if t.split(".", 2)[2] in EXPERT_TARGETS
    }
    return Expert(name, LoraWeights(modules, "bench"))


def peft_copy(model, experts):
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    to_diffusers = dict(BLOCK_LEVEL)
    clone = copy.deepcopy(model)
    targets = sorted({to_diffusers[t] for t in EXPERT_TARGETS})
    for expert in experts:
        inject_adapter_in_model(
            LoraConfig(r=RANK, lora_alpha=RANK, target_modules=targets), clone.transformer, adapter_name=expert.name
        )
        for target, module in expert.lora.modules.items():
            layer = clone.transformer.blocks[int(target.split(".")[1])].get_submodule(to_diffusers[target.split(".", 2)[2]])
            layer.lora_A[expert.name].weight.data.copy_(module.down)
            layer.lora_B[expert.name].weight.data.copy_(module.up)
    for module in clone.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter(list(EXPERTS))
    return clone.eval().requires_grad_(False)


def merged_params(model, experts, gate, timestep):
    """Dense W + sum_k g_lk s_k B_k A_k for every adapted weight (new tensors; the model is untouched)."""
    weights = gate(timestep)[0]
    params = {}
    for target, linear in block_linears(model.transformer).items():
        layer = int(target.split(".")[1])
        merged = linear.weight.clone()
        for k, expert in enumerate(experts):
            module = expert.lora.modules[target]
            merged.addmm_(module.up, module.down, alpha=float(weights[layer, k]) * expert.lora.scale(target))
        block_path = dict(BLOCK_LEVEL)[target.split(".", 2)[2]]
        params[f"transformer.blocks.{layer}.{block_path}.weight"] = merged
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=4096, help="video tokens (frames x 32 x 32 patches)")
    args = parser.parse_args()
    if args.tokens < 32 * 32 or args.tokens % (32 * 32):
        parser.error(f"--tokens must be a whole number of frames of 32 x 32 patches (a multiple of 1024), got {args.tokens}")
    torch.manual_seed(0)
    model = (
        FantasyTalkingModel(
            build_transformer({**WAN_1_3B, "num_layers": args.blocks}), AudioAdapter(args.blocks, 1536, 768, 2048)
        )
        .eval()
        .requires_grad_(False)
    )
    frames = args.tokens // (32 * 32)
    inputs = dict(
        latents=torch.randn(1, 16, frames, 64, 64),
        condition=torch.zeros(1, 0, frames, 64, 64),
        timestep=torch.tensor([700.0]),
        text=torch.randn(1, 512, 4096),
        image=None,
        audio=None,
    )
    experts = [random_expert(model, name, k) for k, name in enumerate(EXPERTS)]
    gate = TimestepLayerGate(args.blocks, 3, experts=EXPERTS)
    with torch.no_grad():
        gate.proj.normal_(std=0.1)
    peft_model = peft_copy(model, experts)
    fused_model = copy.deepcopy(model)  # ours and peft are each set up once, as in a sampling run
    attach_experts(fused_model, experts)
    fused_model.expert_gate = gate

    def base():
        return model(**inputs)

    def fused():
        FusedLoRALinear.path = "fused"
        return fused_model(**inputs)

    def scratch():
        FusedLoRALinear.path = "merged"
        return fused_model(**inputs)

    def peft():
        return peft_model(**inputs)

    def merge():
        return torch.func.functional_call(model, merged_params(model, experts, gate, inputs["timestep"]), kwargs=inputs)

    variants = {"base": base, "fused": fused, "scratch": scratch, "peft": peft, "merge": merge}
    times = {name: [] for name in variants}
    with torch.no_grad():
        for fn in variants.values():  # warm-up (allocator, kernels)
            fn()
        for repeat in range(args.repeats):
            order = list(variants)[repeat % len(variants) :] + list(variants)[: repeat % len(variants)]
            for name in order:
                start = time.perf_counter()
                variants[name]()
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    linear_macs = sum(m.in_features * m.out_features for m in block_linears(model.transformer).values())
    lora_macs = sum(
        3 * RANK * (m.in_features + m.out_features)
        for t, m in block_linears(model.transformer).items()
        if t.split(".", 2)[2] in EXPERT_TARGETS
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.blocks} blocks, "
        f"{args.tokens} video + 512 text tokens, 3 experts of rank {RANK}"
    )
    print(f"low-rank share of the blocks' Linear FLOPs: {lora_macs / linear_macs:.3f}")
    for name, value in medians.items():
        print(f"{name:>6}: median {value:.3f} s over {args.repeats} runs ({', '.join(f'{t:.3f}' for t in times[name])})")
    base_time = medians["base"]
    FusedLoRALinear.path = "auto"
    print(
        f"fused/base={medians['fused'] / base_time:.3f} scratch/base={medians['scratch'] / base_time:.3f} "
        f"peft/base={medians['peft'] / base_time:.3f} merge/base={medians['merge'] / base_time:.3f}"
    )


if __name__ == "__main__":
    main()
