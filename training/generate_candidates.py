"""Sample candidate videos for Talking-NSQ: N per (portrait, speech, prompt), each with its own seed and
guidance, through the ft2_core pipeline. Resumable: finished videos are kept and skipped.

    python -m training.generate_candidates --conditions conditions.jsonl --out data/candidates --samples 4

conditions.jsonl lines: {"id": "c001", "image": "face.png", "audio": "speech.wav", "prompt": "..."}.
Writes OUT/videos/<id>_<k>.mp4 and OUT/candidates.jsonl ({"id", "video", "condition", "seed", "cfg", "audio_cfg"}).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from ft2_core.builtin_models import model_folder
from ft2_core.checks import finite_number, safe_name, torch_device
from ft2_core.errors import InputError
from ft2_core.io.atomic import remove_temporaries
from ft2_core.io.audio import load_audio
from ft2_core.io.image import load_image
from ft2_core.io.jsonl import append_jsonl, read_jsonl
from ft2_core.io.video_io import write_mp4
from ft2_core.model_paths import ModelPaths
from ft2_core.models.audio_windows import check_frame_count
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import DEFAULT_PROMPT, SamplerOptions
from training.common.interrupts import Stopped, StopRequests

log = logging.getLogger("ft2.candidates")


def generate(conditions: list[dict], base: Path, out: Path, pipe: FantasyTalkingPipeline, args, stop: StopRequests) -> int:
    """Every missing candidate of every condition; one manifest line per finished video (a crash loses none)."""
    manifest = out / "candidates.jsonl"
    done = {r["id"] for r in read_jsonl(manifest, ("id",), "candidates manifest")} if manifest.is_file() else set()
    remove_temporaries(out / "videos")  # half-written videos of a killed run
    made = 0
    for condition in conditions:
        image = load_image(base / condition["image"])
        audio = load_audio(base / condition["audio"])
        for k in range(args.samples):
            candidate = f"{condition['id']}_{k}"
            if candidate in done:
                continue
            options = SamplerOptions(steps=args.steps or pipe.defaults["steps"], cfg=args.cfg[k % len(args.cfg)],
                                     audio_cfg=args.audio_cfg[k % len(args.audio_cfg)], shift=pipe.defaults["shift"],
                                     seed=args.seed + 1000 * k)
            result = pipe.animate(image, audio, condition.get("prompt", DEFAULT_PROMPT), options=options,
                                  num_frames=args.frames, fps=args.fps, max_side=args.max_side)
            video = write_mp4(out / "videos" / f"{candidate}.mp4", result.frames, result.fps, result.audio)
            append_jsonl(manifest, {"id": candidate, "video": str(video.relative_to(out)), "condition": condition["id"],
                                    "seed": options.seed, "cfg": options.cfg, "audio_cfg": options.audio_cfg})
            made += 1
            stop.check(f"after {len(done) + made} videos (kept in {out})")
    return made


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=4, help="candidates per condition")
    parser.add_argument("--model-dir", help="model folder, or 'miniature' / 'tiny' for a built-in one (default: tiny)")
    parser.add_argument("--cfg", type=float, nargs="+", default=[4.0, 5.0, 6.0], help="prompt guidance values to cycle")
    parser.add_argument("--audio-cfg", type=float, nargs="+", default=[3.0, 5.0, 7.0], help="audio guidance values to cycle")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--frames", type=int, help="frames per video (4k+1); default: follow the audio")
    parser.add_argument("--fps", type=float, help="default: the model's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-side", type=int)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        if args.samples < 1:
            raise InputError(f"--samples must be at least 1, got {args.samples}")
        if args.steps is not None and args.steps < 1:
            raise InputError(f"--steps must be at least 1, got {args.steps}")
        if args.frames is not None:
            check_frame_count(args.frames, "--frames")
        if args.fps is not None:
            finite_number(args.fps, "--fps", above=0.0)
        for value in args.cfg + args.audio_cfg:
            finite_number(value, "--cfg/--audio-cfg", minimum=0.0)
        torch_device(args.device)
        conditions_path, out = Path(args.conditions), Path(args.out)
        conditions = read_jsonl(conditions_path, ("id", "image", "audio"), "conditions file")
        for condition in conditions:
            safe_name(condition["id"], f"{conditions_path.name}: condition id")
        pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(model_folder(args.model_dir or "tiny", None)),
                                                 args.device, keep_on_device=True)  # many videos: load once
        with StopRequests() as stop:
            made = generate(conditions, conditions_path.parent, out, pipe, args, stop)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Stopped as stopped:
        print(stopped, file=sys.stderr)
        return 128 + stopped.signum
    log.info("generated %d new candidates in %s", made, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
