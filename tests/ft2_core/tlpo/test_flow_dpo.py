import copy
import math

import torch

from ft2_core.tlpo.experts import Expert, attach_experts, detach_experts
from ft2_core.tlpo.flow_dpo import dpo_loss, dpo_step, flow_matching_loss
from ft2_core.tlpo.gate import StaticMix
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
