"""Training through swapped blocks and offloaded checkpoints gives the gradients of the resident model."""
import pytest
import torch

from ft2_core.models.block_swap import BlockSwap
from ft2_core.models.fused_lora import FusedLoRALinear
from ft2_core.placement import visiting
from ft2_core.tlpo.experts import Expert, experts_attached
from ft2_core.tlpo.gate import TimestepLayerGate
from tests.conftest import make_model_inputs
from tests.ft2_core.tlpo.test_experts import random_lora

ELSEWHERE = torch.device("cpu", 0)  # compares unequal to the CPU, so every visit really copies into new buffers


@pytest.fixture()
def training(tiny_model):
    """Two experts and a gate attached, all trainable (as in gate training, where both kinds of parameter get
    gradients through each block); the session's model is restored afterwards."""
    model = tiny_model
    experts = [Expert("motion", random_lora(model, 4, 8.0, 1)), Expert("lipsync", random_lora(model, 3, 3.0, 2))]
    gate = TimestepLayerGate(model.num_layers, 2)
    with torch.no_grad():
        gate.proj.normal_(generator=torch.Generator().manual_seed(5))
        gate.bias.normal_(generator=torch.Generator().manual_seed(6))
    with experts_attached(model, experts, gate):
        fused = [m for m in model.modules() if isinstance(m, FusedLoRALinear)]
        trainable = {f"lora{i}.{n}": p for i, m in enumerate(fused) for n, p in (("down", m.down), ("up", m.up))}
        trainable.update(gate_proj=gate.proj, gate_bias=gate.bias)
        for parameter in trainable.values():
            parameter.requires_grad_(True)
        yield model, trainable
        for parameter in trainable.values():
            parameter.requires_grad_(False)
            parameter.grad = None
    model.block_swap, model.offload_checkpoints, model.gradient_checkpointing = None, False, False


def gradients(model, trainable, device="cpu", autocast=None):
    """Loss gradients of every trainable tensor for two rows at different timesteps (as a DPO batch has); with
    `autocast` (a dtype) the forward runs under CPU autocast and the backward outside it, as a training step does."""
    inputs = make_model_inputs(model, batch=2)
    features = torch.randn(2, 30, model.adapter.audio_in_dim, generator=torch.Generator().manual_seed(1))
    windows = model.adapter.windows(features, 17)
    with visiting(model, device):
        for parameter in trainable.values():
            parameter.grad = None
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            loss = model(**moved, audio=windows.to(device)).float().square().mean()
        loss.backward()
        out = loss
        return {name: p.grad.detach().to("cpu").clone() for name, p in trainable.items()}, out.detach().to("cpu")


def test_swapped_blocks_train_with_the_resident_gradients(training):
    model, trainable = training
    resident, resident_out = gradients(model, trainable)
    model.swap_blocks(2)
    swapped, swapped_out = gradients(model, trainable, ELSEWHERE)  # real copies at every visit
    torch.testing.assert_close(swapped_out, resident_out, rtol=0, atol=1e-6)
    for name in resident:
        torch.testing.assert_close(swapped[name], resident[name], rtol=1e-5, atol=1e-7, msg=name)
    assert all(resident[name].abs().sum() > 0 for name in resident)  # every trainable tensor did get a gradient
    assert not model.block_swap.visiting  # nothing left on the device
    # the trained tensors never swap: they stay with the resident part (and their gradients with them)
    assert not any(id(p) in model.block_swap.swapped_tensors() for p in trainable.values())


def test_blocks_visit_in_the_forward_and_again_in_reverse_in_the_backward(training, monkeypatch):
    model, trainable = training
    model.swap_blocks(2)
    events = []
    bring, after = BlockSwap._bring, BlockSwap.after
    monkeypatch.setattr(BlockSwap, "_bring", lambda self, i, d: events.append(("in", i)) or bring(self, i, d))
    monkeypatch.setattr(BlockSwap, "after", lambda self, i: events.append(("out", i)) or after(self, i))
    gradients(model, trainable, ELSEWHERE)
    assert events == [("in", 0), ("in", 1), ("out", 0), ("out", 1),  # forward: 1 prefetched while 0 runs
                      ("in", 1), ("in", 0), ("out", 1), ("out", 0)]  # backward, in reverse: 0 prefetched while 1 runs


@pytest.mark.parametrize("swap", [0, 1])
def test_offloaded_checkpoints_give_the_same_gradients(training, swap):
    model, trainable = training
    resident, resident_out = gradients(model, trainable)
    model.offload_checkpoints = True
    model.swap_blocks(swap)
    offloaded, offloaded_out = gradients(model, trainable, ELSEWHERE)
    torch.testing.assert_close(offloaded_out, resident_out, rtol=0, atol=1e-6)
    for name in resident:
        torch.testing.assert_close(offloaded[name], resident[name], rtol=1e-5, atol=1e-7, msg=name)


def test_recomputation_runs_under_the_forward_s_autocast(training):
    """In bf16 autocast the recomputed backward of swapped blocks equals torch's own checkpointing (which restores
    autocast too)."""
    model, trainable = training
    results = []
    for recompute in (False, True):
        model.gradient_checkpointing = True
        model.swap_blocks(2 if recompute else 0)
        results.append(gradients(model, trainable, autocast=torch.bfloat16))
    for name in results[0][0]:
        torch.testing.assert_close(results[1][0][name], results[0][0][name], rtol=0, atol=0, msg=name)
