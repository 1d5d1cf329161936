import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.models.conditioning import TEXT_LEN, condition_video, i2v_condition, known_frames_mask, pad_text_embeddings


def upstream_mask(num_frames, h, w, known=1):
    """Wan's construction, step by step (`known` leading frames marked, as Wan's first-last-frame and
    video-continuation variants mark more than one)."""
    msk = torch.ones(1, num_frames, h, w)
    msk[:, known:] = 0
    msk = torch.concat([torch.repeat_interleave(msk[:, 0:1], repeats=4, dim=1), msk[:, 1:]], dim=1)
    msk = msk.view(1, msk.shape[1] // 4, 4, h, w)
    return msk.transpose(1, 2)


def test_first_frame_mask_matches_wan():
    for frames in (5, 17, 81):
        assert torch.equal(known_frames_mask(frames, 3, 4), upstream_mask(frames, 3, 4))


def test_known_frames_mask_matches_wan():
    for frames, known in ((17, 5), (33, 13), (81, 2)):
        assert torch.equal(known_frames_mask(frames, 3, 4, known), upstream_mask(frames, 3, 4, known))


def test_condition_video_of_several_known_frames():
    known = torch.rand(5, 8, 16, 3)
    video = condition_video(known, 9)
    assert video.shape == (1, 3, 9, 8, 16)
    assert torch.allclose(video[0, :, :5].permute(1, 2, 3, 0), known * 2 - 1) and video[:, :, 5:].eq(0).all()


def test_i2v_condition_layout(tiny_pipeline):
    image = torch.rand(64, 96, 3)
    latents = tiny_pipeline.vae.encode(condition_video(image, 9))
    assert latents.shape == (1, 16, 3, 8, 12)
    cond = i2v_condition(latents, 9)
    assert cond.shape == (1, 20, 3, 8, 12)
    assert torch.equal(cond[:, 4:], latents)
    assert cond[:, :4, 0].eq(1).all() and cond[:, :4, 1:].eq(0).all()


def test_text_embeddings_are_zero_after_the_prompt(tiny_pipeline):
    emb = tiny_pipeline.text_encoder.encode(["hi there", "a much longer prompt than that"])
    assert emb.shape == (2, TEXT_LEN, 32)
    lengths = [len("hi there") + 1, len("a much longer prompt than that") + 1]  # characters + </s> in the tiny tokenizer
    for row, length in enumerate(lengths):
        assert emb[row, :length].abs().sum(-1).gt(0).all()
        assert emb[row, length:].eq(0).all()


def test_clip_features_are_penultimate_states(tiny_pipeline):
    feats = tiny_pipeline.image_encoder.encode(torch.rand(80, 64, 3))
    assert feats.shape == (1, 257, 32)


def test_vae_decode_gives_frames_in_unit_range(tiny_pipeline):
    frames = tiny_pipeline.vae.decode(torch.randn(1, 16, 3, 8, 8))
    assert frames.shape == (9, 64, 64, 3)
    assert frames.min() >= 0 and frames.max() <= 1


def test_comfy_style_unpadded_text_is_padded_like_wan(tiny_pipeline):
    padded = tiny_pipeline.text_encoder.encode(["hello"])
    unpadded = padded[:, :6]  # what ComfyUI's CLIPTextEncode keeps: the real tokens only
    torch.testing.assert_close(pad_text_embeddings(unpadded), padded)
    assert pad_text_embeddings(torch.randn(1, 600, 8)).shape == (1, TEXT_LEN, 8)


def test_tiled_vae_decodes_the_same_frames_in_less_memory(tiny_pipeline):
    """Tiles of 64 px over 128 px frames: the same shape, a lower live-memory peak; off again gives the plain result."""
    from bench.memory_plan import live_peak

    vae = tiny_pipeline.vae
    latents = torch.randn(1, vae.z_dim, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = vae.decode(latents)
    plain_peak = live_peak(lambda: vae.decode(latents))
    vae.set_tiling(64, 16)
    try:
        tiled = vae.decode(latents)
        tiled_peak = live_peak(lambda: vae.decode(latents))
    finally:
        vae.set_tiling(None)
    assert tiled.shape == plain.shape == (9, 128, 128, 3)
    assert tiled_peak < 0.6 * plain_peak
    torch.testing.assert_close(vae.decode(latents), plain)
    with pytest.raises(InputError, match="VAE tiles must be"):
        vae.set_tiling(60, 16)
