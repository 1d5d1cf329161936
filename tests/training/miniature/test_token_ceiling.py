"""The token-ceiling measure: tokens cut as the DiT's patch embedding sees them, the rank-k projection, the table."""
import json

import numpy as np
import torch

from training.miniature import token_ceiling


def test_tokens_are_what_the_patch_embedding_reads_and_invert_exactly():
    latents = torch.randn(1, 6, 3, 8, 8)
    for patch in (1, 2):
        weight = torch.randn(5, 6, 1, patch, patch)  # a Conv3d patch embedding, kernel = stride = (1, p, p)
        embedded = torch.nn.functional.conv3d(latents, weight, stride=(1, patch, patch))  # [1, 5, F, h/p, w/p]
        tokens = token_ceiling.to_tokens(latents, patch)
        assert torch.allclose(tokens @ weight.reshape(5, -1).T, embedded[0].permute(1, 2, 3, 0).reshape(-1, 5), atol=1e-5)
        assert torch.equal(token_ceiling.from_tokens(tokens, latents.shape, patch), latents)


def test_a_rank_k_projection_loses_the_discarded_variance():
    """Eckart-Young, checked with numpy's own SVD: the squared error is the sum of the dropped squared singular values."""
    rows = torch.randn(200, 12, dtype=torch.float64) @ torch.randn(12, 12, dtype=torch.float64)
    mean, directions, _ = token_ceiling.principal_directions(rows)
    plain = np.linalg.svd(rows.numpy() - rows.numpy().mean(axis=0), compute_uv=False)
    for rank in (1, 5, 12):
        error = float(((token_ceiling.project(rows, mean, directions, rank) - rows) ** 2).sum())
        assert np.isclose(error, float((plain[rank:] ** 2).sum()), rtol=1e-9, atol=1e-9)


def test_the_table_keeps_more_of_the_truth_at_higher_rank(tmp_path):
    out = tmp_path / "ceiling"
    assert token_ceiling.main(["--out", str(out), "--patches", "2", "1", "--ranks", "8", "64", "192",
                               "--clips", "2", "--fit-clips", "4", "--frames", "17"]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    # a patch-1 token holds 192 values: rank 192 would be the truth itself, so it is not a row
    assert [(r["patch"], r["rank"]) for r in rows.values() if "patch" in r] == [(2, 8), (2, 64), (2, 192), (1, 8), (1, 64)]
    through = rows["through the latent alone (encoded, decoded)"]["scores"]  # the pixel latent inverts exactly
    assert all(abs(through[d] - rows["ground truth"]["scores"][d]) < 1e-4 for d in through)
    for patch in (2, 1):
        kept = [r["variance_kept"] for r in rows.values() if r.get("patch") == patch]
        assert kept == sorted(kept) and kept[-1] < 1
    assert "| ground truth | 100% |" in out.with_suffix(".md").read_text()


def test_a_trained_vae_is_measured_through_its_own_latents(world_vae, tmp_path):
    out = tmp_path / "vae_ceiling"
    assert token_ceiling.main(["--out", str(out), "--vae", str(world_vae / "vae"), "--patches", "2", "--ranks", "4", "16",
                               "--clips", "2", "--fit-clips", "3", "--frames", "9"]) == 0
    numbers = json.loads(out.with_suffix(".json").read_text())
    rows = numbers["rows"]
    # a patch-2 token of a 4-channel latent holds 16 values: rank 16 would be the latent itself, so it is not a row
    assert numbers["latent"] == str(world_vae / "vae") and [r["rank"] for r in rows.values() if "patch" in r] == [4]
    assert "through the latent alone (encoded, decoded)" in rows and str(world_vae / "vae") in out.with_suffix(".md").read_text()
    assert numbers["latent_training_seed"] == 0 and "one training run (training seed 0)" in out.with_suffix(".md").read_text()
