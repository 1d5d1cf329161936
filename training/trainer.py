"""What the expert and gate trainers share: config, data order, per-pair noise, the DPO loop,
metrics, atomic checkpoints and exact resume, on top of accelerate (DDP, or FSDP for large models)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # scripts run as `python training/x.py` or under `accelerate launch`
    sys.path.insert(0, str(REPO))

from ft2_core.io.atomic import remove_temporaries, staged_folder, write_text_atomic  # noqa: E402
from ft2_core.io.checkpoint_io import load_state_dict, save_safetensors  # noqa: E402
from ft2_core.dimensions import DIMENSION_NAMES  # noqa: E402
from ft2_core.errors import InputError  # noqa: E402
from ft2_core.sampling.flow import shift_sigmas  # noqa: E402
from ft2_core.tlpo.flow_dpo import dpo_step  # noqa: E402
from ft2_core.io.jsonl import append_jsonl  # noqa: E402
from ft2_core.tlpo.preference_data import LatentCache, PairDataset, collate_pairs, read_pairs  # noqa: E402

log = logging.getLogger("ft2.train")
SIGMA_BUCKETS = (0.0, 0.25, 0.5, 0.75, 1.0)
KEEP_CHECKPOINTS = 2


# ------------------------------------------------------------------ config
def resolve(path: str) -> Path:
    """Paths in a config are relative to the current directory, as on the command line."""
    return Path(path).expanduser()


# ------------------------------------------------------------------ data order and noise
def mix_seed(*parts: int) -> int:
    """A stable 63-bit seed from integers (same on every process and run)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = ((value ^ (part & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


def global_batch(step: int, dataset_size: int, batch_size: int, seed: int) -> list[int]:
    """Pair indices of global step `step`: a seeded permutation per epoch, cut into batches (last partial dropped)."""
    per_epoch = dataset_size // batch_size
    if per_epoch == 0:
        raise InputError(f"batch size {batch_size} is larger than the {dataset_size} pairs")
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
    return order[offset * batch_size:(offset + 1) * batch_size].tolist()


def pair_noise(indices, step: int, seed: int, shape, sigma_range, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """sigma [B] and noise [B, *shape] per pair, keyed by (seed, step, pair index): independent of how
    the global batch is split across processes, so one process and many give the same run."""
    sigmas, noises = [], []
    for index in indices:
        g = torch.Generator().manual_seed(mix_seed(seed, step, int(index)))
        u = torch.rand((), generator=g, dtype=torch.float64)
        sigmas.append(sigma_range[0] + (sigma_range[1] - sigma_range[0]) * u)
        noises.append(torch.randn(shape, generator=g))
    sigma = shift_sigmas(torch.stack(sigmas), shift).float()
    return sigma, torch.stack(noises)


# ------------------------------------------------------------------ metrics
@dataclass
class StepMetrics:
    loss: float
    accuracy: float
    margin: float
    bucket_accuracy: dict

    def as_dict(self) -> dict:
        return {"loss": self.loss, "implicit_accuracy": self.accuracy, "reward_margin": self.margin,
                "accuracy_by_sigma": self.bucket_accuracy}


def summarise(loss: torch.Tensor, margins: torch.Tensor, sigmas: torch.Tensor) -> StepMetrics:
    correct = (margins > 0).float()
    buckets = {}
    for low, high in zip(SIGMA_BUCKETS[:-1], SIGMA_BUCKETS[1:]):
        inside = (sigmas >= low) & (sigmas < high if high < 1 else sigmas <= high)
        if inside.any():
            buckets[f"{low:.2f}-{high:.2f}"] = float(correct[inside].mean())
    return StepMetrics(float(loss), float(correct.mean()), float(margins.mean()), buckets)


# ------------------------------------------------------------------ checkpoints
class DamagedCheckpoint(Exception):
    """A checkpoint folder that cannot be read back whole."""


def checkpoints(output: Path) -> list[Path]:
    """Finished checkpoint folders, oldest first."""
    return sorted(output.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(output: Path, step: int, states: dict[str, dict[str, torch.Tensor]], optimizer) -> Path:
    """Write `states` (file stem -> tensors), the optimizer and the step into a temporary folder, then rename:
    a crash never leaves a half checkpoint. Keeps the newest KEEP_CHECKPOINTS."""
    target = output / f"checkpoint-{step:07d}"
    with staged_folder(target) as staging:  # replaces a damaged folder of this step, left by an earlier run
        for stem, tensors in states.items():
            save_safetensors({k: v.detach().float().cpu().clone() for k, v in tensors.items()}, staging / f"{stem}.safetensors")
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        (staging / "state.json").write_text(json.dumps({"step": step, "files": sorted(states)}))
    for old in checkpoints(output)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def read_checkpoint(path: Path) -> tuple[int, dict[str, dict[str, torch.Tensor]], dict]:
    """(step, states, optimizer state) of a checkpoint, verified: every file present and loadable."""
    try:
        state = json.loads((path / "state.json").read_text())
        step, stems = int(state["step"]), state.get("files", ["trainable"])
        states = {stem: load_state_dict(path / f"{stem}.safetensors", f"checkpoint {path.name}") for stem in stems}
        optimizer = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, __import__("pickle").UnpicklingError) as err:
        raise DamagedCheckpoint(f"{type(err).__name__}: {err}".splitlines()[0][:200]) from None
    if not isinstance(optimizer, dict) or "state" not in optimizer:
        raise DamagedCheckpoint("optimizer.pt holds no optimizer state")
    return step, states, optimizer


def last_good_checkpoint(output: Path) -> tuple[Path, int, dict, dict] | None:
    """The newest checkpoint that reads back whole; damaged newer ones are reported and skipped."""
    for path in reversed(checkpoints(output)):
        try:
            return (path, *read_checkpoint(path))
        except DamagedCheckpoint as err:
            log.warning("checkpoint %s is damaged (%s); trying the one before it", path, err)
    return None


def remove_stale_files(output: Path) -> None:
    """Staging folders and temporary files that a killed run left behind (never a finished file)."""
    for stale in output.glob(".checkpoint-*"):
        shutil.rmtree(stale, ignore_errors=True)
        log.warning("removed %s, left by an interrupted run", stale)
    remove_temporaries(output)


def trim_metrics(path: Path, step: int) -> None:
    """On resume, keep the log lines of steps up to the checkpoint; a cut or corrupt line (a kill mid-write) is dropped."""
    if not path.is_file():
        return
    kept = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            keep = int(record["step"]) <= step
        except (ValueError, KeyError, TypeError):
            log.warning("%s line %d is cut or corrupt; dropped", path, number)
            continue
        if keep:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))


def restore(output: Path, config: dict, targets: dict[str, dict[str, torch.nn.Parameter | torch.Tensor]], optimizer,
            main_process: bool = True) -> int:
    """Clean up after a killed run, then load the last good checkpoint into `targets` (stem -> named tensors)
    and the optimizer, unless train.resume is false. Returns the step to start at."""
    if main_process:
        remove_stale_files(output)
    found = last_good_checkpoint(output) if config["train"].get("resume", True) else None
    if found is None:  # starting over: log lines of a run killed before its first checkpoint go too
        if main_process:
            trim_metrics(output / "metrics.jsonl", 0)
        return 0
    path, step, states, optimizer_state = found
    if set(states) != set(targets) or any(set(states[k]) != set(targets[k]) for k in targets):
        raise InputError(f"checkpoint {path} does not match this run's trainable parameters; use another train.output")
    with torch.no_grad():
        for stem, named in targets.items():
            for name, tensor in named.items():
                tensor.copy_(states[stem][name].to(tensor.dtype))
    optimizer.load_state_dict(optimizer_state)
    if main_process:
        trim_metrics(output / "metrics.jsonl", step)
    log.info("resuming from %s at step %d", path, step)
    return step


def resume(config: dict, output: Path, parameters: dict[str, torch.nn.Parameter], optimizer, accelerator) -> int:
    """The DPO and critic trainers' resume: one file of trainable tensors."""
    return restore(output, config, {"trainable": parameters}, optimizer, accelerator.is_main_process)


def end_of_step(stop: "StopRequests", output: Path, done: int, steps: int, every: int, states: dict, optimizer, bar,
                accelerator=None) -> None:
    """Checkpoint on schedule, at the last step, or when asked to stop; then stop if asked (all processes agree)."""
    stopping = stop.requested(accelerator)
    if done % every == 0 or done == steps or stopping:
        if accelerator is not None:
            accelerator.wait_for_everyone()
        if accelerator is None or accelerator.is_main_process:
            save_checkpoint(output, done, states, optimizer)
    if stopping:
        bar.close()
        stop.check(f"after step {done} (checkpoint saved in {output})")


# ------------------------------------------------------------------ clean interruption
class Stopped(Exception):
    """Raised at a safe point after SIGINT/SIGTERM; what is finished is kept."""

    def __init__(self, signum: int, where: str):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} {where}; run the same command again to resume")


class StopRequests:
    """Turn SIGINT/SIGTERM into a flag checked at safe points (no KeyboardInterrupt in the middle of a write)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._request)
            except ValueError:  # not the main thread: leave the handlers alone
                pass
        return self

    def _request(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self, accelerator=None) -> bool:
        """Whether any process was asked to stop (all processes agree, so they stop at the same step)."""
        asked = self.signum is not None
        if accelerator is not None and accelerator.num_processes > 1:
            flag = torch.tensor([float(self.signum or 0)], device=accelerator.device)
            flag = accelerator.reduce(flag, reduction="sum")
            if float(flag) > 0 and self.signum is None:
                self.signum = signal.SIGTERM
            asked = float(flag) > 0
        return asked

    def check(self, where: str) -> None:
        if self.signum is not None:
            raise Stopped(self.signum, where)

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False


def local_batch_size(batch_size: int, accelerator) -> int:
    """This process's share of the global batch."""
    if batch_size % accelerator.num_processes:
        raise InputError(f"train.batch_size {batch_size} must divide evenly over {accelerator.num_processes} processes")
    return batch_size // accelerator.num_processes


# ------------------------------------------------------------------ the loop
def make_accelerator(config: dict):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    train = config["train"]
    plugins = {}
    if train.get("strategy", "ddp") == "fsdp":
        from accelerate import FullyShardedDataParallelPlugin

        # frozen DiT weights and trainable LoRA/gate parameters share modules: keep original params
        plugins["fsdp_plugin"] = FullyShardedDataParallelPlugin(use_orig_params=True, auto_wrap_policy="transformer_based_wrap",
                                                                transformer_cls_names_to_wrap=["WanTransformerBlock"])
    accelerator = Accelerator(mixed_precision=train.get("mixed_precision", "no"), cpu=train.get("cpu", False),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)], **plugins)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise InputError(f"{launched} processes were launched but accelerate runs {accelerator.num_processes}: "
                         "without GPUs set ACCELERATE_USE_CPU=1 (or train.cpu = true) and launch with --multi_gpu")
    return accelerator


def pair_dataset(config: dict, pair_files: list[str], use_lip_mask: bool) -> PairDataset:
    cache = LatentCache(resolve(config["data"]["cache"]))
    pairs = [p for f in pair_files for p in read_pairs(resolve(f))]
    if not pairs:
        raise InputError("no preference pairs: check data.pairs")
    return PairDataset(cache, pairs, use_lip_mask)


def train_dpo(config: dict, model, parameters: dict[str, torch.nn.Parameter], dataset: PairDataset,
              save_result: Callable[[Path], Path], accelerator) -> Path:
    """Flow-DPO over `dataset`, training `parameters` (named, on `model`); returns what `save_result` wrote."""
    from tqdm import tqdm

    train = config["train"]
    output = resolve(train["output"])
    output.mkdir(parents=True, exist_ok=True)
    steps, batch_size, seed, beta = train["steps"], train["batch_size"], train.get("seed", 0), float(train["beta"])
    rank, local = accelerator.process_index, local_batch_size(batch_size, accelerator)
    sigma_range = (train.get("sigma_min", 0.0), train.get("sigma_max", 1.0))
    model.gradient_checkpointing = bool(train.get("gradient_checkpointing", False))
    optimizer = torch.optim.AdamW(parameters.values(), lr=float(train["lr"]), weight_decay=float(train.get("weight_decay", 0.0)))
    start = resume(config, output, parameters, optimizer, accelerator)
    metrics_file = output / "metrics.jsonl"
    model, optimizer = accelerator.prepare(model, optimizer)
    inner = accelerator.unwrap_model(model)
    bar = tqdm(total=steps, initial=start, desc="Flow-DPO", mininterval=2.0, disable=not accelerator.is_main_process)
    with StopRequests() as stop:
        for step in range(start, steps):
            indices = global_batch(step, len(dataset), batch_size, seed)[rank * local:(rank + 1) * local]
            batch = collate_pairs([dataset[i] for i in indices])
            sigma, noise = pair_noise(indices, step, seed, batch["winner"].shape[1:], sigma_range, train.get("shift", 1.0))
            device = accelerator.device
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with torch.no_grad():
                batch["audio"] = inner.adapter.windows(batch["audio_features"], batch["num_frames"])
            with accelerator.autocast():
                out = dpo_step(model, batch, sigma.to(device), noise.to(device), beta, float(train.get("winner_penalty", 0.0)))
            accelerator.backward(out.loss)
            if train.get("max_grad_norm"):
                accelerator.clip_grad_norm_(list(parameters.values()), float(train["max_grad_norm"]))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss = accelerator.reduce(out.loss.detach(), reduction="mean")
            margins, sigmas = accelerator.gather(out.reward_margin), accelerator.gather(out.sigma)
            metrics = summarise(loss, margins, sigmas)
            if accelerator.is_main_process:
                bar.update(1)
                bar.set_postfix(loss=f"{metrics.loss:.4f}", acc=f"{metrics.accuracy:.2f}", margin=f"{metrics.margin:.3f}")
                append_jsonl(metrics_file, {"step": step + 1, **metrics.as_dict()})
            end_of_step(stop, output, step + 1, steps, train.get("checkpoint_every", 100), {"trainable": parameters}, optimizer,
                        bar, accelerator)
    bar.close()
    check_ranks_agree(accelerator, parameters, output, steps)
    result = save_result(output) if accelerator.is_main_process else None
    accelerator.wait_for_everyone()
    return result


@torch.no_grad()
def preference_accuracy(model, dataset: PairDataset, indices: list[int], seed: int, sigmas=(0.2, 0.4, 0.6, 0.8)) -> float:
    """Share of (pair, sigma) where the model's reward margin over the reference is positive (held-out check)."""
    correct, total = 0, 0
    for sigma_value in sigmas:
        for index in indices:
            batch = collate_pairs([dataset[index]])
            batch["audio"] = model.adapter.windows(batch["audio_features"], batch["num_frames"])
            g = torch.Generator().manual_seed(mix_seed(seed, index, int(sigma_value * 1000)))
            noise = torch.randn(batch["winner"].shape, generator=g)
            out = dpo_step(model, batch, torch.tensor([sigma_value]), noise, beta=1.0)
            correct += int(out.reward_margin.item() > 0)
            total += 1
    return correct / total


def synthetic_data(config: dict) -> dict | None:
    """With `data.synthetic = true`, the toy pair set is built in `data.cache`'s parent on first use."""
    if not config["data"].get("synthetic"):
        return None
    from training.synthetic_pairs import make_synthetic_cache

    cache = resolve(config["data"]["cache"])
    root = cache.parent
    manifests = {d: root / f"pairs_{d}.jsonl" for d in DIMENSION_NAMES}
    if not (cache / "index.json").is_file() or not all(p.is_file() for p in manifests.values()):
        manifests = make_synthetic_cache(root, int(config["data"].get("conditions", 32)), int(config["data"].get("seed", 0)))
    return manifests


def check_ranks_agree(accelerator, parameters: dict, output: Path, steps: int) -> None:
    """Every process must end with the same weights; record per-rank checksums in run.json."""
    local = torch.stack([p.detach().double().sum() for p in parameters.values()]).to(accelerator.device)
    every = accelerator.gather(local[None]).cpu()  # [world, parameters]
    if accelerator.is_main_process:
        (output / "run.json").write_text(json.dumps({"world_size": accelerator.num_processes, "steps": steps,
                                                     "rank_checksums": every.tolist()}))
        spread = float((every - every[0]).abs().max())
        if spread > 1e-6 * max(1.0, float(every.abs().max())):
            raise RuntimeError(f"processes ended with different weights (checksum spread {spread:g})")
    accelerator.wait_for_everyone()


def model_from_config(config: dict, dtype=torch.float32):
    """The DiT + adapter from a model folder, or the built-in tiny model when none is given."""
    from ft2_core.model_paths import ModelPaths
    from ft2_core.pipeline import load_talking_model
    from ft2_core.tiny import tiny_model_dir

    model = config["model"]
    folder = model["folder"] or tiny_model_dir(model["cache_dir"] or None)
    paths = ModelPaths.from_folder(folder, transformer=model["dit"] or None, audio_adapter=model["adapter"] or None)
    talking = load_talking_model(paths.transformer, paths.audio_adapter, dtype, model["dit_config"] or None, paths.prediction)
    return talking, paths


def run(main: Callable[[dict], Path], schema: dict, argv=None) -> int:
    """A training script's entry: check the whole config first, then run; bad input exits 2 with one line per problem."""
    from training.config import ConfigError, load_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = main(load_config(argv, schema))
    except ConfigError as err:
        for problem in err.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except Stopped as stopped:
        print(stopped, file=sys.stderr)
        return 128 + stopped.signum
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result is not None:
        log.info("wrote %s", result)
    return 0
