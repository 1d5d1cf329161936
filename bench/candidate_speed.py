"""Seconds per candidate video in the TLPO chain's candidates stage (CPU, the shipped miniature model), before and
after its two speed-ups, timed in one run on the same conditions:

- before: one process on every core, the text attention over all 512 tokens (Wan's zero padding included);
- folded: the padding's repeated token attended once with the weight of its copies (`models.talking_model.folded_padding`);
- folded, N processes: also the conditions split over N one-thread processes (`run.processes`, accelerate over gloo).

Each mode runs `training.generate_candidates` end to end (model load, sampling, MP4 writing) on world conditions (33
frames, 20 steps, audio cfg 2 and 4, as `training/miniature/configs/tlpo.toml`), once on one condition per process
(the start-up) and once on all: the cost of a further candidate, what a chain's hundreds of candidates pay, is
reported beside the whole run's average. The folded frames are compared with the unfolded ones before encoding (two
candidates, in-process) and as decoded MP4s.

    python -m bench.candidate_speed [--conditions 8] [--processes 2] [--out bench/results/candidate_speed.md]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

import ft2_core.models.talking_model as talking_model
from ft2_core.builtin_models import model_folder
from ft2_core.io.atomic import write_text_atomic
from ft2_core.io.audio import load_audio
from ft2_core.io.image import load_image
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import read_video
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import SamplerOptions
from training import generate_candidates
from training.generate_candidates import candidate_settings
from training.miniature.reproduce_tlpo.stages import call, launch, stage_conditions

FOLDED = talking_model.folded_padding


def unfolded(text: torch.Tensor):
    """The text attention as before: every padding token its own key."""
    return text, None


def frames_apart(root: Path) -> tuple[float, float]:
    """The first condition's two candidates sampled in this process unfolded and folded, before any encoding: the
    largest difference of their frames (floats in 0..1) and the share of 8-bit pixel values it flips."""
    condition = read_jsonl(root / "conditions" / "critic.jsonl", ("image", "audio"))[0]
    folder = root / "conditions"
    pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(model_folder("miniature", None)))
    largest, flipped = 0.0, []
    for k in range(2):
        own = candidate_settings(SimpleNamespace(seed=0, cfg=[1.0], audio_cfg=[2.0, 4.0]), k)
        options = SamplerOptions(steps=20, cfg=own["cfg"], audio_cfg=own["audio_cfg"], shift=pipe.defaults["shift"],
                                 seed=own["seed"])
        made = []
        for fold in (unfolded, FOLDED):
            talking_model.folded_padding = fold
            made.append(pipe.animate(load_image(folder / condition["image"]), load_audio(folder / condition["audio"]),
                                     options=options, num_frames=33, fps=23).frames.float())
        largest = max(largest, float((made[0] - made[1]).abs().max()))
        flipped.append(float(((made[0] * 255).round() != (made[1] * 255).round()).float().mean()))
    return largest, float(np.mean(flipped))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    if args.processes < 1 or args.conditions <= args.processes:
        parser.error(f"--conditions ({args.conditions}) must exceed --processes ({args.processes}, at least 1): the cost of "
                     "a further candidate is the whole run's time less the start-up run of one condition per process")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        world = {"critic_conditions": args.conditions, "train_conditions": 1, "heldout_conditions": 1, "frames": 33}
        stage_conditions({"world": world}, root)

        listed = root / "conditions" / "critic.jsonl"
        first = root / "conditions" / "first.jsonl"  # one condition per process: what starting a run costs
        first.write_text("".join(listed.read_text().splitlines(keepends=True)[: args.processes]))

        def run(mode: str, conditions: Path, out: str) -> float:
            argv = ["--conditions", str(conditions), "--out", str(root / out), "--samples", "2", "--model-dir", "miniature",
                    "--steps", "20", "--frames", "33", "--fps", "23", "--cfg", "1", "--audio-cfg", "2", "4"]
            talking_model.folded_padding = unfolded if mode == "before" else FOLDED
            start = time.perf_counter()
            if "processes" in mode:
                launch(generate_candidates, argv, args.processes)
            else:
                call(generate_candidates, argv)
            return time.perf_counter() - start

        modes = {"before": "unfolded", "folded": "folded", f"folded, {args.processes} processes": "processes"}
        seconds, marginal = {}, {}
        for mode, out in modes.items():
            started = run(mode, first, out + "_first")
            whole = run(mode, listed, out)
            seconds[mode] = whole / (2 * args.conditions)
            marginal[mode] = (whole - started) / (2 * (args.conditions - args.processes))
        largest, flipped = frames_apart(root)
        talking_model.folded_padding = FOLDED
        records = read_jsonl(root / "unfolded" / "candidates.jsonl", ("id", "video"))
        differences = {}  # decoded frames against the unfolded run's: (largest, share of pixel values that differ)
        for mode, out in (("folded", "folded"), ("folded, processes", "processes")):
            apart = [read_video(root / "unfolded" / r["video"])[0].astype(np.int16)
                     - read_video(root / out / r["video"])[0].astype(np.int16) for r in records]
            differences[mode] = (max(int(np.abs(a).max()) for a in apart),
                                 float(np.mean([float((a != 0).mean()) for a in apart])))
    before = seconds["before"]
    lines = [f"torch {torch.__version__}, {torch.get_num_threads()} threads in the first two modes, {os.cpu_count()} CPUs; "
             f"{2 * args.conditions} candidates per mode (33 frames, 64x64, 20 steps, audio cfg 2 and 4)", "",
             "| mode | seconds per candidate | speed-up | seconds per further candidate (start-up left out) | speed-up |",
             "|---|---|---|---|---|"]
    lines += [f"| {mode} | {value:.2f} | {before / value:.2f}x | {marginal[mode]:.2f} | "
              f"{marginal['before'] / marginal[mode]:.2f}x |" for mode, value in seconds.items()]
    lines += ["", f"Frames before encoding, folded against unfolded (one condition's two candidates, in this process): "
              f"largest difference {largest:.1e} (floats in 0..1), {flipped:.4%} of 8-bit pixel values flipped.",
              "Decoded MP4s against the unfolded run's (0-255): "
              + "; ".join(f"{mode}: largest difference {top}, {share:.2%} of pixel values differ"
                          for mode, (top, share) in differences.items())
              + " (the H.264 encoder decides otherwise once a few input values change; the same frames encode alike).", "",
              "Command: `python -m bench.candidate_speed" + (f" --conditions {args.conditions}" if args.conditions != 8 else "")
              + (f" --processes {args.processes}" if args.processes != 2 else "") + "`"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text_atomic(Path(args.out), text)
    print(" ".join(f"before/({mode})={before / seconds[mode]:.2f} further:{marginal['before'] / marginal[mode]:.2f}"
                   for mode in list(seconds)[1:]))


if __name__ == "__main__":
    main()
