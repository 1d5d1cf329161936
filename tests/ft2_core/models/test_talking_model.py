import math

import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.models.audio_windows import split_windows
from ft2_core.models.talking_model import FantasyTalkingModel, audio_attention
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
    """For a deviation of spread s seen as (1 - sigma) d + sigma n: keep is the least-squares coefficient, and scale the
    spread of what it leaves (measured on a million Gaussian draws, not from the formula)."""
    from ft2_core.models.talking_model import DEVIATION_STD, skip_weights

    g = torch.Generator().manual_seed(0)
    deviation = torch.randn(1_000_000, generator=g, dtype=torch.float64) * DEVIATION_STD
    noise = torch.randn(1_000_000, generator=g, dtype=torch.float64)
    for sigma in (0.05, 0.3, 0.7, 0.98):
        seen = (1 - sigma) * deviation + sigma * noise
        best = float((seen * deviation).sum() / (seen * seen).sum())
        keep, scale = skip_weights(torch.tensor(sigma, dtype=torch.float64))
        assert abs(float(keep) - best) < 0.01 * max(best, 0.05)
        assert abs(float(scale) / float((deviation - best * seen).std()) - 1) < 0.01


def test_sample_with_skip_turns_the_dit_output_into_a_velocity_by_hand(tiny_model):
    """The same DiT output read as "sample_with_skip": v = (x_t - x0_hat) / sigma with x0_hat = reference + keep (x_t -
    (1 - sigma) reference) + scale out, keep and scale written out here."""
    inputs = make_model_inputs(tiny_model)
    audio, previous = None, tiny_model.prediction
    try:
        tiny_model.prediction = "velocity"  # the DiT's raw output
        with torch.no_grad():
            out = tiny_model(**inputs, audio=audio)
            tiny_model.prediction = "sample_with_skip"
            velocity = tiny_model(**inputs, audio=audio)
    finally:
        tiny_model.prediction = previous
    sigma = (inputs["timestep"] / 1000).clamp(min=0.02).view(-1, 1, 1, 1, 1)
    spread = 0.34
    keep = (1 - sigma) * spread**2 / ((1 - sigma) ** 2 * spread**2 + sigma**2)
    scale = spread * sigma / ((1 - sigma) ** 2 * spread**2 + sigma**2) ** 0.5
    latents = inputs["latents"]
    reference = inputs["condition"][:, -latents.shape[1]:, :1]
    sample = reference + keep * (latents - (1 - sigma) * reference) + scale * out
    torch.testing.assert_close(velocity, (latents - sample) / sigma, rtol=1e-5, atol=1e-5)
