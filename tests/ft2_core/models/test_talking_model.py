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
