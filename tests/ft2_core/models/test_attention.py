import importlib.util

import pytest
import torch
from diffusers.models.attention_dispatch import attention_backend

from ft2_core.errors import InputError
from ft2_core.models.attention import attention_kernel, check_backend
from ft2_core.models.audio_windows import split_windows
from ft2_core.models.talking_model import audio_attention
from tests.conftest import make_model_inputs
from tests.ft2_core.models.test_talking_model import plain_audio_attention

OTHER_KERNEL = "_native_math"  # a non-default diffusers backend that runs on a CPU: stands in for flash / sage here


def test_unknown_or_missing_backends_are_named(monkeypatch):
    with pytest.raises(InputError, match="attention must be one of"):
        check_backend("xformers")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name in ("flash_attn", "sageattention") else real(name))
    with pytest.raises(InputError, match="needs the optional package flash-attn"):
        check_backend("flash")
    with pytest.raises(InputError, match="needs the optional package sageattention"):
        with attention_kernel("sage"):
            pass
    with attention_kernel("sdpa"):  # the default needs nothing
        pass


def test_audio_padding_mask_stays_exact_under_another_kernel(tiny_model):
    """The audio windows at the video's edges are padded; whatever kernel the DiT uses, padding gets no weight."""
    kv = tiny_model.adapter.blocks[0]
    windows = split_windows(torch.randn(1, 37, kv.k_proj.in_features), 17)
    assert (windows.lengths < windows.tokens.shape[2]).any()  # some windows really are padded
    query = torch.randn(1, 5 * 6, kv.k_proj.out_features)
    with torch.no_grad(), attention_backend(OTHER_KERNEL):
        got = audio_attention(query, kv, windows, heads=2)
    torch.testing.assert_close(got, plain_audio_attention(query, kv, windows, heads=2), rtol=1e-5, atol=1e-6)


def test_the_whole_model_agrees_across_kernels(tiny_model, monkeypatch):
    import ft2_core.models.talking_model as talking_model

    inputs = make_model_inputs(tiny_model, batch=1)
    windows = tiny_model.adapter.windows(torch.randn(1, 30, tiny_model.adapter.audio_in_dim), 17)
    with torch.no_grad():
        default = tiny_model(**inputs, audio=windows)
    calls, original = [], talking_model.dispatch_attention_fn
    monkeypatch.setattr(talking_model, "dispatch_attention_fn", lambda *a, **k: calls.append(1) or original(*a, **k))
    with torch.no_grad(), attention_backend(OTHER_KERNEL):
        other = tiny_model(**inputs, audio=windows)
    torch.testing.assert_close(other, default, rtol=1e-5, atol=1e-5)
    assert len(calls) == 2 * tiny_model.num_layers  # text and image cross-attention per block go through the dispatch
