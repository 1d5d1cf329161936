import pytest
import torch

from ft2_core.errors import InputError
from ft2_core.models.pixel_latent import SpaceToDepthVAE


def test_round_trip_is_exact_and_keeps_wans_frame_layout():
    vae = SpaceToDepthVAE(spatial_stride=4, latent_std=0.5)
    video = torch.rand(1, 3, 9, 16, 24) * 2 - 1
    latents = vae.encode(video)
    assert latents.shape == (1, 192, 3, 4, 6) and vae.z_dim == 192
    frames = vae.decode(latents)
    torch.testing.assert_close(frames, ((video[0].permute(1, 2, 3, 0) + 1) / 2), rtol=0, atol=1e-6)
    # latent 1 holds video frames 1..4 and nothing else: a plain gather of one pixel block
    s = 4
    block = video[0, :, 1:5, :s, :s]  # [3, 4, s, s]
    torch.testing.assert_close(latents[0, :, 1, 0, 0], block.reshape(-1) / 0.5)


def test_bad_shapes_are_named():
    with pytest.raises(InputError, match="4k\\+1"):
        SpaceToDepthVAE().encode(torch.zeros(1, 3, 8, 16, 16))
    with pytest.raises(InputError, match="pixel latents"):
        SpaceToDepthVAE().decode(torch.zeros(1, 5, 2, 4, 4))


def test_haar_basis_stores_each_latent_frames_mean_and_changes_at_their_own_spread():
    spreads = [1.0, 0.25, 0.125, 0.125]
    vae = SpaceToDepthVAE(spatial_stride=2, latent_std=spreads, time_basis="haar")
    video = torch.rand(1, 3, 9, 4, 6) * 2 - 1
    latents = vae.encode(video)
    torch.testing.assert_close(vae.decode(latents), (video[0].permute(1, 2, 3, 0) + 1) / 2, rtol=0, atol=1e-6)
    a, b, c, d = (video[0, 0, t, 0, 0] for t in range(1, 5))  # red, top-left pixel of latent frame 1's four frames
    by_hand = [(a + b + c + d) / 2, (a + b - c - d) / 2, (a - b) / 2**0.5, (c - d) / 2**0.5]
    slot_channels = [k * 4 for k in range(4)]  # channel = (colour, time component, y, x)
    torch.testing.assert_close(latents[0, slot_channels, 1, 0, 0], torch.stack(by_hand) / torch.tensor(spreads))
    assert latents[0, slot_channels[1:], 0].abs().max() < 1e-6  # latent 0 repeats frame 0: no change within it


def test_linear_basis_stores_each_latent_frames_last_frame_and_the_others_off_the_line_to_it():
    vae = SpaceToDepthVAE(spatial_stride=2, latent_std=0.5, time_basis="linear")
    video = torch.rand(1, 3, 9, 4, 6) * 2 - 1
    latents = vae.encode(video)
    torch.testing.assert_close(vae.decode(latents), (video[0].permute(1, 2, 3, 0) + 1) / 2, rtol=0, atol=1e-6)
    pixel = video[0, 0, :, 0, 0]  # red, top-left pixel of every frame
    slot_channels = [k * 4 for k in range(4)]  # channel = (colour, time component, y, x)
    for latent, start, end in ((1, pixel[0], pixel[4]), (2, pixel[4], pixel[8])):
        frames = pixel[4 * latent - 3:4 * latent + 1]
        by_hand = [end] + [frames[j - 1] - (start + (end - start) * j / 4) for j in (1, 2, 3)]
        torch.testing.assert_close(latents[0, slot_channels, latent, 0, 0], torch.stack(by_hand) / 0.5)
    assert latents[0, slot_channels[1:], 0].abs().max() < 1e-6  # latent 0 repeats frame 0: on its own line
    flat = latents.clone().unflatten(1, (3, 4, 4))
    flat[:, :, 1:] = 0  # no differences off the line: the frames between key frames are their straight line
    lined = vae.decode(flat.flatten(1, 3))[:, 0, 0, 0]
    keys = (pixel[[0, 4, 8]] + 1) / 2
    torch.testing.assert_close(lined, torch.cat([keys[:1], torch.lerp(keys[0], keys[1], torch.arange(1, 5) / 4),
                                                 torch.lerp(keys[1], keys[2], torch.arange(1, 5) / 4)]), rtol=0, atol=1e-6)


def test_bad_latent_settings_are_named():
    with pytest.raises(InputError, match="time_basis"):
        SpaceToDepthVAE(time_basis="dct")
    with pytest.raises(InputError, match="latent_std"):
        SpaceToDepthVAE(latent_std=[0.5, 0.5])
