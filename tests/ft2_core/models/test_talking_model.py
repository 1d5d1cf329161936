import copy
import math

import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.models import talking_model
from ft2_core.models.audio_windows import split_windows
from ft2_core.models.talking_model import FantasyTalkingModel, audio_attention, folded_padding
from tests.conftest import make_model_inputs


def plain_audio_attention(query, kv, windows, heads):
    """Per batch row, per latent frame, per head: softmax(q k^T / sqrt(d)) v over the valid tokens only."""
    batch, tokens, dim = query.shape
    frames = windows.tokens.shape[1]
    per_frame, head_dim = tokens // frames, dim // heads
    out = torch.zeros_like(query)
    for b in range(batch):
        for f in range(frames):
            valid = windows.tokens[b, f, : int(windows.lengths[f])]
            k, v = kv.k_proj(valid), kv.v_proj(valid)
            q = query[b, f * per_frame:(f + 1) * per_frame]
            for h in range(heads):
                sl = slice(h * head_dim, (h + 1) * head_dim)
                weights = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(head_dim), dim=-1)
                out[b, f * per_frame:(f + 1) * per_frame, sl] = weights @ v[:, sl]
    return out


def test_without_audio_equals_diffusers_forward(tiny_model):
    inputs = make_model_inputs(tiny_model)
    with torch.no_grad():
        ours = tiny_model(**inputs, audio=None)
        x = torch.cat([inputs["latents"], inputs["condition"]], dim=1)
        reference = tiny_model.transformer(x, inputs["timestep"], inputs["text"], inputs["image"], return_dict=False)[0]
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def wan_padded_text(inputs: dict, lengths: list[int]) -> dict:
    """The inputs with each row's prompt `lengths[i]` tokens long, then zeros to 512, as Wan pads prompts."""
    text = inputs["text"].clone()
    for row, length in enumerate(lengths):
        text[row, length:] = 0.0
    return {**inputs, "text": text}


def test_padded_text_folded_equals_diffusers_attention_over_every_token(tiny_model):
    """Rows padded to different lengths (a prompt and a shorter negative prompt): diffusers' forward attends to all
    512 tokens, ours to the repeated padding token once with the weight of its copies; the same prediction."""
    inputs = wan_padded_text(make_model_inputs(tiny_model), [7, 3])
    folded, bias = folded_padding(tiny_model.transformer.condition_embedder.text_embedder(inputs["text"]))
    assert folded.shape[1] == 8 and math.isclose(float(bias[0, 0, 0, -1]), math.log(505), rel_tol=1e-6)
    with torch.no_grad():
        ours = tiny_model(**inputs, audio=None)
        x = torch.cat([inputs["latents"], inputs["condition"]], dim=1)
        reference = tiny_model.transformer(x, inputs["timestep"], inputs["text"], inputs["image"], return_dict=False)[0]
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)


def test_padded_text_folded_gives_the_same_loss_and_parameter_gradients(tiny_model, monkeypatch):
    inputs = wan_padded_text(make_model_inputs(tiny_model, seed=3), [20, 20])
    windows = tiny_model.adapter.windows(torch.randn(2, 30, tiny_model.adapter.audio_in_dim), 17)
    parameters = [p for p in tiny_model.parameters() if p.requires_grad]

    def loss_and_grads():
        text = inputs["text"].clone().requires_grad_(True)
        loss = tiny_model(**{**inputs, "text": text}, audio=windows).square().mean()
        return (loss, *torch.autograd.grad(loss, [text, *parameters], allow_unused=True))

    folded = list(loss_and_grads())
    monkeypatch.setattr(talking_model, "folded_padding", lambda text: (text, None))
    every_token = list(loss_and_grads())
    # the prompt's tokens get the same gradient; the padding's copies share theirs at the one copy kept (index 20)
    for grads in (folded, every_token):
        grads[1] = torch.cat([grads[1][:, :20], grads[1][:, 20:].sum(1, keepdim=True)], dim=1)
    for a, b in zip(folded, every_token):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_in_bf16_folding_stays_within_bf16_s_own_error(tiny_model, monkeypatch):
    """In bf16 the fold's log-count bias is rounded to bf16: the folded model is as far from the fp32 one as bf16 makes
    the unfolded model (mean absolute error at most 1.25x), not further."""
    inputs = wan_padded_text(make_model_inputs(tiny_model, seed=5), [9, 4])
    low = copy.deepcopy(tiny_model).to(torch.bfloat16)
    low_inputs = {k: v.to(torch.bfloat16) if k != "timestep" else v for k, v in inputs.items()}
    with torch.no_grad():
        folded = low(**low_inputs, audio=None).float()
        monkeypatch.setattr(talking_model, "folded_padding", lambda text: (text, None))
        every_token = low(**low_inputs, audio=None).float()
        reference = tiny_model(**inputs, audio=None)
    unfolded_error = float((every_token - reference).abs().mean())
    assert 0 < float((folded - reference).abs().mean()) <= 1.25 * unfolded_error


def test_text_without_a_repeated_last_token_is_left_whole():
    text = torch.randn(2, 16, 8)
    assert folded_padding(text)[1] is None and folded_padding(text)[0] is text


def test_audio_attention_matches_plain_loop(tiny_model):
    kv = tiny_model.adapter.blocks[0]
    windows = split_windows(torch.randn(2, 37, kv.k_proj.in_features), 17)
    query = torch.randn(2, 5 * 6, kv.k_proj.out_features)
    with torch.no_grad():
        got = audio_attention(query, kv, windows, heads=2)
        want = plain_audio_attention(query, kv, windows, heads=2)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_audio_scale_is_per_row(tiny_model):
    inputs = make_model_inputs(tiny_model, batch=3, frames=5)
    feats = torch.randn(1, 30, tiny_model.adapter.audio_in_dim).expand(3, -1, -1)
    windows = tiny_model.adapter.windows(feats, 17)
    with torch.no_grad():
        mixed = tiny_model(**inputs, audio=windows, audio_scale=torch.tensor([0.0, 1.0, 0.5]))
        silent = tiny_model(**inputs, audio=None)
        full = tiny_model(**inputs, audio=windows, audio_scale=1.0)
        half = tiny_model(**inputs, audio=windows, audio_scale=0.5)
    torch.testing.assert_close(mixed[0], silent[0])
    torch.testing.assert_close(mixed[1], full[1])
    torch.testing.assert_close(mixed[2], half[2])
    assert (full[1] - silent[1]).abs().max() > 1e-3  # the audio does change the prediction


def test_gradient_checkpointing_gives_same_values_and_grads(tiny_model):
    inputs = make_model_inputs(tiny_model, batch=1)
    windows = tiny_model.adapter.windows(torch.randn(1, 30, tiny_model.adapter.audio_in_dim), 17)
    kv_weight = tiny_model.adapter.blocks[1].v_proj.weight
    results = []
    for checkpointing in (False, True):
        tiny_model.gradient_checkpointing = checkpointing
        kv_weight.requires_grad_(True)
        kv_weight.grad = None
        out = tiny_model(**inputs, audio=windows)
        out.square().mean().backward()
        results.append((out.detach(), kv_weight.grad.clone()))
    tiny_model.gradient_checkpointing = False
    kv_weight.requires_grad_(False)
    kv_weight.grad = None  # the model is shared by the session's tests
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_adapter_for_another_model_is_refused(tiny_model):
    from ft2_core.models.audio_adapter import AudioAdapter

    with pytest.raises(InputError, match="audio adapter has 3 layers of width 32; the DiT has 2 layers"):
        FantasyTalkingModel(tiny_model.transformer, AudioAdapter(3, 32, 32, 24))


def test_skip_weights_are_the_best_linear_estimate_and_what_it_leaves():
    """For a direction of spread s seen as (1 - sigma) d + sigma n: keep is the least-squares coefficient, and scale the
    spread of what it leaves (measured on a million Gaussian draws per direction, not from the formula)."""
    from ft2_core.models.deviation_prior import skip_weights

    g = torch.Generator().manual_seed(0)
    spread = torch.tensor([0.02, 0.34, 1.5], dtype=torch.float64)
    deviation = torch.randn(1_000_000, 3, generator=g, dtype=torch.float64) * spread
    noise = torch.randn(1_000_000, 3, generator=g, dtype=torch.float64)
    for sigma in (0.05, 0.3, 0.7, 0.98):
        seen = (1 - sigma) * deviation + sigma * noise
        best = (seen * deviation).sum(0) / (seen * seen).sum(0)
        keep, scale = (w.flatten() for w in skip_weights(torch.tensor(sigma, dtype=torch.float64).view(1, 1, 1, 1, 1), spread))
        assert ((keep - best).abs() < 0.01 * best.clamp(min=0.05)).all()
        assert ((scale / (deviation - best * seen).std(0) - 1).abs() < 0.01).all()


def test_sample_with_skip_turns_the_dit_output_into_a_velocity_by_hand(tiny_model):
    """The DiT's raw output read as "sample_with_skip" under a prior (random orthonormal basis, spreads): direction by
    direction k, x0_hat = reference + sum_k b_k (keep_k <b_k, x_t - (1 - sigma) reference> + scale_k out_k), and
    v = (x_t - x0_hat) / sigma, written out here in float64 with keep and scale from their formulas."""
    channels = tiny_model.transformer.config.out_channels
    g = torch.Generator().manual_seed(3)
    basis = torch.linalg.qr(torch.randn(channels, channels, generator=g, dtype=torch.float64))[0].T
    spread = torch.rand(channels, generator=g, dtype=torch.float64) + 0.05
    skip = FantasyTalkingModel(tiny_model.transformer, tiny_model.adapter, "sample_with_skip", (basis.float(), spread.float()))
    inputs = make_model_inputs(tiny_model)
    with torch.no_grad():
        out = tiny_model(**inputs, audio=None).double()  # the shared model predicts "velocity": the DiT's raw output
        velocity = skip(**inputs, audio=None).double()
    latents, sigma = inputs["latents"].double(), (inputs["timestep"].double() / 1000).clamp(min=0.02)
    reference = inputs["condition"][:, -latents.shape[1]:, :1].double()
    expected = torch.empty_like(latents)
    for row, s in enumerate(sigma.tolist()):
        sample = reference[row].clone()
        for k in range(channels):
            direction = basis[k].view(-1, 1, 1, 1)
            visible = (1 - s) ** 2 * spread[k] ** 2 + s**2
            keep, scale = (1 - s) * spread[k] ** 2 / visible, spread[k] * s / visible.sqrt()
            seen = (direction * (latents[row] - (1 - s) * reference[row])).sum(0)
            sample = sample + direction * (keep * seen + scale * out[row, k])
        expected[row] = (latents[row] - sample) / s
    torch.testing.assert_close(velocity, expected, rtol=1e-4, atol=1e-4)


def test_a_deviation_prior_goes_with_the_skip_prediction_only(tiny_model):
    channels = tiny_model.transformer.config.out_channels
    prior = (torch.eye(channels), torch.ones(channels))
    with pytest.raises(InputError, match='prior goes with prediction "sample_with_skip".*prior missing'):
        FantasyTalkingModel(tiny_model.transformer, tiny_model.adapter, "sample_with_skip")
    with pytest.raises(InputError, match="prediction 'velocity', prior given"):
        FantasyTalkingModel(tiny_model.transformer, tiny_model.adapter, "velocity", prior)
    with pytest.raises(InputError, match=f"do not describe the DiT's {channels} latent channels"):
        FantasyTalkingModel(tiny_model.transformer, tiny_model.adapter, "sample_with_skip", (torch.eye(3), torch.ones(3)))
