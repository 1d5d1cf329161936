"""Train the miniature FantasyTalking base model on the procedural talking-face world (CPU, minutes).

    python -m training.miniature.train_base --config training/miniature/configs/base_linear.toml
    python -m training.miniature.train_base --config training/miniature/configs/base_linear.toml \
        --set train.export=ft2_core/miniature/weights

The real classes and code path: Wan DiT + FantasyTalking adapter with frame-level audio windows, the
I2V condition, the flow-matching loss (weighted by sigma^2, i.e. an x0 loss: the miniature DiT
predicts the clean video, see FantasyTalkingModel), audio dropped on some rows so audio guidance
has an audio-off prediction to push away from; `train.mouth_weight` > 0 weighs the loss at the latent positions the
world's mouth covers (1 + that weight, a weighted mean), so the few tokens lip-sync lives in get more of it. Clips are
drawn on the fly from a pool that is refreshed as it goes (`train.refresh` clips every `train.refresh_every` steps),
all keyed by the seed, so a resumed run is the same run.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ft2_core.io.atomic import staged_folder
from ft2_core.io.checkpoint_io import save_safetensors
from ft2_core.io.jsonl import append_jsonl
from ft2_core.miniature.model import WorldEncoders, save_frozen_parts, write_manifest
from ft2_core.miniature.world import Clip
from ft2_core.models.audio_adapter import ours_to_upstream
from ft2_core.models.audio_windows import check_frame_count
from ft2_core.models.deviation_prior import save_prior, skip_weights
from ft2_core.models.talking_model import SIGMA_FLOOR, FantasyTalkingModel
from ft2_core.scoring.lip_mask import to_latent_grid
from ft2_core.tlpo.flow_dpo import flow_matching_loss
from training.common.checkpoints import end_of_step, restore, run_settings
from training.common.config import recorded_config, resolve
from training.common.data_order import mix_seed
from training.common.interrupts import StopRequests
from training.common.script import run
from training.miniature.base_model import SCHEMA, build_model, deviation_prior, training_clip

log = logging.getLogger("ft2.train")


class ClipPool:
    """A pool of prepared clips; every `every` steps, `refresh` slots take new ones (a pure function of the step).
    `prepare(index)` makes clip `index` of the run's stream as the trainer reads it."""

    def __init__(self, prepare: Callable[[int], object], size: int, refresh: int, seed: int, every: int = 1):
        self.prepare, self.size, self.refresh, self.seed, self.every = prepare, size, refresh, seed, every
        self.slots: list = [prepare(i) for i in range(size)]
        self.step = 0

    def landed(self, step: int) -> int:
        """How many clips have entered the pool before `step` (the first `size` fill it)."""
        return self.size + -(-step // self.every) * self.refresh

    def advance_to(self, step: int) -> None:
        """Refresh as if every step up to `step` had run (on resume only the last refresh of each slot is made)."""
        if step <= self.step:
            return
        first_new, last_new = self.landed(self.step), self.landed(step)
        newest = {}
        for index in range(max(first_new, last_new - self.size), last_new):
            newest[index % self.size] = index
        for slot, index in newest.items():
            self.slots[slot] = self.prepare(index)
        self.step = step

    def batch(self, step: int, batch_size: int) -> list[dict]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, step, 7))
        return [self.slots[i] for i in torch.randint(self.size, (batch_size,), generator=g).tolist()]


def step_loss(
    model: FantasyTalkingModel,
    items: list[dict],
    encoders: WorldEncoders,
    step: int,
    seed: int,
    audio_dropout: float,
    frames: int,
    mouth_weight: float = 0.0,
) -> torch.Tensor:
    g = torch.Generator().manual_seed(mix_seed(seed, step, 11))
    x0 = torch.cat([item["latents"] for item in items])
    batch = x0.shape[0]
    sigma = torch.rand(batch, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    audio_scale = (torch.rand(batch, generator=g) >= audio_dropout).float()
    s = sigma.view(-1, 1, 1, 1, 1)
    features = torch.cat([item["audio_features"] for item in items])
    velocity = model(
        latents=(1 - s) * x0 + s * noise,
        condition=torch.cat([item["condition"] for item in items]),
        timestep=sigma * 1000,
        text=encoders.text.expand(batch, -1, -1),
        image=torch.cat([item["image"] for item in items]),
        audio=model.adapter.windows(features, frames),
        audio_scale=audio_scale,
    )
    weight = sigma.square()  # the velocity's error times sigma: the clean sample's error
    if model.prediction == "sample_with_skip":  # ... over the mean spread the DiT's own output carries
        scale = skip_weights(sigma.clamp(min=SIGMA_FLOOR).view(-1, 1, 1, 1, 1), model.deviation_spread)[1]
        weight = weight / scale.square().mean(dim=1).flatten()
    mask = 1 + mouth_weight * torch.cat([item["mouth"] for item in items]).unsqueeze(1) if mouth_weight else None
    return (flow_matching_loss(velocity, noise - x0, mask) * weight).mean()


def mouth_grid(clip: Clip, latents: torch.Tensor) -> torch.Tensor:
    """[1, F, h, w] where the world's mouth is in each latent frame, on the latent grid `latents` [1, C, F, h, w] has."""
    return to_latent_grid(clip.mouth_masks, patch=1, space_stride=clip.frames.shape[1] // latents.shape[-1])


def prepared_clip(encoders: WorldEncoders, clip: Clip, with_mouth: bool) -> dict:
    """A pool item: the clip's model inputs, with its mouth grid when the loss weighs the mouth."""
    inputs = encoders.clip_inputs(clip)
    return {**inputs, "mouth": mouth_grid(clip, inputs["latents"])} if with_mouth else inputs


def export_model(ema: FantasyTalkingModel, frozen: Path, folder: Path, produced_by: dict) -> Path:
    """A complete model folder (real layouts) written to a staging folder, then renamed into place."""
    folder = folder.resolve()
    with staged_folder(folder) as staging:
        shutil.copytree(frozen, staging, dirs_exist_ok=True)
        ema.transformer.save_pretrained(staging / "transformer", safe_serialization=True)
        save_safetensors(
            ours_to_upstream({k: v.contiguous() for k, v in ema.adapter.state_dict().items()}),
            staging / "audio_adapter.safetensors",
            metadata={"ft2.kind": "audio_adapter"},
        )
        prior = None
        if ema.prediction == "sample_with_skip":
            prior = "deviation_prior.safetensors"
            save_prior(ema.deviation_basis, ema.deviation_spread, staging / prior)
        write_manifest(staging, produced_by, ema.prediction, prior)
    return folder


def train(config: dict) -> Path:
    from tqdm import tqdm

    train, world = config["train"], config["world"]
    logging.getLogger("ft2_core.io.audio").setLevel(logging.WARNING)  # every clip is cut to its video: no news
    steps, batch_size, seed = train["steps"], train["batch_size"], train["seed"]
    frames = world["frames"]
    check_frame_count(frames, "world.frames")
    output = resolve(train["output"])
    output.mkdir(parents=True, exist_ok=True)
    prior = deviation_prior(config, seed) if config["model"]["prediction"] == "sample_with_skip" else None
    model = build_model(config, seed, prior).train()
    ema = build_model(config, seed, prior).requires_grad_(False)
    ema.load_state_dict(model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=train["lr"], weight_decay=train["weight_decay"])
    start = restore(output, config, {"model": dict(model.state_dict()), "ema": dict(ema.state_dict())}, optimizer)
    frozen = output / "frozen"  # written once the folder is known to be this run's
    if not (frozen / "vae" / "config.json").is_file():
        vae = config["model"]["vae"]
        save_frozen_parts(frozen, latent=config["model"]["latent"], vae=resolve(vae) if vae else "")
    encoders = WorldEncoders.from_folder(frozen)
    warmup = max(1, train["warmup"])
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / warmup), last_epoch=start - 1)
    log.info("building a pool of %d world clips", train["pool"])
    mouth_weight = train["mouth_weight"]
    pool = ClipPool(lambda index: prepared_clip(encoders, training_clip(seed, index, frames, world["size"]), mouth_weight > 0),
                    train["pool"], train["refresh"], seed, train["refresh_every"])
    pool.advance_to(start)
    started = time.perf_counter()
    bar = tqdm(total=steps, initial=start, desc="base model", mininterval=2.0)
    with StopRequests() as stop, bar:  # the bar's line ends even when a step fails, so an error starts a line of its own
        for step in range(start, steps):
            pool.advance_to(step)
            loss = step_loss(model, pool.batch(step, batch_size), encoders, step, seed, train["audio_dropout"], frames,
                             mouth_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1 - train["ema"])
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            append_jsonl(
                output / "metrics.jsonl",
                {"step": step + 1, "loss": loss.item(), "seconds": round(time.perf_counter() - started, 2)},
            )
            end_of_step(
                stop,
                output,
                step + 1,
                steps,
                train["checkpoint_every"],
                {"model": model.state_dict(), "ema": ema.state_dict()},
                optimizer,
                bar,
                settings=run_settings(config),
            )
    produced_by = {
        "command": "python -m training.miniature.train_base " + " ".join(sys.argv[1:]),
        "config": recorded_config(config),
        "train_seconds_this_session": round(time.perf_counter() - started, 1),
    }
    result = export_model(ema, frozen, output / "model", produced_by)
    if train.get("export"):
        export_model(ema, frozen, resolve(train["export"]), produced_by)
    return result


def main(argv=None) -> int:
    """The command: `python -m training.miniature.train_base --config FILE [--set KEY=VALUE ...]`."""
    return run(train, SCHEMA, argv)


if __name__ == "__main__":
    raise SystemExit(main())
