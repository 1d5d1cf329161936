"""Sample candidate videos for Talking-NSQ: N per (portrait, speech, prompt), each with its own seed and
guidance, through the ft2_core pipeline. Resumable: finished videos are kept and skipped.

    python -m training.generate_candidates --conditions conditions.jsonl --out data/candidates --samples 4 \
        [--model-dir DIR] [the CLI's device and memory options: --dtype bf16 --blocks-to-swap 20 --sequential-rows ...]
    accelerate launch --num_processes 8 -m training.generate_candidates ...    # the conditions split over 8 GPUs

conditions.jsonl lines: {"id": "c001", "image": "face.png", "audio": "speech.wav", "prompt": "..."}.
Writes OUT/videos/<id>_<k>.mp4 and OUT/candidates.jsonl ({"id", "video", "condition", "image", "prompt", "seed", "cfg",
"audio_cfg", "settings"}: what `training.preprocess --clips` reads, the condition's own portrait and prompt); a rerun
keeps what it would make the same way and refuses a folder made with other settings.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ft2_core.builtin_models import model_folder
from ft2_core.checks import changed_settings, finite_number, safe_name, torch_device
from ft2_core.cli import add_memory_options, pipeline_from_args, resolved_dtype
from ft2_core.errors import InputError, WriteError
from ft2_core.io.atomic import remove_temporaries
from ft2_core.io.audio import load_audio
from ft2_core.io.image import load_image
from ft2_core.io.jsonl import append_jsonl, read_jsonl
from ft2_core.io.video_io import write_mp4
from ft2_core.model_paths import ModelPaths
from ft2_core.models.audio_windows import check_frame_count
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import DEFAULT_PROMPT, SamplerOptions
from training.common.distributed import WorkShare
from training.common.interrupts import Stopped, StopRequests
from training.common.script import reported

log = logging.getLogger("ft2.candidates")


def candidate_settings(args, k: int) -> dict:
    """What makes candidate k of a condition besides the run's settings: its own seed and guidance."""
    return {"seed": args.seed + 1000 * k, "cfg": args.cfg[k % len(args.cfg)],
            "audio_cfg": args.audio_cfg[k % len(args.audio_cfg)]}


def check_made_alike(done: list[dict], settings: dict, args, out: Path) -> None:
    """Finished candidates are kept on a rerun only if this run would make them the same way."""
    for record in done:
        k = int(record["id"].rpartition("_")[2])
        expected = {**settings, **candidate_settings(args, k)}
        made = {**record.get("settings", {}), **{key: record.get(key) for key in ("seed", "cfg", "audio_cfg")}}
        changes = changed_settings(made, expected, keys=expected)
        if changes:
            raise InputError(f"{out} holds {record['id']}, made with {changes}: use another --out for these settings, or "
                             "delete the folder to start over")


def generate(conditions: list[dict], base: Path, out: Path, manifest: Path, pipe: FantasyTalkingPipeline, args,
             settings: dict, stop: StopRequests) -> int:
    """Every missing candidate of the conditions; one line in `manifest` per finished video (a crash loses none)."""
    done = set(made_ids(out / MANIFEST)) | set(made_ids(manifest))
    remove_temporaries(out / "videos")  # half-written videos of a killed run (those of live processes are kept)
    made = 0
    for condition in conditions:
        image = load_image(base / condition["image"])
        audio = load_audio(base / condition["audio"])
        prompt = condition.get("prompt", DEFAULT_PROMPT)
        for k in range(args.samples):
            candidate = f"{condition['id']}_{k}"
            if candidate in done:
                continue
            own = candidate_settings(args, k)
            options = SamplerOptions(steps=settings["steps"], cfg=own["cfg"], audio_cfg=own["audio_cfg"],
                                     shift=pipe.defaults["shift"], seed=own["seed"], sequential_rows=args.sequential_rows,
                                     ffn_chunk_tokens=args.ffn_chunk_tokens or 0)
            result = pipe.animate(image, audio, prompt, options=options,
                                  num_frames=args.frames, fps=args.fps, max_side=args.max_side)
            video = write_mp4(out / "videos" / f"{candidate}.mp4", result.frames, result.fps, result.audio)
            append_jsonl(manifest, {"id": candidate, "video": str(video.relative_to(out)), "condition": condition["id"],
                                    "image": os.path.relpath(base / condition["image"], out), "prompt": prompt,
                                    **own, "settings": settings})
            made += 1
            stop.check(f"after {len(done) + made} videos (kept in {out})")
    return made


MANIFEST = "candidates.jsonl"
PROCESS_MANIFEST = ".candidates.rank-*.jsonl"  # each process of a multi-process run lists its videos in its own file


def made_ids(manifest: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(manifest, ("id",), "candidates manifest", missing_ok=True)]


def adopt_process_manifests(out: Path) -> None:
    """Append the processes' lines to candidates.jsonl (rank order, each id once), then remove their files."""
    known = set(made_ids(out / MANIFEST))
    for part in sorted(out.glob(PROCESS_MANIFEST)):
        for record in read_jsonl(part, ("id",), "candidates manifest"):
            if record["id"] not in known:
                append_jsonl(out / MANIFEST, record)
                known.add(record["id"])
        part.unlink()


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
    add_memory_options(parser)  # the CLI's: dtype, fp8 kept, block swap, rows one at a time, attention kernel, ...
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
        conditions = read_jsonl(conditions_path, ("id", "image", "audio"), "conditions file", empty_ok=False)
        seen = set()
        for condition in conditions:
            safe_name(condition["id"], f"{conditions_path.name}: condition id")
            if condition["id"] in seen:
                raise InputError(f"{conditions_path.name}: condition id {condition['id']!r} appears twice; ids name the "
                                 "videos, so each must be unique")
            seen.add(condition["id"])
        if (out / "videos").is_symlink():
            raise InputError(f"{out / 'videos'} is a symbolic link: candidates are written only inside --out {out}")
        paths = ModelPaths.from_folder(model_folder(args.model_dir or "tiny", None))
        settings = {"model": args.model_dir or "tiny", "steps": args.steps or paths.defaults["steps"], "frames": args.frames,
                    "fps": args.fps, "max_side": args.max_side, "dtype": resolved_dtype(args)}
        share = WorkShare(args.device)
        args.device = share.device
        with share.holding(out, "--out"):
            if share.main:
                adopt_process_manifests(out)  # what the processes of a killed multi-process run made
            share.wait()
            if (out / MANIFEST).is_file():
                check_made_alike(read_jsonl(out / MANIFEST, ("id",), "candidates manifest"), settings, args, out)
            manifest = out / (MANIFEST if share.count == 1 else PROCESS_MANIFEST.replace("*", f"{share.rank:05d}"))
            pipe = pipeline_from_args(paths, args)
            with StopRequests() as stop:
                made = generate(share.mine(conditions), conditions_path.parent, out, manifest, pipe, args, settings, stop)
            share.wait()
            if share.main:
                adopt_process_manifests(out)
    except (InputError, WriteError, Stopped) as err:
        return reported(err)
    log.info("generated %d new candidates in %s", made, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
