"""Lip-sync drift, identity drift and seams over long videos in the miniature world, per long-video method.

    python -m training.miniature.evaluate_long_video --out training/miniature/results/long_video [--lengths 4 10 30] [--clips 2]

For clips 4x, 10x and 30x the model's trained length (33 frames), each method of ft2_core.sampling.long_video
animates a held-out world portrait and speech through the real pipeline (the model's defaults, windows
of the trained length, 16 frames of overlap). The oracles then score every window-sized segment of 32
frames against the world's true clip: lip-sync per segment over time, identity and colour fidelity to
the portrait over time, and seam visibility: the mean frame-to-frame change across the frames where
windows meet, over that across the other latent-frame boundaries (1 = invisible; for the single window,
which has no joins, the same frames as sliding's, as a control). `--skip-single-above N` leaves out
the single long window beyond N x the trained length, where its attention over the whole video takes
too long on a CPU.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ft2_core.io.atomic import write_text_atomic
from ft2_core.io.audio import Audio
from ft2_core.miniature.model import miniature_model_dir
from ft2_core.miniature.oracles import PROTOCOL_VERSION, score_clip
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, Face, make_clip
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import METHODS, SamplerOptions, WindowOptions
from training.miniature.tables import command_line

SEEDS_FROM = HELD_OUT_SEEDS_FROM + 5000  # held-out conditions, apart from evaluate_base's


def segment_audio(audio: Audio, start: int, end: int, fps: float) -> Audio:
    rate = audio.sample_rate
    return Audio(audio.waveform[:, int(start / fps * rate):int(end / fps * rate)], rate)


def segment_scores(
    frames: np.ndarray, truth: np.ndarray, audio: Audio, face: Face, fps: float, length: int
) -> list[dict]:
    """The oracles on consecutive `length`-frame segments (the last partial one dropped)."""
    scores = []
    for start in range(0, len(frames) - length + 1, length):
        end = start + length
        s = score_clip(frames[start:end], segment_audio(audio, start, end, fps), fps, face, truth[start:end])
        scores.append({**s.by_dimension(), "identity": s.details["identity"], "colour": s.details["colour"]})
    return scores


def join_frames(windows: WindowOptions, num_frames: int) -> list[int]:
    """Frame k such that the change k -> k+1 crosses from one window's frames to the next's."""
    plan = windows.windows(num_frames)
    if windows.method == "continuation":  # the first new frame after the known ones
        return [4 * (start + windows.overlap_latents - 1) for start, _ in plan[1:]]
    joins = set()
    for start, end in plan:  # sliding: the edges of every window (where its weight ramps begin and end)
        if start > 0:
            joins.add(4 * start - 4)
        if end < plan[-1][1]:
            joins.add(4 * (end - 1))
    return sorted(joins)


def seam_ratio(frames: np.ndarray, joins: list[int]) -> float:
    """Mean frame change across the joins over that across the other latent-frame boundaries (k -> k+1 with
    k = 0 mod 4): a model's video changes more where one latent frame ends and the next begins, seam or not."""
    change = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    others = [k for k in range(0, len(change), 4) if k not in set(joins)]
    return float(change[joins].mean() / change[others].mean())


def run(args) -> dict:
    pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(Path(args.model) if args.model else miniature_model_dir()))
    d = pipe.defaults
    window = d["window_frames"]
    options = dict(steps=d["steps"], cfg=d["cfg"], audio_cfg=d["audio_cfg"], shift=d["shift"])
    results = []
    for multiple in args.lengths:
        num_frames = (window - 1) * multiple + 1
        for index in range(args.clips):
            clip = make_clip(SEEDS_FROM + index, num_frames)
            truth_scores = segment_scores(clip.frames, clip.frames, clip.audio, clip.face, clip.fps, window - 1)
            for method in METHODS:
                if method == "single" and multiple > args.skip_single_above:
                    continue
                windows = WindowOptions(method, window, args.overlap)
                started = time.perf_counter()
                video = pipe.animate(
                    torch.from_numpy(clip.portrait),
                    clip.audio,
                    options=SamplerOptions(**options, seed=index),
                    num_frames=num_frames,
                    fps=clip.fps,
                    max_side=clip.portrait.shape[0],
                    windows=windows,
                )
                seconds = time.perf_counter() - started
                frames = video.frames.numpy()
                joins = join_frames(windows if method != "single" else WindowOptions("sliding", window, args.overlap), num_frames)
                results.append(
                    {
                        "multiple": multiple,
                        "frames": num_frames,
                        "clip": index,
                        "method": method,
                        "segments": segment_scores(frames, clip.frames, clip.audio, clip.face, clip.fps, window - 1),
                        "truth_segments": truth_scores,
                        "seam_ratio": seam_ratio(frames, joins),
                        "truth_seam_ratio": seam_ratio(clip.frames, joins),
                        "seconds": seconds,
                        "seconds_per_video_second": seconds / (num_frames / clip.fps),
                    }
                )
                print(
                    f"{multiple}x clip {index} {method}: {seconds:.0f} s, lip-sync by segment "
                    + " ".join(f"{s['lipsync']:.2f}" for s in results[-1]["segments"]),
                    flush=True,
                )
    return {"model_defaults": d, "overlap_frames": args.overlap, "results": results}


def summarise(data: dict) -> list[dict]:
    rows = []
    keys = sorted({(r["multiple"], r["method"]) for r in data["results"]}, key=lambda k: (k[0], METHODS.index(k[1])))
    for multiple, method in keys:
        runs = [r for r in data["results"] if r["multiple"] == multiple and r["method"] == method]
        per_segment = np.array([[s["lipsync"] for s in r["segments"]] for r in runs])  # [clips, segments]
        identity = np.array([[s["identity"] for s in r["segments"]] for r in runs])
        colour = np.array([[s["colour"] for s in r["segments"]] for r in runs])
        truth = np.array([[s["lipsync"] for s in r["truth_segments"]] for r in runs])
        quarter = max(1, per_segment.shape[1] // 4)
        rows.append(
            {
                "multiple": multiple,
                "method": method,
                "clips": len(runs),
                "segments": per_segment.shape[1],
                "lipsync_mean": float(per_segment.mean()),
                "lipsync_first": float(per_segment[:, 0].mean()),
                "lipsync_last": float(per_segment[:, -1].mean()),
                "truth_lipsync_mean": float(truth.mean()),
                "lipsync_first_std": float(per_segment[:, 0].std()),
                "lipsync_last_std": float(per_segment[:, -1].std()),
                "lipsync_first_quarter": float(per_segment[:, :quarter].mean()),
                "lipsync_last_quarter": float(per_segment[:, -quarter:].mean()),
                "lipsync_last_over_first": last_over_first(per_segment[:, 0].mean(), per_segment[:, -1].mean()),
                "lipsync_by_segment": per_segment.mean(axis=0).round(3).tolist(),
                "identity_first": float(identity[:, 0].mean()),
                "identity_last": float(identity[:, -1].mean()),
                "colour_first": float(colour[:, 0].mean()),
                "colour_last": float(colour[:, -1].mean()),
                "quality_mean": float(np.mean([[s["quality"] for s in r["segments"]] for r in runs])),
                "seam_ratio": float(np.mean([r["seam_ratio"] for r in runs])),
                "truth_seam_ratio": float(np.mean([r["truth_seam_ratio"] for r in runs])),
                "seconds_per_video_second": float(np.mean([r["seconds_per_video_second"] for r in runs])),
            }
        )
    return rows


RATIO_FLOOR = 0.01  # a first segment's lip-sync below this gives no ratio: it would only say how near zero it is


def last_over_first(first: float, last: float) -> float | None:
    """The last segment's lip-sync over the first's (drift), or None where the first is about zero."""
    return float(last / first) if first >= RATIO_FLOOR else None


def ratio_cell(ratio: float | None) -> str:
    return "n/a (first about 0)" if ratio is None else f"{ratio:.2f}"


def markdown(rows: list[dict], data: dict, command: str) -> str:
    d = data["model_defaults"]
    lines = [
        f"Long videos in the miniature world, oracle protocol {PROTOCOL_VERSION}: held-out portraits and speech of the test "
        f"split (world seeds {SEEDS_FROM} and up), {rows[0]['clips']} clip(s) per length, windows of "
        f"{d['window_frames']} frames (the trained length) with {data['overlap_frames']} frames of overlap, the model's sampling "
        f"defaults. Oracle scores per {d['window_frames'] - 1}-frame segment; seam = frame change where windows meet / at other "
        "latent-frame boundaries "
        "(1 = invisible; single: at sliding's joins, as a control; the true clip at the same frames in brackets).",
        "",
        f"Command: `{command}`",
        "",
        "| length | method | lip-sync mean (truth) | first segment | last segment | last / first | first → last quarter "
        "| identity first → last | colour first → last | quality mean | seam (truth) | s per video s (shared machine) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['multiple']}x ({r['segments']} seg.) | {r['method']} "
            f"| {r['lipsync_mean']:.3f} ({r['truth_lipsync_mean']:.3f}) "
            f"| {r['lipsync_first']:.3f} ± {r['lipsync_first_std']:.3f} | {r['lipsync_last']:.3f} ± {r['lipsync_last_std']:.3f} "
            f"| {ratio_cell(r['lipsync_last_over_first'])} | {r['lipsync_first_quarter']:.3f} → {r['lipsync_last_quarter']:.3f} "
            f"| {r['identity_first']:.3f} → {r['identity_last']:.3f} | {r['colour_first']:.3f} → {r['colour_last']:.3f} "
            f"| {r['quality_mean']:.3f} | {r['seam_ratio']:.2f} ({r['truth_seam_ratio']:.2f}) "
            f"| {r['seconds_per_video_second']:.1f} |"
        )
    lines += ["", "Lip-sync by segment over time (mean over clips):", ""]
    for r in rows:
        lines.append(f"- {r['multiple']}x {r['method']}: " + " ".join(f"{v:.2f}" for v in r["lipsync_by_segment"]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output path without suffix (.md and .json are written)")
    parser.add_argument("--model", help="model folder (default: the shipped miniature model)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[4, 10, 30], help="multiples of the trained length")
    parser.add_argument("--clips", type=int, default=2, help="held-out clips per length")
    parser.add_argument("--overlap", type=int, default=16, help="overlap_frames")
    parser.add_argument("--skip-single-above", type=int, default=10, help="largest multiple run as one long window")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.clips < 1 or min(args.lengths) < 1:
        print("error: --clips and --lengths must be at least 1", file=sys.stderr)
        return 2
    try:
        data = run(args)
    except KeyboardInterrupt:
        print("stopped by SIGINT before the results were written; run the same command again", file=sys.stderr)
        return 130
    command = command_line("training.miniature.evaluate_long_video", argv)
    rows = summarise(data)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in (
        (".md", markdown(rows, data, command)),
        (".json", json.dumps({"protocol": PROTOCOL_VERSION, "summary": rows, **data, "command": command}, indent=1)),
    ):
        write_text_atomic(out.with_suffix(suffix), text)
    print(markdown(rows, data, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
