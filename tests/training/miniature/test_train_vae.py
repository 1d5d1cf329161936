"""The world's Wan VAE trainer: it learns, resumes exactly, and writes a real diffusers folder whose latent statistics
are those of the clips it measured."""
import json

import numpy as np
import torch
from safetensors.torch import load_file

from ft2_core.models.conditioning import WanVAE, open_vae
from tests.training.miniature.conftest import TINY_VAE, vae_config
from training.miniature import train_vae


def test_a_short_run_lowers_the_reconstruction_error(world_vae):
    l1 = [line["l1"] for line in map(json.loads, (world_vae / "metrics.jsonl").read_text().splitlines())]
    assert len(l1) == TINY_VAE["train"]["steps"] and np.mean(l1[-5:]) < 0.8 * np.mean(l1[:5])


def test_the_folder_loads_as_a_wan_vae_normalised_by_its_own_clips(world_vae):
    vae = open_vae(world_vae / "vae")
    assert isinstance(vae, WanVAE) and vae.z_dim == TINY_VAE["model"]["z_dim"]
    clips = [train_vae.clip_video(0, 10_000_000 + i, TINY_VAE["world"]) for i in range(TINY_VAE["train"]["norm_clips"])]
    with torch.no_grad():  # the raw latents, straight from the model (no normalisation), as numpy
        raw = [vae.model.encode(c[None]).latent_dist.mode().numpy() for c in clips]
    values = np.concatenate([np.moveaxis(r, 1, -1).reshape(-1, r.shape[1]) for r in raw]).astype(np.float64)
    assert np.allclose(vae.mean, values.mean(axis=0), atol=1e-5)
    assert np.allclose(vae.std, values.std(axis=0, ddof=1), rtol=1e-4)
    normalised = np.concatenate([np.moveaxis(vae.encode(c[None]).numpy(), 1, -1).reshape(-1, vae.z_dim) for c in clips])
    assert np.allclose(normalised.mean(axis=0), 0, atol=1e-4) and np.allclose(normalised.std(axis=0, ddof=1), 1, atol=1e-3)
    frames = vae.decode(vae.encode(clips[0][None]))
    assert frames.shape == (9, 32, 32, 3)


def test_resume_is_exact(world_vae, tmp_path):
    resumed = tmp_path / "resumed"
    assert train_vae.main(vae_config(tmp_path, resumed, steps=14)) == 0  # stops between checkpoints' clips
    assert train_vae.main(vae_config(tmp_path, resumed)) == 0
    a, b = (load_file(folder / "vae" / "diffusion_pytorch_model.safetensors") for folder in (world_vae, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_crops_that_do_not_fit_the_vae_are_refused(tmp_path, capsys):
    assert train_vae.main(vae_config(tmp_path, tmp_path / "bad", crop_frames=6)) == 2
    assert "train.crop_frames must be 4k+1" in capsys.readouterr().err
    assert train_vae.main(vae_config(tmp_path, tmp_path / "bad", crop_size=18)) == 2
    assert "train.crop_size must divide by 4" in capsys.readouterr().err
