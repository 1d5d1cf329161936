import copy
import math

import pytest
import torch

from ft2_core.models.fused_lora import FusedLoRALinear
from ft2_core.tlpo.experts import Expert, attach_experts, detach_experts, experts_attached
from ft2_core.tlpo.flow_dpo import dpo_loss, dpo_step, dpo_step_by_rows, flow_matching_loss
from ft2_core.tlpo.gate import StaticMix, TimestepLayerGate
from tests.conftest import make_model_inputs
from tests.ft2_core.tlpo.test_experts import random_lora


def test_masked_loss_is_the_mean_over_the_mask():
    velocity, target = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    mask = torch.zeros(2, 1, 2, 4, 4)
    mask[0, :, :, 1:3, 1:3] = 1
    mask[1] = 1
    got = flow_matching_loss(velocity, target, mask)
    sq = (velocity - target) ** 2
    assert torch.allclose(got[0], sq[0, :, :, 1:3, 1:3].mean())
    assert torch.allclose(got[1], sq[1].mean())
    assert torch.allclose(flow_matching_loss(velocity, target), sq.flatten(1).mean(1))


def test_dpo_step_equals_plain_recomputation(tiny_model):
    inputs = make_model_inputs(tiny_model, batch=2, frames=3)
    batch = {"winner": torch.randn(2, 16, 3, 8, 8), "loser": torch.randn(2, 16, 3, 8, 8), "condition": inputs["condition"],
             "text": inputs["text"], "image": inputs["image"],
             "audio": tiny_model.adapter.windows(torch.randn(2, 19, tiny_model.adapter.audio_in_dim), 9),
             "mask_w": (torch.rand(2, 1, 3, 8, 8) > 0.5).float(), "mask_l": (torch.rand(2, 1, 3, 8, 8) > 0.5).float()}
    sigma, noise, beta = torch.tensor([0.3, 0.8]), torch.randn(2, 16, 3, 8, 8), 700.0
    reference_model = copy.deepcopy(tiny_model)  # an independent plain copy without experts
    attach_experts(tiny_model, [Expert("lipsync", random_lora(tiny_model, 3, 3.0, 5))])
    tiny_model.expert_gate = StaticMix([1.0])
    lora_q = tiny_model.transformer.blocks[0].attn1.to_q
    lora_q.up.requires_grad_(True)
    try:
        out = dpo_step(tiny_model, batch, sigma, noise, beta)
        expected_losses, expected_margins = [], []
        with torch.no_grad():
            for i in range(2):
                parts = {}
                for name, x0, mask in (("w", batch["winner"], batch["mask_w"]), ("l", batch["loser"], batch["mask_l"])):
                    s = float(sigma[i])
                    x_t = (1 - s) * x0[i:i + 1] + s * noise[i:i + 1]
                    v = noise[i:i + 1] - x0[i:i + 1]
                    kwargs = dict(
                        condition=batch["condition"][i : i + 1],
                        timestep=torch.tensor([1000 * s]),
                        text=batch["text"][i : i + 1],
                        image=batch["image"][i : i + 1],
                        audio=batch["audio"].select(torch.tensor([i])),
                    )
                    m = mask[i : i + 1].expand(1, 16, 3, 8, 8)
                    for who, net in (("theta", tiny_model), ("ref", reference_model)):
                        err = (net(x_t, **kwargs) - v) ** 2
                        parts[(name, who)] = float((err * m).sum() / m.sum())
                inside = (
                    -beta / 2 * ((parts[("w", "theta")] - parts[("w", "ref")]) - (parts[("l", "theta")] - parts[("l", "ref")]))
                )
                expected_margins.append(inside)
                expected_losses.append(-math.log(1 / (1 + math.exp(-inside))))
        assert torch.allclose(out.reward_margin, torch.tensor(expected_margins), rtol=1e-4, atol=1e-4)
        assert abs(float(out.loss) - sum(expected_losses) / 2) < 1e-4
        out.loss.backward()
        assert lora_q.up.grad is not None and lora_q.up.grad.abs().sum() > 0
        assert lora_q.base.weight.grad is None  # the base stays frozen
    finally:
        detach_experts(tiny_model)


def test_winner_penalty_is_dpo_positive():
    """-log sigmoid(-beta/2 * [dw - dl + lambda * max(0, dw)]), written out; the reported margins stay the plain ones."""
    theta_w, ref_w = torch.tensor([0.30, 0.20]), torch.tensor([0.25, 0.22])  # winner worse than the reference, then better
    theta_l, ref_l = torch.tensor([0.50, 0.40]), torch.tensor([0.30, 0.30])
    beta, penalty = 40.0, 3.0
    loss, margin = dpo_loss(theta_w, ref_w, theta_l, ref_l, beta, penalty)
    expected = []
    for i in range(2):
        dw, dl = float(theta_w[i] - ref_w[i]), float(theta_l[i] - ref_l[i])
        inside = -beta / 2 * (dw - dl + penalty * max(0.0, dw))
        expected.append(math.log1p(math.exp(-inside)))
        assert abs(float(margin[i]) - (-beta / 2 * (dw - dl))) < 1e-5
    assert abs(float(loss) - sum(expected) / 2) < 1e-5
    plain, _ = dpo_loss(theta_w, ref_w, theta_l, ref_l, beta)
    assert float(loss) > float(plain)  # the first pair's winner got worse: penalised
    assert torch.allclose(
        dpo_loss(theta_w[1:], ref_w[1:], theta_l[1:], ref_l[1:], beta, penalty)[0],
        dpo_loss(theta_w[1:], ref_w[1:], theta_l[1:], ref_l[1:], beta)[0],
    )  # it got better: no penalty


def dpo_batch(model, seed=0, masks=True):
    g = torch.Generator().manual_seed(seed)
    inputs = make_model_inputs(model, batch=2, frames=3, seed=seed)
    batch = {"winner": torch.randn(2, 16, 3, 8, 8, generator=g), "loser": torch.randn(2, 16, 3, 8, 8, generator=g),
             "condition": inputs["condition"], "text": inputs["text"], "image": inputs["image"],
             "audio": model.adapter.windows(torch.randn(2, 19, model.adapter.audio_in_dim, generator=g), 9)}
    if masks:
        batch["mask_w"] = (torch.rand(2, 1, 3, 8, 8, generator=g) > 0.5).float()
        batch["mask_l"] = (torch.rand(2, 1, 3, 8, 8, generator=g) > 0.5).float()
    return batch, torch.tensor([0.3, 0.8]), torch.randn(2, 16, 3, 8, 8, generator=g)


@pytest.mark.parametrize("trained, winner_penalty", [("expert", 0.0), ("expert", 0.5), ("gate", 0.0)])
def test_rows_one_at_a_time_give_the_batched_step_s_gradient(tiny_model, trained, winner_penalty):
    """The exact gradient of the Flow-DPO loss from one row's activations at a time, for an expert (with and without
    the winner penalty) and for a gate mixing two experts; two calls of half the pairs each add up to one call."""
    experts = [Expert("lipsync", random_lora(tiny_model, 3, 3.0, 5)), Expert("motion", random_lora(tiny_model, 2, 2.0, 6))]
    gate = TimestepLayerGate(tiny_model.num_layers, 2)
    with torch.no_grad():
        gate.proj.normal_(generator=torch.Generator().manual_seed(7))
    with experts_attached(tiny_model, experts, gate):
        fused = [m for m in tiny_model.modules() if isinstance(m, FusedLoRALinear)]
        parameters = [p for m in fused for p in (m.down, m.up)] if trained == "expert" else [gate.proj, gate.bias]
        for parameter in parameters:
            parameter.requires_grad_(True)
        try:
            batch, sigma, noise = dpo_batch(tiny_model, masks=trained == "expert")
            batched = dpo_step(tiny_model, batch, sigma, noise, 700.0, winner_penalty)
            expected = torch.autograd.grad(batched.loss, parameters)
            by_rows = dpo_step_by_rows(tiny_model, batch, sigma, noise, 700.0, winner_penalty)
            got = [p.grad.clone() for p in parameters]
            for parameter in parameters:
                parameter.grad = None
            for index in (0, 1):  # gradient accumulation: pair 0, then pair 1, each weighted by its share of the batch
                one = {k: v.select(torch.tensor([index])) if k == "audio" else v[index:index + 1] for k, v in batch.items()}
                dpo_step_by_rows(tiny_model, one, sigma[index:index + 1], noise[index:index + 1], 700.0, winner_penalty,
                                 scale=0.5)
            accumulated = [p.grad.clone() for p in parameters]
        finally:
            for parameter in parameters:
                parameter.requires_grad_(False)
                parameter.grad = None
    # beta (700) times a per-row float32 difference of ~1e-7: the loss agrees to ~1e-4
    torch.testing.assert_close(by_rows.loss, batched.loss.detach(), rtol=2e-4, atol=1e-6)
    torch.testing.assert_close(by_rows.reward_margin, batched.reward_margin, rtol=1e-4, atol=1e-4)
    assert sum(float(g.abs().sum()) for g in expected) > 0
    for want, have, summed in zip(expected, got, accumulated):  # float32 sums in another order: 1e-5 of the largest
        torch.testing.assert_close(have, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
        torch.testing.assert_close(summed, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
