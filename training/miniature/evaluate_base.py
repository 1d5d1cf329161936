"""Oracle scores of a miniature model on held-out world conditions, beside ground truth, a static first
frame and the untrained model; writes a Markdown table and the raw numbers.

    python -m training.miniature.evaluate_base --out training/miniature/results/miniature_base \
        [--model DIR] [--clips 32] [--frames 33]

Generation goes through the real pipeline (FantasyTalkingPipeline.animate, the model's own defaults).
The held-out conditions are world seeds the training never draws (HELD_OUT_SEEDS_FROM and up).
"""

from __future__ import annotations

import argparse
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
from ft2_core.miniature.oracles import frame_hold_ratio, score_clip
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, Clip, make_clip
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import SamplerOptions
from training.miniature.tables import score_table


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
    """The trained folder with its DiT and adapter re-initialised (same classes and seed as training starts)."""
    import shutil

    from ft2_core.io.checkpoint_io import save_safetensors
    from ft2_core.models.audio_adapter import ours_to_upstream
    from training.common.config import check
    from training.miniature.base_model import SCHEMA, build_model

    folder = workdir / "untrained"
    shutil.copytree(trained, folder)
    config, _ = check({"train": {"output": str(workdir)}}, SCHEMA)
    model = build_model(config, seed=0)
    shutil.rmtree(folder / "transformer")
    model.transformer.save_pretrained(folder / "transformer", safe_serialization=True)
    save_safetensors(ours_to_upstream(model.adapter.state_dict()), folder / "audio_adapter.safetensors")
    return folder


def summary(rows: dict[str, list[dict]]) -> dict:
    table = {}
    for name, scores in rows.items():
        values = np.array([[s[d] for d in DIMENSION_NAMES] for s in scores])
        table[name] = {
            d: {"mean": float(values[:, i].mean()), "std": float(values[:, i].std())} for i, d in enumerate(DIMENSION_NAMES)
        }
    return table


def markdown(table: dict, clips: int, frames: int, command: str, extra: str, seed: int, training_seed) -> str:
    lines = [
        f"Oracle scores on {clips} held-out world clips ({frames} frames, 64x64, 23 fps): mean ± std over clips.",
        "",
        f"Split: test (world seeds {HELD_OUT_SEEDS_FROM} to {HELD_OUT_SEEDS_FROM + clips - 1}; training draws seeds below "
        f"{HELD_OUT_SEEDS_FROM}). Sampling seed {seed}. One trained model (training seed {training_seed}): a single "
        "training run, not replicates.",
        "",
        f"Command: `{command}`",
        "",
        *score_table(table),
    ]
    return "\n".join(lines + ["", extra, ""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output path without suffix (.md and .json are written)")
    parser.add_argument("--model", help="model folder (default: the shipped miniature model)")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.clips < 1 or args.frames < 5 or args.frames % 4 != 1:
        print("error: --clips must be at least 1 and --frames 4k+1 (at least 5)", file=sys.stderr)
        return 2
    try:
        return evaluate(args, argv)
    except KeyboardInterrupt:  # nothing is written before the end: say so instead of a traceback
        print("stopped by SIGINT before the results were written; run the same command again", file=sys.stderr)
        return 130


def evaluate(args, argv) -> int:
    trained = Path(args.model) if args.model else miniature_model_dir()
    clips = [make_clip(HELD_OUT_SEEDS_FROM + i, args.frames) for i in range(args.clips)]
    rows: dict[str, list[dict]] = {"ground truth": [], "static first frame": []}
    holds = {"ground truth": [frame_hold_ratio(clip.frames) for clip in clips]}  # a still video has no ratio
    for clip in clips:
        rows["ground truth"].append(score_clip(clip.frames, clip.audio, clip.fps, clip.face, clip.frames).as_dict())
        static = np.repeat(clip.portrait[None], len(clip.frames), axis=0)
        rows["static first frame"].append(score_clip(static, clip.audio, clip.fps, clip.face, clip.frames).as_dict())
    timings = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name, folder in (("untrained model", untrained_model_dir(trained, Path(workdir))), ("trained base", trained)):
            pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(folder))
            started = time.perf_counter()
            videos = [generate(pipe, clip, args.seed) for clip in clips]
            rows[name] = [score_clip(video, clip.audio, clip.fps, clip.face, clip.frames).as_dict()
                          for video, clip in zip(videos, clips)]
            holds[name] = [frame_hold_ratio(video) for video in videos]
            timings[name] = (time.perf_counter() - started) / len(clips)
    table = summary(rows)
    manifest = json.loads((trained / "ft2_model.json").read_text())
    train_time = manifest.get("produced_by", {}).get("train_seconds_this_session")
    training_seed = manifest.get("produced_by", {}).get("config", {}).get("train", {}).get("seed", "not recorded")
    extra = (
        "Frame-hold ratio (oracles.frame_hold_ratio: change into frames 4k+1 over the change elsewhere; mean ± std over "
        "clips): " + ", ".join(f"{name} {np.mean(v):.2f} ± {np.std(v):.2f}" for name, v in holds.items()) + ".\n\n"
        f"Sampling: the model's defaults {json.dumps(manifest['defaults'])}, seed {args.seed}; "
        f"{timings['trained base']:.1f} s per clip on this machine. Training wall time: {train_time} s."
    )
    command = "python -m training.miniature.evaluate_base " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = markdown(table, args.clips, args.frames, command, extra, args.seed, training_seed)
    for suffix, text in (
        (".md", report),
        (".json", json.dumps({"summary": table, "clips": rows, "frame_hold": holds, "command": command}, indent=1)),
    ):
        write_text_atomic(out.with_suffix(suffix), text)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
