"""Judges' scores of miniature models on held-out world conditions, beside ground truth, a static first frame and the
untrained model: the oracles, the sync model's confidence and offset, and the frame-hold ratio; writes a Markdown
table and the raw numbers.

    python -m training.miniature.evaluate_base --out training/miniature/results/miniature_base \
        [--model [NAME=]DIR ...] [--split validation|test] [--clips 32] [--frames 33]

Generation goes through the real pipeline (FantasyTalkingPipeline.animate, each model's own defaults). The
conditions are world seeds the training never draws: the validation split to choose between models, the test
split once for the table a choice is reported with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.io.atomic import write_text_atomic
from ft2_core.miniature.model import miniature_model_dir
from ft2_core.miniature.oracles import PROTOCOL_VERSION, frame_hold_ratio, score_clip
from ft2_core.miniature.sync_model import SyncModel
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, VALIDATION_SEEDS_FROM, Clip, make_clip
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import SamplerOptions
from training.common.config import recorded_config
from training.miniature.tables import command_line, score_table


def generate(pipe: FantasyTalkingPipeline, clip: Clip, seed: int) -> np.ndarray:
    d = pipe.defaults
    options = SamplerOptions(steps=d["steps"], cfg=d["cfg"], audio_cfg=d["audio_cfg"], shift=d["shift"], seed=seed)
    result = pipe.animate(
        torch.from_numpy(clip.portrait),
        clip.audio,
        options=options,
        num_frames=len(clip.frames),
        fps=clip.fps,
        max_side=clip.portrait.shape[0],
    )
    return result.frames.numpy()


def untrained_model_dir(trained: Path, workdir: Path) -> Path:
    """The trained folder with its DiT and adapter re-initialised (same classes, model settings and seed as its training
    started with, read from its ft2_model.json; a Wan VAE it was trained on is the one in the folder)."""
    import shutil

    from ft2_core.io.checkpoint_io import save_safetensors
    from ft2_core.models.audio_adapter import ours_to_upstream
    from training.common.config import check
    from training.miniature.base_model import SCHEMA, build_model

    folder = workdir / "untrained"
    shutil.copytree(trained, folder)
    recorded = json.loads((trained / "ft2_model.json").read_text()).get("produced_by", {}).get("config", {})
    settings = dict(recorded.get("model", {}))
    if settings.get("vae"):
        settings["vae"] = str(trained / "vae")
    config, _ = check({"model": settings, "train": {"output": str(workdir)}}, SCHEMA)
    model = build_model(config, seed=0)
    shutil.rmtree(folder / "transformer")
    model.transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    save_safetensors(ours_to_upstream(model.adapter.state_dict()), folder / "audio_adapter.safetensors")
    return folder


SPLITS = {"validation": VALIDATION_SEEDS_FROM, "test": HELD_OUT_SEEDS_FROM}
RESERVED_ROWS = ("ground truth", "static first frame", "untrained model")


def judged(video: np.ndarray, clip: Clip, sync: SyncModel) -> dict:
    """The oracles' scores (and details), the sync model's reading and the frame-hold ratio of one video."""
    scores = score_clip(video, clip.audio, clip.fps, clip.face, clip.frames).as_dict()
    reading = sync.read(video, clip.audio, clip.fps, clip.portrait)
    return {**scores, **reading.as_scores(),
            "frame_hold": frame_hold_ratio(video) if np.abs(np.diff(video, axis=0)).max() > 0 else None}  # still: none


def summary(rows: dict[str, list[dict]]) -> dict:
    table = {}
    for name, scores in rows.items():
        table[name] = {key: {"mean": float(np.mean([s[key] for s in scores])), "std": float(np.std([s[key] for s in scores]))}
                       for key in (*DIMENSION_NAMES, "sync_confidence")}
        table[name]["sync_offset"] = {"mean_abs": float(np.mean([abs(s["sync_offset"]) for s in scores]))}
        holds = [s["frame_hold"] for s in scores if s["frame_hold"] is not None]
        table[name]["frame_hold"] = {"mean": float(np.mean(holds)), "std": float(np.std(holds))} if holds else None
    return table


def markdown(table: dict, args, command: str, extra: str, produced: dict) -> str:
    first = SPLITS[args.split]
    trained = "; ".join(f"{name}: training seed {seed}" for name, seed in produced.items())
    lines = [
        f"Judges' scores (oracle protocol {PROTOCOL_VERSION}) on {args.clips} held-out world clips ({args.frames} frames, "
        "64x64, 23 fps): mean ± std over clips.",
        "",
        f"Split: {args.split} (world seeds {first} to {first + args.clips - 1}; training draws seeds below "
        f"{HELD_OUT_SEEDS_FROM}). Sampling seed {args.seed}. One training run per model ({trained}), not replicates.",
        "",
        f"Command: `{command}`",
        "",
        *score_table(table),
        "",
        "Second lip-sync measure (ft2_core.miniature.sync_model, Sync-C's readout; the offset should be 0) and the "
        "frame-hold ratio (change into frames 4k+1 over the change elsewhere; about 1 in the truth):",
        "",
        "| row | sync confidence | mean abs sync offset (frames) | frame-hold ratio |",
        "|---|---|---|---|",
    ]
    for name, row in table.items():
        hold = f"{row['frame_hold']['mean']:.2f} ± {row['frame_hold']['std']:.2f}" if row["frame_hold"] else "(still)"
        lines.append(f"| {name} | {row['sync_confidence']['mean']:.3f} ± {row['sync_confidence']['std']:.3f} | "
                     f"{row['sync_offset']['mean_abs']:.2f} | {hold} |")
    return "\n".join(lines + ["", extra, ""])


def named_models(specs: list[str]) -> dict[str, Path]:
    """--model [NAME=]DIR values -> {row name: folder}; none: the shipped model as "trained base"."""
    if not specs:
        return {"trained base": miniature_model_dir()}
    models = {}
    for spec in specs:
        name, given, folder = spec.partition("=")
        name, folder = (name, folder) if given else (Path(spec).name, spec)
        if name in models or name in RESERVED_ROWS:
            raise ValueError(f"--model: row name {name!r} is taken; give each model its own NAME=DIR")
        models[name] = Path(folder)
    return models


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output path without suffix (.md and .json are written)")
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]DIR",
                        help="a model folder and its row name (repeatable; default: the shipped miniature model)")
    parser.add_argument("--split", choices=tuple(SPLITS), default="test")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.clips < 1 or args.frames < 21 or args.frames % 4 != 1:
        print("error: --clips must be at least 1 and --frames 4k+1 (at least 21, the sync model's reach)", file=sys.stderr)
        return 2
    try:
        models = named_models(args.model)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    missing = [str(folder) for folder in models.values() if not (folder / "ft2_model.json").is_file()]
    if missing:
        print(f"error: --model: no model folder (ft2_model.json) at {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        return evaluate(args, argv, models)
    except KeyboardInterrupt:  # nothing is written before the end: say so instead of a traceback
        print("stopped by SIGINT before the results were written; run the same command again", file=sys.stderr)
        return 130


def evaluate(args, argv, models: dict[str, Path]) -> int:
    clips = [make_clip(SPLITS[args.split] + i, args.frames) for i in range(args.clips)]
    sync = SyncModel.load()
    rows: dict[str, list[dict]] = {
        "ground truth": [judged(clip.frames, clip, sync) for clip in clips],
        "static first frame": [judged(np.repeat(clip.portrait[None], len(clip.frames), axis=0), clip, sync) for clip in clips],
    }
    timings, produced = {}, {}
    with tempfile.TemporaryDirectory() as workdir:
        first = next(iter(models.values()))
        for name, folder in (("untrained model", untrained_model_dir(first, Path(workdir))), *models.items()):
            pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(folder))
            started = time.perf_counter()
            videos = [generate(pipe, clip, args.seed) for clip in clips]
            timings[name] = (time.perf_counter() - started) / len(clips)
            rows[name] = [judged(video, clip, sync) for video, clip in zip(videos, clips)]
            if name != "untrained model":
                manifest = json.loads((folder / "ft2_model.json").read_text())
                config = recorded_config(manifest.get("produced_by", {}).get("config", {}))
                digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
                produced[name] = f"{config.get('train', {}).get('seed', 'not recorded')}, config sha256 {digest}"
                seconds = manifest.get("produced_by", {}).get("train_seconds_this_session")
                timings[name + " training"] = seconds
    table = summary(rows)
    extra = "Seconds per clip on this machine (sampling with each model's defaults): " + ", ".join(
        f"{name} {timings[name]:.1f}" for name in ("untrained model", *models)) + ". Training wall time: " + ", ".join(
        f"{name} {timings[name + ' training']} s" for name in models) + "."
    command = command_line("training.miniature.evaluate_base", argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = markdown(table, args, command, extra, produced)
    for suffix, text in (
        (".md", report),
        (".json", json.dumps({"protocol": PROTOCOL_VERSION, "split": args.split, "summary": table, "clips": rows,
                              "command": command}, indent=1)),
    ):
        write_text_atomic(out.with_suffix(suffix), text)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
