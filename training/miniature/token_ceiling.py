"""The most a DiT of a given width can draw per token: the truth through a rank-k readout, judged.

    python -m training.miniature.token_ceiling --out training/miniature/results/token_ceiling \
        [--model ft2_core/miniature/weights] [--vae FOLDER] [--patches 2 1] [--ranks 64 128 256 384 512] [--split validation]

A DiT's last layer maps each token's `width` features to its patch of latent values by one linear map (plus a bias),
so whatever the blocks do, a token's prediction lies in a `width`-dimensional affine subspace of its patch's values
(the sampler's last step returns that prediction). The subspace nearest the world's videos in squared error is their
principal one: the model's clean target (each clip's latents as a change from its portrait's, as
`prediction = "sample_from_reference"` predicts them) cut into the DiT's patches, principal directions fitted on
training clips, held-out truths projected onto the top k, decoded and judged by the oracles. No model of that width
and patch draws the truth closer in squared error; the judges' scores of those projections say what that loss costs
(a bound in squared error, a guide for the judges: another subspace could lose other details).
`--vae` measures another latent space (a trained Wan VAE folder, training.miniature.train_vae): its first row, the
truth through the latent alone, is what its decoder can draw at all.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ft2_core.dimensions import DIMENSION_NAMES, LABELS
from ft2_core.miniature.model import miniature_model_dir
from ft2_core.miniature.oracles import PROTOCOL_VERSION, score_clip
from ft2_core.miniature.world import Clip, make_clip
from ft2_core.models.conditioning import WanVAE, open_vae, video_from_frames
from ft2_core.models.pixel_latent import SpaceToDepthVAE
from training.miniature.evaluate_base import SPLITS
from training.miniature.tables import command_line, write_result

DEFAULT_LATENT = "the model's vae/ folder"


def to_tokens(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """[1, C, F, h, w] -> [F * h/p * w/p, C * p * p]: one row per DiT token (patch 1 x p x p), as its patch embedding
    and last layer see it."""
    _, c, f, h, w = latents.shape
    return latents.reshape(c, f, h // patch, patch, w // patch, patch).permute(1, 2, 4, 0, 3, 5).reshape(-1, c * patch * patch)


def from_tokens(tokens: torch.Tensor, shape: torch.Size, patch: int) -> torch.Tensor:
    """The inverse of `to_tokens`."""
    _, c, f, h, w = shape
    return tokens.reshape(f, h // patch, w // patch, c, patch, patch).permute(3, 0, 1, 4, 2, 5).reshape(shape)


def clean_target(vae: SpaceToDepthVAE | WanVAE, clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
    """The clip's latents as a change from its portrait's (the DiT's target), and the portrait's latents."""
    still = np.repeat(clip.portrait[None], len(clip.frames), axis=0)
    reference = vae.encode(video_from_frames(torch.from_numpy(np.asarray(still, np.float32))))
    return vae.encode(video_from_frames(torch.from_numpy(clip.frames))) - reference, reference


def principal_directions(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, directions (rows, by falling variance) and singular values of `rows`."""
    mean = rows.mean(dim=0)
    _, singular, directions = torch.linalg.svd(rows - mean, full_matrices=False)
    return mean, directions, singular


def project(rows: torch.Tensor, mean: torch.Tensor, directions: torch.Tensor, rank: int) -> torch.Tensor:
    """`rows` onto the affine subspace through `mean` spanned by the first `rank` directions."""
    kept = directions[:rank]
    return (rows - mean) @ kept.T @ kept + mean


def ceiling(model: Path, patches: list[int], ranks: list[int], split: str, clips: int, fit_clips: int,
            frames: int, vae_folder: Path | None = None) -> dict:
    """The judges' mean scores of the held-out truths, of the truths through the latent alone, and of their rank-k
    projections, per patch and rank."""
    vae = open_vae(vae_folder or model / "vae")
    transformer = json.loads((model / "transformer" / "config.json").read_text())
    width = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    fitted = [clean_target(vae, make_clip(seed, frames))[0] for seed in range(fit_clips)]  # training seeds
    held = [make_clip(SPLITS[split] + k, frames) for k in range(clips)]
    truth = [clean_target(vae, clip) for clip in held]
    results = {"ground truth": {"scores": mean_scores([c.frames for c in held], held)},
               "through the latent alone (encoded, decoded)": {
                   "scores": mean_scores([vae.decode(target + reference).numpy() for target, reference in truth], held)}}
    for patch in patches:
        mean, directions, singular = principal_directions(torch.cat([to_tokens(t, patch) for t in fitted]))
        kept = (singular**2).cumsum(0) / (singular**2).sum()
        for rank in (r for r in ranks if r < directions.shape[0]):
            videos = [vae.decode(from_tokens(project(to_tokens(target, patch), mean, directions, rank), target.shape, patch)
                                 + reference).numpy() for target, reference in truth]
            results[f"patch {patch}: {vae.z_dim * patch * patch} values a token, rank {rank}"] = {
                "patch": patch, "values": vae.z_dim * patch * patch, "rank": rank,
                "variance_kept": float(kept[rank - 1]), "scores": mean_scores(videos, held)}
    made = Path(vae_folder or "") / "ft2_produced_by.json"  # a trained VAE: one training run, named by its seed
    seed = json.loads(made.read_text())["config"]["train"]["seed"] if vae_folder and made.is_file() else None
    return {"model": str(model), "latent": str(vae_folder) if vae_folder else DEFAULT_LATENT, "latent_training_seed": seed,
            "width": width, "shipped_patch": transformer["patch_size"][1], "split": split,
            "clips": clips, "fit_clips": fit_clips, "frames": frames, "protocol": PROTOCOL_VERSION, "rows": results}


def mean_scores(videos: list[np.ndarray], clips: list[Clip]) -> dict[str, float]:
    scores = [score_clip(v, c.audio, c.fps, c.face, c.frames).by_dimension() for v, c in zip(videos, clips)]
    return {d: float(np.mean([s[d] for s in scores])) for d in DIMENSION_NAMES}


def markdown(numbers: dict, command: str) -> str:
    first = SPLITS[numbers["split"]]
    lines = [f"The truth through a per-token readout of rank k (oracle protocol {numbers['protocol']}): "
             f"{numbers['clips']} {numbers['split']} clips (world seeds {first} to {first + numbers['clips'] - 1}), "
             f"{numbers['frames']} frames, in the latent space of {numbers.get('latent', 'the model')}; principal "
             f"directions fitted on {numbers['fit_clips']} training clips. " + (
                 f"The model ({numbers['model']}) is {numbers['width']} wide with patch {numbers['shipped_patch']}: its "
                 f"videos are no closer to the truth in squared error than about the row of that patch at rank "
                 f"{numbers['width']}." if numbers.get("latent", DEFAULT_LATENT) == DEFAULT_LATENT else
                 "A DiT on this latent reads each token at a rank up to its width; a rank at or above a token's values "
                 "is the latent itself (the row through the latent alone)."
                 + (f" The VAE is one training run (training seed {numbers['latent_training_seed']}), not replicates."
                    if numbers.get("latent_training_seed") is not None else "")), "",
             f"Command: `{command}`", "",
             "| readout | variance kept | " + " | ".join(LABELS[d] for d in DIMENSION_NAMES) + " |", "|---|---|---|---|---|"]
    for name, row in numbers["rows"].items():
        kept = f"{100 * row['variance_kept']:.1f}%" if "variance_kept" in row else "100%"
        lines.append(f"| {name} | {kept} | " + " | ".join(f"{row['scores'][d]:.3f}" for d in DIMENSION_NAMES) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    parser.add_argument("--model", type=Path, default=None, help="a miniature model folder (default: the shipped one)")
    parser.add_argument("--vae", type=Path, default=None, help="a trained Wan VAE folder (default: the model's latent)")
    parser.add_argument("--patches", type=int, nargs="+", default=[2, 1], help="the DiT's spatial patch sides to try")
    parser.add_argument("--ranks", type=int, nargs="+", default=[64, 128, 256, 384, 512])
    parser.add_argument("--split", choices=tuple(SPLITS), default="validation")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--fit-clips", type=int, default=96)
    parser.add_argument("--frames", type=int, default=33)
    args = parser.parse_args(argv)
    numbers = ceiling(args.model or miniature_model_dir(), args.patches, args.ranks, args.split, args.clips, args.fit_clips,
                      args.frames, args.vae)
    numbers["model"] = str(args.model) if args.model else "the shipped one, ft2_core/miniature/weights"
    print(write_result(args.out, numbers, markdown(numbers, command_line("training.miniature.token_ceiling", argv))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
