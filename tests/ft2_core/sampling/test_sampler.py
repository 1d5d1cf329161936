import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.sampling.long_video import sample_long
from ft2_core.sampling.options import SamplerOptions, WindowOptions
from ft2_core.sampling.sampler import Conditioning, initial_noise
from tests.conftest import Cancelled, cancel_on_call, make_model_inputs


def sample(model, cond, options, latent_channels, **kwargs):
    """The sampler on one window, as the pipeline runs a video of the trained length or shorter."""
    frames = 4 * (cond.condition.shape[2] - 1) + 1
    return sample_long(model, cond, options, WindowOptions("single"), frames, latent_channels, **kwargs)


@pytest.fixture(scope="module")
def conditioning(tiny_model):
    inputs = make_model_inputs(tiny_model, batch=2, frames=5, seed=3)
    feats = torch.randn(1, 40, tiny_model.adapter.audio_in_dim, generator=torch.Generator().manual_seed(4))
    return Conditioning(
        condition=inputs["condition"][:1], positive=inputs["text"][:1], negative=inputs["text"][1:],
        image=inputs["image"][:1], audio=tiny_model.adapter.windows(feats, 17),
    )


def plain_sampler(model, cond, steps, shift, cfg, audio_cfg, audio_steps, seed, scale=1.0):
    """Unbatched reference: separate model calls and the guidance formula, Euler on upstream sigmas."""
    x = initial_noise((1, 16, 5, 8, 8), seed)
    sig = [shift * (1 - i / steps) / (1 + (shift - 1) * (1 - i / steps)) for i in range(steps)] + [0.0]

    def call(text, audio_on, t):
        return model(x, cond.condition, torch.tensor([t]), text, cond.image, cond.audio if audio_on else None, scale)

    with torch.no_grad():
        for i in range(steps):
            t = 1000 * sig[i]
            if i in audio_steps:
                u, n, p = call(cond.negative, False, t), call(cond.positive, False, t), call(cond.positive, True, t)
                v = u + cfg * (n - u) + audio_cfg * (p - n)
            else:
                u, p = call(cond.negative, True, t), call(cond.positive, True, t)
                v = u + cfg * (p - u)
            x = x + v * (sig[i + 1] - sig[i])
    return x


def test_batched_guidance_matches_plain_computation(tiny_model, conditioning):
    options = SamplerOptions(steps=4, cfg=4.0, audio_cfg=3.0, shift=5.0, seed=7, audio_cfg_end=0.5)
    got = sample(tiny_model, conditioning, options, latent_channels=16)
    want = plain_sampler(tiny_model, conditioning, 4, 5.0, 4.0, 3.0, audio_steps={0, 1}, seed=7)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scheduler", ["euler", "unipc"])
def test_same_seed_same_result(tiny_model, conditioning, scheduler):
    options = SamplerOptions(steps=3, seed=11, scheduler=scheduler)
    a = sample(tiny_model, conditioning, options, 16)
    b = sample(tiny_model, conditioning, options, 16)
    c = sample(tiny_model, conditioning, SamplerOptions(steps=3, seed=12, scheduler=scheduler), 16)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-2


def test_progress_and_cancellation(tiny_model, conditioning):
    seen = []
    sample(
        tiny_model,
        conditioning,
        SamplerOptions(steps=3),
        16,
        on_step=lambda info: seen.append((info.step, info.total, info.denoised.shape)),
    )
    assert seen == [(1, 3, (1, 16, 5, 8, 8)), (2, 3, (1, 16, 5, 8, 8)), (3, 3, (1, 16, 5, 8, 8))]

    interrupt, calls = cancel_on_call(2)
    with pytest.raises(Cancelled):
        sample(tiny_model, conditioning, SamplerOptions(steps=5), 16, check_interrupt=interrupt)
    assert len(calls) == 2  # checked before every step, stopped at the second


def test_bad_options_are_named():
    with pytest.raises(InputError, match="audio guidance range"):
        SamplerOptions(audio_cfg_start=0.8, audio_cfg_end=0.2).validate()
    with pytest.raises(InputError, match="scheduler must be one of"):
        SamplerOptions(scheduler="dpm").validate()


@pytest.mark.parametrize("cfg, audio_cfg", [(1.0, 3.0), (5.0, 5.0), (1.0, 1.0), (4.0, 0.0)])
def test_skipped_rows_give_the_same_result(tiny_model, conditioning, cfg, audio_cfg):
    """Rows of weight zero are not run (fewer model rows) and the video is the plain three-row computation's."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return tiny_model(*args, **kwargs)

    options = SamplerOptions(steps=3, cfg=cfg, audio_cfg=audio_cfg, shift=5.0, seed=2)
    got = sample(counting, conditioning, options, latent_channels=16)
    want = plain_sampler(tiny_model, conditioning, 3, 5.0, cfg, audio_cfg, audio_steps={0, 1, 2}, seed=2)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert max(calls) < 3


def test_sequential_rows_and_ffn_chunks_give_the_same_video(tiny_model, conditioning):
    """The memory options change how the work is cut, not the result."""
    options = dict(steps=3, cfg=4.0, audio_cfg=3.0, shift=5.0, seed=9)
    batched = sample(tiny_model, conditioning, SamplerOptions(**options), latent_channels=16)
    ffn_calls = []
    hooks = [
        block.ffn.register_forward_hook(lambda module, inputs, out: ffn_calls.append(inputs[0].shape[1]))
        for block in tiny_model.transformer.blocks
    ]
    try:
        cut = sample(tiny_model, conditioning, SamplerOptions(**options, sequential_rows=True, ffn_chunk_tokens=7), 16)
    finally:
        for hook in hooks:
            hook.remove()
    torch.testing.assert_close(cut, batched, rtol=1e-5, atol=1e-5)
    assert max(ffn_calls) == 7 and tiny_model.ffn_chunk_tokens == 0  # 80 tokens in chunks of 7; the setting is restored

    rows = []

    def counting(*args, **kwargs):
        rows.append(args[0].shape[0])
        return tiny_model(*args, **kwargs)

    sample(counting, conditioning, SamplerOptions(**options, sequential_rows=True), 16)
    assert rows == [1] * 3 * 3  # three predictions per step, one at a time


def test_bad_ffn_chunk_is_named():
    with pytest.raises(InputError, match="ffn_chunk_tokens must be a whole number"):
        SamplerOptions(ffn_chunk_tokens=-1).validate()
