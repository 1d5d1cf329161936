"""Runs the chain: stages in order, each skipped once its marker exists (resumable), optionally reusing the first
stages of another run with the same settings; writes the report."""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from ft2_core.errors import InputError
from ft2_core.io.atomic import write_text_atomic
from ft2_core.models.audio_windows import check_frame_count
from training.common.config import check, resolve
from training.common.interrupts import Stopped
from training.common.script import run
from training.miniature.reproduce_tlpo.report import report, summary_rows
from training.miniature.reproduce_tlpo.schema import SCHEMA, STAGES
from training.miniature.reproduce_tlpo.stages import STAGE_FUNCTIONS, ChainStopped, critic_base_dir

log = logging.getLogger("ft2.tlpo")
# What each stage's output depends on besides the stages before it; another run's output is taken, in stage
# order, as long as these match (a run that changes only [evaluate], e.g. its split, redoes only the evaluation).
REUSABLE = {"conditions": (("world",), ()), "candidates": (("candidates",), ("model", "seed")),
            "critic_base": (("critic_base",), ()), "critic": (("critic",), ()),
            "pairs": (("curation",), ()), "cache": ((), ()), "experts": (("experts",), ()), "gate": (("gate",), ())}

def stage_inputs(config: dict, stage: str) -> dict:
    sections, run_keys = REUSABLE[stage]
    return {**{s: config[s] for s in sections}, **{f"run.{k}": config["run"][k] for k in run_keys}}

def recorded_config(run_folder: Path, what: str) -> dict:
    """A finished run's settings, with the defaults of options added since it ran (each default is the old behaviour)."""
    recorded = run_folder / "run_config.json"
    if not recorded.is_file():
        raise InputError(f"{what}: {run_folder} has no run_config.json; is it a reproduce_tlpo output folder?")
    raw = {k: v for k, v in json.loads(recorded.read_text()).items() if not k.startswith("_")}
    config, problems = check(raw, SCHEMA)
    if problems:
        raise InputError(f"{what}: {recorded}: {problems[0]}")
    return config

def reuse_stages(config: dict, root: Path) -> None:
    """Take the first stages of another run of the same world (`run.reuse`), up to the first whose settings differ:
    an ablation of the curation, the experts or the gate then runs only what it changes."""
    other = resolve(config["run"]["reuse"])
    theirs = recorded_config(other, "run.reuse")
    for stage in REUSABLE:
        if (root / "stages" / f"{stage}.json").is_file():
            continue
        if not (other / "stages" / f"{stage}.json").is_file() or stage_inputs(theirs, stage) != stage_inputs(config, stage):
            log.info("stage %s: %s differs or is not done there; not reused", stage, other)
            break  # later stages depend on this one
        link = root / stage
        if not link.exists() and (other / stage).exists():  # a skipped stage left no folder
            link.symlink_to((other / stage).resolve(), target_is_directory=True)
        write_text_atomic(root / "stages" / f"{stage}.json", (other / "stages" / f"{stage}.json").read_text())
        log.info("stage %s: reused from %s", stage, other)


def reproduce(config: dict) -> Path:
    """Every stage not done yet, in order; then the report."""
    root = resolve(config["run"]["output"])
    check_frame_count(config["world"]["frames"], "world.frames")  # refused here, not in a stage's subprocesses
    critic_base_dir(config, root)  # a thinker that cannot exist is refused before any stage runs
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "run_config.json", json.dumps(config, indent=1))
    if config["run"]["reuse"]:
        reuse_stages(config, root)
    stages = {}
    for name in STAGES:
        marker = root / "stages" / f"{name}.json"
        if marker.is_file():
            stages[name] = json.loads(marker.read_text())
            log.info("stage %s: done before, skipped", name)
            continue
        log.info("stage %s", name)
        started = time.perf_counter()
        try:
            result = STAGE_FUNCTIONS[name](config, root)
        except ChainStopped as stopped:
            if stopped.code > 128:
                raise Stopped(stopped.code - 128, f"in stage {name}") from None
            raise InputError(str(stopped)) from None
        stages[name] = {**result, "_seconds": round(time.perf_counter() - started, 1)}
        write_text_atomic(marker, json.dumps(stages[name]))
    text = report(config, root, stages)
    out = write_text_atomic(root / "results.md", text)
    write_text_atomic(
        root / "results.json", json.dumps({"summary": summary_rows(stages["evaluate"]["results"]), "stages": stages}, indent=1)
    )
    if config["run"]["results"]:
        target = resolve(config["run"]["results"])
        write_text_atomic(target.with_suffix(".md"), text)
        shutil.copyfile(root / "gate_heatmap.png", target.with_name(target.stem + "_gate.png"))
    print(text)
    return out


def main(argv=None) -> int:
    return run(reproduce, SCHEMA, argv)
