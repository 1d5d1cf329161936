"""Checkpoints written whole or not at all, and an exact resume from the last good one."""
from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch

from ft2_core.checks import finite_tensors
from ft2_core.errors import InputError
from ft2_core.io.atomic import remove_temporaries, staged_folder, write_text_atomic
from ft2_core.io.checkpoint_io import load_state_dict, save_safetensors

from .interrupts import StopRequests
from .sharding import like, sharded_optimizer_state, whole_optimizer_state, whole_tensors

log = logging.getLogger("ft2.train")
KEEP_CHECKPOINTS = 2
# Settings a resumed run may change: where and how long it runs, and how it uses memory (the same gradients).
SAFE_TO_CHANGE = {f"train.{key}" for key in (
    "output", "steps", "checkpoint_every", "eval_every", "resume", "allow_changes", "export", "micro_batch_size",
    "rows_at_a_time", "gradient_checkpointing", "offload_checkpoints", "blocks_to_swap", "strategy", "cpu")}


def run_settings(config: dict) -> dict:
    """What defines a run, as dotted keys: every config value except those SAFE_TO_CHANGE (recorded in checkpoints)."""
    flat = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if key.startswith("_"):
                continue
            if isinstance(value, dict) and prefix == "":
                walk(value, f"{key}.")
            elif f"{prefix}{key}" not in SAFE_TO_CHANGE:
                flat[f"{prefix}{key}"] = value

    walk(config, "")
    return flat


def recorded_settings(recorded: dict, config: dict) -> dict:
    """A run's recorded settings with the options added since it was recorded at their defaults: a new option's
    default keeps what the code did before the option existed, so such a checkpoint resumes without allow_changes."""
    return {**run_settings(config.get("_defaults", {})), **recorded}


def settings_differing(recorded: dict, config: dict) -> list[str]:
    """The keys whose recorded value differs from this run's settings, less those train.allow_changes lets change."""
    current, allowed = run_settings(config), set(config["train"].get("allow_changes", []))
    recorded = recorded_settings(recorded, config)
    return [key for key in sorted(set(recorded) | set(current)) if recorded.get(key) != current.get(key) and key not in allowed]


def check_same_run(path: Path, step: int, recorded: dict | None, config: dict) -> None:
    """A checkpoint resumes only the run it belongs to: one sentence naming what differs, unless the user allows it."""
    steps = config["train"].get("steps")
    if steps is not None and step > steps:
        raise InputError(f"checkpoint {path} is at step {step}, past train.steps = {steps}: raise train.steps, or use "
                         "another train.output")
    if recorded is None:
        log.warning("checkpoint %s does not record its settings (made by an older version): resuming it as it is", path)
        return
    current, known = run_settings(config), recorded_settings(recorded, config)
    differing = settings_differing(recorded, config)
    if differing:
        changes = "; ".join(f"{key}: {known.get(key)!r} there{'' if key in recorded else ' (its default: not recorded)'}, "
                            f"{current.get(key)!r} here" for key in differing)
        raise InputError(f"checkpoint {path} belongs to a run with other settings ({changes}): use another train.output, "
                         "set train.resume = false to start afresh, or list those keys in train.allow_changes to "
                         "continue with them")


SETTINGS_FILE = "run_settings.json"  # what the run writing into an output folder is, from its first step


def claim_folder(output: Path, config: dict) -> None:
    """Before a run starts from step 0 in `output`: the folder must be new, or hold this same run (killed before its
    first checkpoint), unless the user set train.resume = false to start over in it. Then record this run in it."""
    current, path = run_settings(config), output / SETTINGS_FILE
    if config["train"].get("resume", True):
        if path.is_file():
            differing = settings_differing(json.loads(path.read_text()), config)
            if differing:
                raise InputError(f"train.output {output} holds a run with other settings ({', '.join(differing)}): use "
                                 "another folder, or set train.resume = false to start over in it")
        else:
            theirs = sorted(p.name for p in output.iterdir() if not p.name.startswith(".")) if output.is_dir() else []
            if theirs:
                raise InputError(f"train.output {output} holds files this run did not make ({', '.join(theirs[:3])}): "
                                 "use another folder, or set train.resume = false to start over in it")
    write_text_atomic(path, json.dumps(current, indent=1, sort_keys=True, default=str))


class DamagedCheckpoint(Exception):
    """A checkpoint folder that cannot be read back whole."""


def checkpoints(output: Path) -> list[Path]:
    """Finished checkpoint folders (checkpoint-STEP), oldest first; other names (a user's checkpoint-x9) are not ours."""
    found = [p for p in output.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(output: Path, step: int, states: dict[str, dict[str, torch.Tensor]], optimizer_state: dict,
                    settings: dict | None = None) -> Path:
    """Write `states` (file stem -> whole tensors), the optimizer's state, the step and the run's settings into a
    temporary folder, then rename: a crash never leaves a half checkpoint. Keeps the newest KEEP_CHECKPOINTS."""
    target = output / f"checkpoint-{step:07d}"
    with staged_folder(target) as staging:  # replaces a damaged folder of this step, left by an earlier run
        for stem, tensors in states.items():
            save_safetensors({k: v.detach().float().cpu().clone() for k, v in tensors.items()}, staging / f"{stem}.safetensors")
        torch.save(optimizer_state, staging / "optimizer.pt")
        (staging / "state.json").write_text(json.dumps({"step": step, "files": sorted(states), "settings": settings}))
    for old in checkpoints(output)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def read_checkpoint(path: Path) -> tuple[int, dict[str, dict[str, torch.Tensor]], dict, dict | None]:
    """(step, states, optimizer state, settings) of a checkpoint, verified: every file present and loadable."""
    try:
        state = json.loads((path / "state.json").read_text())
        step, stems, settings = int(state["step"]), state.get("files", ["trainable"]), state.get("settings")
        states = {stem: load_state_dict(path / f"{stem}.safetensors", f"checkpoint {path.name}") for stem in stems}
        for stem, tensors in states.items():  # NaN weights (a diverged step saved by an older version) are damage too
            finite_tensors(tensors, f"{stem}.safetensors")
        optimizer = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError, __import__("pickle").UnpicklingError) as err:
        raise DamagedCheckpoint(f"{type(err).__name__}: {err}".splitlines()[0][:200]) from None
    if not isinstance(optimizer, dict) or "state" not in optimizer:
        raise DamagedCheckpoint("optimizer.pt holds no optimizer state")
    return step, states, optimizer, settings


def last_good_checkpoint(output: Path) -> tuple[Path, int, dict, dict, dict | None] | None:
    """The newest checkpoint that reads back whole; damaged newer ones are reported and skipped."""
    for path in reversed(checkpoints(output)):
        try:
            return (path, *read_checkpoint(path))
        except DamagedCheckpoint as err:
            log.warning("checkpoint %s is damaged (%s); trying the one before it", path, err)
    return None


def remove_stale_files(output: Path) -> None:
    """Staging folders and temporary files that a killed run left behind (never a finished file)."""
    for stale in remove_temporaries(output):
        log.warning("removed %s, left by an interrupted run", stale)


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
            claim_folder(output, config)
            trim_metrics(output / "metrics.jsonl", 0)
        return 0
    path, step, states, optimizer_state, settings = found
    check_same_run(path, step, settings, config)
    if set(states) != set(targets) or any(set(states[k]) != set(targets[k]) for k in targets):
        raise InputError(f"checkpoint {path} does not match this run's trainable parameters; use another train.output")
    with torch.no_grad():
        for stem, named in targets.items():
            for name, tensor in named.items():
                tensor.copy_(like(states[stem][name], tensor))
    optimizer.load_state_dict(sharded_optimizer_state(optimizer_state, optimizer))
    if main_process:
        trim_metrics(output / "metrics.jsonl", step)
    log.info("resuming from %s at step %d", path, step)
    return step


def resume(config: dict, output: Path, parameters: dict[str, torch.nn.Parameter], optimizer, accelerator) -> int:
    """The DPO and critic trainers' resume: one file of trainable tensors."""
    return restore(output, config, {"trainable": parameters}, optimizer, accelerator.is_main_process)


def end_of_step(stop: "StopRequests", output: Path, done: int, steps: int, every: int, states: dict, optimizer, bar,
                accelerator=None, settings: dict | None = None) -> None:
    """Checkpoint on schedule, at the last step, or when asked to stop; then stop if asked (all processes agree)."""
    stopping = stop.requested(accelerator)
    if done % every == 0 or done == steps or stopping:
        # gathered whole on every process (FSDP shards them; see sharding), then written by the main one
        states = {stem: whole_tensors(tensors) for stem, tensors in states.items()}
        optimizer_state = whole_optimizer_state(optimizer)
        if accelerator is not None:
            accelerator.wait_for_everyone()
        if accelerator is None or accelerator.is_main_process:
            save_checkpoint(output, done, states, optimizer_state, settings)
    if stopping:
        bar.close()
        stop.check(f"after step {done} (checkpoint saved in {output})")
