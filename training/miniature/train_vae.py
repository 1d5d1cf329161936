"""Train a Wan VAE (diffusers AutoencoderKLWan, the class real Wan2.1 folders load) on the talking-face world (CPU).

    python -m training.miniature.train_vae --config training/miniature/configs/vae.toml

Why: the pixel latent (models.pixel_latent) gives the 128-wide DiT tokens of 768 values, and the best rank-128 readout
of such tokens caps visual quality at 0.562 (results/token_ceiling.md). A VAE compresses as Wan's does, so a token
carries fewer values than the DiT is wide. Trained on random crops (frames x pixels) of training-split world clips:
its causal 3D convolutions apply to any size, and a crop costs a fraction of a clip. The loss is the real VAE's
reconstruction (L1) and KL terms, without its adversarial and perceptual ones. The folder it writes has the latent
mean and spread per channel measured on whole training clips (Wan normalises each channel by them).
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch

from ft2_core.errors import InputError
from ft2_core.io.atomic import staged_folder
from ft2_core.io.jsonl import append_jsonl
from ft2_core.models.audio_windows import check_frame_count
from ft2_core.models.conditioning import video_from_frames
from training.common.checkpoints import end_of_step, restore, run_settings
from training.common.config import Option, recorded_config, resolve
from training.common.data_order import mix_seed
from training.common.interrupts import StopRequests
from training.common.script import run
from training.miniature.base_model import training_clip
from training.miniature.train_base import ClipPool

log = logging.getLogger("ft2.train")

SCHEMA = {
    # AutoencoderKLWan's own settings: len(dim_mult) - 1 spatial halvings (3 give [1, 2, 4]: 4x), time always 4x
    "model": {"base_dim": Option(int, 16, minimum=4), "z_dim": Option(int, 16, minimum=1),
              "dim_mult": Option(list, [1, 2, 4]), "num_res_blocks": Option(int, 1, minimum=1)},
    "world": {"frames": Option(int, 33, minimum=5), "size": Option(int, 64, minimum=16)},
    "train": {"output": Option(str), "steps": Option(int, 1500, minimum=1), "batch_size": Option(int, 8, minimum=1),
              "crop_frames": Option(int, 9, minimum=5), "crop_size": Option(int, 32, minimum=8),
              "lr": Option(float, 1e-3, above=0), "warmup": Option(int, 50, minimum=0),
              "kl_weight": Option(float, 1e-6, minimum=0), "pool": Option(int, 128, minimum=1),
              "refresh": Option(int, 2, minimum=0), "norm_clips": Option(int, 64, minimum=2),
              "seed": Option(int, 0, minimum=0), "checkpoint_every": Option(int, 100, minimum=1),
              "allow_changes": Option(list, [])},
}


def build_vae(model: dict, seed: int):
    from diffusers import AutoencoderKLWan

    if len(model["dim_mult"]) < 3:
        raise InputError(f"model.dim_mult needs at least 3 entries (Wan halves time twice), got {model['dim_mult']}")
    torch.manual_seed(seed)
    halvings = len(model["dim_mult"]) - 1
    return AutoencoderKLWan(base_dim=model["base_dim"], z_dim=model["z_dim"], dim_mult=list(model["dim_mult"]),
                            num_res_blocks=model["num_res_blocks"], temperal_downsample=[False] * (halvings - 2) + [True, True],
                            latents_mean=[0.0] * model["z_dim"], latents_std=[1.0] * model["z_dim"],
                            scale_factor_spatial=2 ** halvings)


def clip_video(seed: int, index: int, world: dict) -> torch.Tensor:
    """Training clip `index` of the run's stream (base_model.training_clip) as the VAE reads it, [3, T, H, W] in -1..1."""
    clip = training_clip(seed, index, world["frames"], world["size"])
    return video_from_frames(torch.from_numpy(clip.frames))[0]


def crops(pool: list[torch.Tensor], step: int, train: dict, seed: int) -> torch.Tensor:
    """A batch of random crops of pooled clips; which ones is a pure function of the step (a resumed run is the same)."""
    g = torch.Generator().manual_seed(mix_seed(seed, step, 7))
    frames, side = train["crop_frames"], train["crop_size"]
    out = []
    for _ in range(train["batch_size"]):
        video = pool[int(torch.randint(len(pool), (1,), generator=g))]
        t0 = int(torch.randint(video.shape[1] - frames + 1, (1,), generator=g))
        y0, x0 = (int(torch.randint(video.shape[axis] - side + 1, (1,), generator=g)) for axis in (2, 3))
        out.append(video[:, t0:t0 + frames, y0:y0 + side, x0:x0 + side])
    return torch.stack(out)


def vae_loss(vae, videos: torch.Tensor, kl_weight: float, generator: torch.Generator) -> tuple[torch.Tensor, float]:
    posterior = vae.encode(videos).latent_dist
    sample = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
    reconstruction = (vae.decode(sample).sample - videos).abs().mean()
    return reconstruction + kl_weight * posterior.kl().mean(), reconstruction.item()


@torch.no_grad()
def latent_statistics(vae, seed: int, world: dict, clips: int) -> tuple[list[float], list[float]]:
    """Each latent channel's mean and spread over whole training clips (distribution mode), past the run's pool."""
    latents = [vae.encode(clip_video(seed, 10_000_000 + i, world)[None]).latent_dist.mode() for i in range(clips)]
    values = torch.cat([z.movedim(1, -1).reshape(-1, z.shape[1]) for z in latents])
    return values.mean(0).tolist(), values.std(0).clamp(min=1e-3).tolist()


def train(config: dict) -> Path:
    from tqdm import tqdm

    train_cfg, world, seed = config["train"], config["world"], config["train"]["seed"]
    check_frame_count(world["frames"], "world.frames")
    if train_cfg["crop_frames"] % 4 != 1 or train_cfg["crop_frames"] > world["frames"]:
        raise InputError(f"train.crop_frames must be 4k+1 and at most world.frames, got {train_cfg['crop_frames']}")
    halvings = len(config["model"]["dim_mult"]) - 1
    if train_cfg["crop_size"] % 2 ** halvings or train_cfg["crop_size"] > world["size"]:
        raise InputError(f"train.crop_size must divide by {2 ** halvings} and be at most world.size, "
                         f"got {train_cfg['crop_size']}")
    output = resolve(train_cfg["output"])
    output.mkdir(parents=True, exist_ok=True)
    vae = build_vae(config["model"], seed).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=train_cfg["lr"], weight_decay=0.0)
    start = restore(output, config, {"model": dict(vae.state_dict())}, optimizer)
    warmup = max(1, train_cfg["warmup"])
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / warmup), last_epoch=start - 1)
    log.info("building a pool of %d world clips", train_cfg["pool"])
    pool = ClipPool(lambda index: clip_video(seed, index, world), train_cfg["pool"], train_cfg["refresh"], seed)
    pool.advance_to(start)
    started = time.perf_counter()
    bar = tqdm(total=train_cfg["steps"], initial=start, desc="vae", mininterval=2.0)
    with StopRequests() as stop, bar:
        for step in range(start, train_cfg["steps"]):
            pool.advance_to(step + 1)  # the clips that land at this step are cropped in it
            g = torch.Generator().manual_seed(mix_seed(seed, step, 11))
            loss, l1 = vae_loss(vae, crops(pool.slots, step, train_cfg, seed), train_cfg["kl_weight"], g)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(l1=f"{l1:.4f}")
            append_jsonl(output / "metrics.jsonl", {"step": step + 1, "loss": loss.item(), "l1": l1,
                                                     "seconds": round(time.perf_counter() - started, 2)})
            end_of_step(stop, output, step + 1, train_cfg["steps"], train_cfg["checkpoint_every"],
                        {"model": vae.state_dict()}, optimizer, bar, settings=run_settings(config))
    vae.eval()
    mean, std = latent_statistics(vae, seed, world, train_cfg["norm_clips"])
    vae.register_to_config(latents_mean=mean, latents_std=std)
    with staged_folder(output / "vae") as staging:
        vae.save_pretrained(staging, safe_serialization=True)
        (staging / "ft2_produced_by.json").write_text(json.dumps({
            "command": "python -m training.miniature.train_vae " + " ".join(sys.argv[1:]),
            "config": recorded_config(config), "train_seconds_this_session": round(time.perf_counter() - started, 1)},
            indent=2))
    return output / "vae"


def main(argv=None) -> int:
    return run(train, SCHEMA, argv)


if __name__ == "__main__":
    raise SystemExit(main())
