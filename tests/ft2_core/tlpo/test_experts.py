import copy

import pytest
import torch
from safetensors.torch import save_file

from ft2_core.errors import InputError
from ft2_core.models.fused_lora import FusedLoRALinear, block_linears
from ft2_core.models.wan_keys import BLOCK_LEVEL
from ft2_core.tlpo.experts import Expert, attach_experts, detach_experts, experts_attached
from ft2_core.tlpo.gate import StaticMix, TimestepLayerGate
from ft2_core.tlpo.lora_formats import EXPERT_TARGETS, LoraModule, LoraWeights, load_lora, save_expert
from tests.conftest import make_model_inputs

TO_DIFFUSERS = dict(BLOCK_LEVEL)


def random_lora(model, rank, alpha, seed, targets=EXPERT_TARGETS):
    g = torch.Generator().manual_seed(seed)
    modules = {}
    for name, linear in block_linears(model.transformer).items():
        if name.split(".", 2)[2] in targets:
            modules[name] = LoraModule(torch.randn(rank, linear.in_features, generator=g) * 0.3,
                                       torch.randn(linear.out_features, rank, generator=g) * 0.3, alpha)
    return LoraWeights(modules, "test")


@pytest.fixture(scope="module")
def experts(tiny_model):
    return [Expert("motion", random_lora(tiny_model, 4, 8.0, 1), 1.0),
            Expert("lipsync", random_lora(tiny_model, 3, 3.0, 2), 0.7),
            Expert("quality", random_lora(tiny_model, 2, None, 3, targets=("ffn.0", "ffn.2", "self_attn.q")), 1.2)]


def random_gate(layers, seed=0):
    gate = TimestepLayerGate(layers, 3)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        gate.proj.copy_(torch.randn(gate.proj.shape, generator=g))
        gate.bias.copy_(torch.randn(gate.bias.shape, generator=g) * 0.1)
    return gate


def dense_reference(model, experts, weights, inputs, row):
    """Plain merge: W + sum_k g_lk * strength_k * alpha_k/r_k * B_k A_k per layer, on a copy; one sample."""
    merged = copy.deepcopy(model)
    for name, linear in block_linears(merged.transformer).items():
        layer = int(name.split(".")[1])
        for k, expert in enumerate(experts):
            module = expert.lora.modules.get(name)
            if module is not None:
                alpha = module.alpha if module.alpha is not None else module.rank
                scale = expert.strength * alpha / module.rank
                linear.weight.data += weights[layer, k] * scale * module.up @ module.down
    single = {k: v[row:row + 1] for k, v in inputs.items()}
    with torch.no_grad():
        return merged(**single, audio=None)


@pytest.mark.parametrize("timesteps", [(999.0, 0.0), (500.0, 120.0), (37.0, 37.0)])
def test_fused_equals_dense_merge_with_random_gate(tiny_model, experts, timesteps):
    gate = random_gate(tiny_model.num_layers)
    inputs = make_model_inputs(tiny_model, batch=2)
    inputs["timestep"] = torch.tensor(timesteps)
    with torch.no_grad():
        weights = gate(inputs["timestep"])
    with experts_attached(tiny_model, experts, gate), torch.no_grad():
        fused = tiny_model(**inputs, audio=None)
    for row in range(2):
        torch.testing.assert_close(fused[row:row + 1], dense_reference(tiny_model, experts, weights[row], inputs, row),
                                   rtol=1e-4, atol=1e-5)


def test_per_layer_merge_equals_the_fused_path_and_shares_one_scratch_per_shape(tiny_model, experts, monkeypatch):
    """Sampling rows share a timestep: one merged weight per layer serves them, equal to the low-rank path."""
    from ft2_core.models import fused_lora

    gate = random_gate(tiny_model.num_layers)
    inputs = make_model_inputs(tiny_model, batch=3)
    inputs["timestep"] = torch.full((3,), 412.0)
    outputs, merged_calls = {}, []
    original = FusedLoRALinear.merged_forward
    monkeypatch.setattr(FusedLoRALinear, "merged_forward", lambda self, x: merged_calls.append(1) or original(self, x))
    for path in ("fused", "merged", "auto"):
        monkeypatch.setattr(FusedLoRALinear, "path", path)
        with experts_attached(tiny_model, experts, gate), torch.no_grad():
            outputs[path] = tiny_model(**inputs, audio=None)
            if path == "merged":
                shapes = {tuple(m.base.weight.shape) for m in block_linears(tiny_model.transformer).values()
                          if isinstance(m, FusedLoRALinear)}
                assert len(fused_lora._SCRATCH) == len(shapes)  # one scratch per weight shape, not per layer
        assert not fused_lora._SCRATCH  # released after the run
    torch.testing.assert_close(outputs["merged"], outputs["fused"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs["auto"], outputs["fused"], rtol=1e-5, atol=1e-5)
    assert merged_calls  # the forced path really merged


def test_training_never_merges(tiny_model, experts, monkeypatch):
    monkeypatch.setattr(FusedLoRALinear, "path", "merged")
    monkeypatch.setattr(FusedLoRALinear, "merged_forward", lambda self, x: pytest.fail("merged with gradients on"))
    inputs = make_model_inputs(tiny_model, batch=2)
    inputs["timestep"] = torch.full((2,), 300.0)
    with experts_attached(tiny_model, experts, random_gate(tiny_model.num_layers)):
        tiny_model(**inputs, audio=None).sum().backward()


@pytest.mark.parametrize("timesteps", [(800.0, 90.0), (250.0, 250.0)])
def test_other_loras_apply_at_fixed_strength_beside_gated_experts(tiny_model, experts, timesteps):
    """A step-distillation or style LoRA rides the same fused path at weight 1 x its strength, whatever the gate says."""
    gate = random_gate(tiny_model.num_layers)
    extra = Expert("lora0", random_lora(tiny_model, 3, 6.0, 9), 0.8)
    inputs = make_model_inputs(tiny_model, batch=2)
    inputs["timestep"] = torch.tensor(timesteps)
    with torch.no_grad():
        weights = torch.cat([gate(inputs["timestep"]), torch.ones(2, tiny_model.num_layers, 1)], dim=-1)
    with experts_attached(tiny_model, experts, gate, [extra]), torch.no_grad():
        fused = tiny_model(**inputs, audio=None)
    for row in range(2):
        torch.testing.assert_close(fused[row:row + 1], dense_reference(tiny_model, experts + [extra], weights[row], inputs, row),
                                   rtol=1e-4, atol=1e-5)
    with experts_attached(tiny_model, [], None, [extra]), torch.no_grad():  # a LoRA alone, no experts
        alone = tiny_model(**inputs, audio=None)
    torch.testing.assert_close(alone[:1], dense_reference(tiny_model, [extra], torch.ones(tiny_model.num_layers, 1), inputs, 0),
                               rtol=1e-4, atol=1e-5)


def test_equals_peft_with_constant_weights(tiny_model, experts):
    from peft import LoraConfig, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    reference = copy.deepcopy(tiny_model.transformer)
    weights = [0.5, 1.5, 1.0]
    for k, expert in enumerate(experts):
        targets = sorted({TO_DIFFUSERS[name.split(".", 2)[2]] for name in expert.lora.modules})
        rank = next(iter(expert.lora.ranks))
        alpha = next(iter(expert.lora.alphas)) or rank
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0)
        inject_adapter_in_model(config, reference, adapter_name=expert.name)
        for name, module in expert.lora.modules.items():
            layer = reference.blocks[int(name.split(".")[1])].get_submodule(TO_DIFFUSERS[name.split(".", 2)[2]])
            layer.lora_A[expert.name].weight.data = module.down.clone()
            layer.lora_B[expert.name].weight.data = module.up * weights[k] * expert.strength
    for module in reference.modules():
        if isinstance(module, LoraLayer):
            module.set_adapter([e.name for e in experts if e.name in module.lora_A])
    inputs = make_model_inputs(tiny_model, batch=2)
    with torch.no_grad():
        x = torch.cat([inputs["latents"], inputs["condition"]], dim=1)
        want = reference(x, inputs["timestep"], inputs["text"], inputs["image"], return_dict=False)[0]
        with experts_attached(tiny_model, experts, StaticMix(weights)):
            got = tiny_model(**inputs, audio=None)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def write_format(lora: LoraWeights, fmt: str, path):
    """Each layout as its tool writes it (independent of our reader)."""
    state = {}
    for name, m in lora.modules.items():
        block, module = name.split(".")[1], name.split(".", 2)[2]
        alpha = torch.tensor(m.alpha if m.alpha is not None else float(m.rank))
        if fmt == "comfyui_down_up":
            p = f"diffusion_model.blocks.{block}.{module}"
            state |= {f"{p}.lora_down.weight": m.down, f"{p}.lora_up.weight": m.up, f"{p}.alpha": alpha}
        elif fmt == "musubi":
            p = f"lora_unet_blocks_{block}_{module.replace('.', '_')}"
            state |= {f"{p}.lora_down.weight": m.down, f"{p}.lora_up.weight": m.up, f"{p}.alpha": alpha}
        elif fmt == "diffusers":
            p = f"transformer.blocks.{block}.{TO_DIFFUSERS[module]}"
            state |= {f"{p}.lora_A.weight": m.down * alpha / m.rank, f"{p}.lora_B.weight": m.up}  # no alpha: scale 1
        elif fmt == "diffsynth":
            p = f"blocks.{block}.{module}"
            state |= {f"{p}.lora_A.default.weight": m.down * alpha / m.rank, f"{p}.lora_B.default.weight": m.up}
        elif fmt == "diffusion_pipe":
            p = f"diffusion_model.blocks.{block}.{module}"
            state |= {f"{p}.lora_A.weight": m.down * alpha / m.rank, f"{p}.lora_B.weight": m.up}
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def test_every_format_gives_the_same_output(tmp_path, tiny_model, experts):
    inputs = make_model_inputs(tiny_model, batch=1)
    outputs = {}
    for fmt in ("ours", "comfyui_down_up", "musubi", "diffusers", "diffsynth", "diffusion_pipe"):
        path = tmp_path / f"{fmt}.safetensors"
        if fmt == "ours":
            save_expert(experts[0].lora, path, "motion", "wan2.1-i2v-test")
        else:
            write_format(experts[0].lora, fmt, path)
        loaded = load_lora(path)
        assert len(loaded.modules) == len(experts[0].lora.modules), fmt
        with experts_attached(tiny_model, [Expert("motion", loaded)], StaticMix([1.0])), torch.no_grad():
            outputs[fmt] = tiny_model(**inputs, audio=None)
    for fmt, out in outputs.items():
        torch.testing.assert_close(out, outputs["ours"], rtol=1e-5, atol=1e-6, msg=fmt)
    assert load_lora(tmp_path / "musubi.safetensors").format == "musubi-tuner"
    assert load_lora(tmp_path / "diffsynth.safetensors").format == "diffsynth"


def test_only_the_gate_learns(tiny_model, experts):
    gate = random_gate(tiny_model.num_layers)
    inputs = make_model_inputs(tiny_model, batch=2)
    with experts_attached(tiny_model, experts, gate):
        tiny_model(**inputs, audio=None).square().mean().backward()
        trainable = [n for n, p in tiny_model.named_parameters() if p.requires_grad]
        with_grad = [n for n, p in tiny_model.named_parameters() if p.grad is not None]
    assert trainable == with_grad == ["expert_gate.proj", "expert_gate.bias"]
    assert gate.proj.grad is not None and gate.proj.grad.abs().sum() > 0 and gate.bias.grad.abs().sum() > 0


def test_detach_restores_the_plain_model(tiny_model, experts):
    before = dict(block_linears(tiny_model.transformer))
    inputs = make_model_inputs(tiny_model, batch=1)
    with torch.no_grad():
        plain = tiny_model(**inputs, audio=None)
        attach_experts(tiny_model, experts)
        detach_experts(tiny_model)
        after = tiny_model(**inputs, audio=None)
    assert all(before[k] is v for k, v in block_linears(tiny_model.transformer).items())
    assert torch.equal(plain, after)


def test_files_for_another_model_are_refused(tmp_path, tiny_model):
    wide = LoraWeights({"blocks.0.self_attn.q": LoraModule(torch.zeros(4, 64), torch.zeros(64, 4), 4.0)}, "test")
    with pytest.raises(InputError, match="blocks.0.self_attn.q is 64x64 but the model's layer is 32x32"):
        attach_experts(tiny_model, [Expert("motion", wide)])
    deep = LoraWeights({"blocks.39.ffn.0": LoraModule(torch.zeros(4, 32), torch.zeros(64, 4), 4.0)}, "test")
    with pytest.raises(InputError, match="targets 40 blocks but the model has 2"):
        attach_experts(tiny_model, [Expert("motion", deep)])
    t2v = LoraWeights({"blocks.0.ffn.0": LoraModule(torch.zeros(4, 32), torch.zeros(64, 4), 4.0)}, "test",
                      metadata={"ss_base_model_version": "wan_2.1_t2v_14b"})
    with pytest.raises(InputError, match="made for a text-to-video model"):
        attach_experts(tiny_model, [Expert("motion", t2v)])
    junk = tmp_path / "junk.safetensors"
    save_file({"diffusion_model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(2, 32),
               "diffusion_model.blocks.0.self_attn.q.lora_B.weight": torch.zeros(32, 2),
               "diffusion_model.blocks.0.vace.x.lora_A.weight": torch.zeros(2, 2)}, str(junk))
    with pytest.raises(InputError, match="1 keys are not Wan2.1 block LoRA keys.*vace.x"):
        load_lora(junk)
    assert all(not hasattr(m, "base") for m in block_linears(tiny_model.transformer).values())  # nothing attached


@pytest.mark.parametrize("shared_timestep", [False, True])
def test_experts_on_fp8_stored_weights_match_the_upcast_model(tmp_path, tiny_model, experts, shared_timestep):
    """The low-rank path and the per-layer merge both work over a base kept in fp8 (scale applied)."""
    from ft2_core.models.talking_model import FantasyTalkingModel
    from ft2_core.models.wan_keys import diffusers_to_original
    from ft2_core.models.wan_transformer import load_transformer_file
    from ft2_core.tiny import TINY_CONFIG
    from tests.ft2_core.models.test_wan_transformer import fp8_scaled

    path = tmp_path / "wan_fp8_scaled.safetensors"
    original = diffusers_to_original(tiny_model.transformer.state_dict())
    save_file({k: v.contiguous() for k, v in fp8_scaled(original).items()}, str(path))
    models = [
        FantasyTalkingModel(load_transformer_file(path, TINY_CONFIG, keep_stored=keep)[0], tiny_model.adapter).eval()
        for keep in (True, False)
    ]
    inputs = make_model_inputs(tiny_model, batch=2)
    inputs["timestep"] = torch.tensor([400.0, 400.0] if shared_timestep else [900.0, 100.0])
    outputs = []
    for model in models:
        with experts_attached(model, experts, random_gate(model.num_layers)), torch.no_grad():
            outputs.append(model(**inputs, audio=None))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
