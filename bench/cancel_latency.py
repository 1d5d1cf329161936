"""How long a cancel can wait in each stage of a run: the longest time between two cancel checks, per stage, for the
example graphs' settings on the built-in models (CPU, this machine). A cancel is honoured at the next check, so this
is the worst-case delay from the cancel button to the run stopping, less ComfyUI's own overhead.

    python -m bench.cancel_latency [--threads N] [--case NAME]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

EXAMPLE_INPUTS = Path(__file__).resolve().parents[1] / "example_workflows" / "inputs"
CASES = {  # (built-in model, example speech, max_side, steps; None: the model's default)
    "quick start (miniature, 3.5 s)": ("miniature", "short", None, None),
    "long audio (miniature, 20 s)": ("miniature", "long", None, None),
    "tiny model, 3.5 s": ("tiny", "short", None, None),
    "tiny model at 512 px, 3.5 s, 4 steps": ("tiny", "short", 512, 4),  # big frames: long VAE and DiT layers
}


def stage_of(done: int, chunks: int, steps: int) -> str:
    """The stage a progress count is in: 3 encoders, the wav2vec2 chunks, the steps, then decoding."""
    for name, units in (("text encoder", 1), ("image encoder", 1), ("VAE encode", 1), ("wav2vec2", chunks), ("sampling", steps)):
        if done < units:
            return name
        done -= units
    return "VAE decode"


def longest_waits(pipe, portrait, speech, max_side, steps) -> dict[str, float]:
    from ft2_core.io.audio import clip_for_video
    from ft2_core.progress import RunProgress

    windows = pipe.window_options()
    options = pipe.sampler_options(steps=steps)
    checks: list[tuple[float, int]] = []
    progress = RunProgress(check_interrupt=lambda: checks.append((time.perf_counter(), progress.done)))
    started = time.perf_counter()
    animation = pipe.animate(portrait, speech, options=options, max_side=max_side, windows=windows, progress=progress)
    num_frames = animation.frames.shape[0]
    chunks = len(pipe.wav2vec.chunks(len(clip_for_video(speech, num_frames, animation.fps))))
    steps = options.steps * len(windows.windows(num_frames))
    waits: dict[str, float] = {}
    previous = started
    for moment, done in checks:
        stage = stage_of(done, chunks, steps)
        waits[stage] = max(waits.get(stage, 0.0), moment - previous)
        previous = moment
    waits["after the last check"] = time.perf_counter() - previous
    waits["whole run"] = time.perf_counter() - started
    return waits


def main(argv=None) -> int:
    from ft2_core.builtin_models import model_folder
    from ft2_core.io.audio import load_audio
    from ft2_core.io.image import load_image
    from ft2_core.model_paths import ModelPaths
    from ft2_core.pipeline import FantasyTalkingPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--case", default="", help="run only the cases whose name contains this")
    args = parser.parse_args(argv)
    if not any(args.case in case for case in CASES):
        parser.error(f"--case {args.case!r} names none of the cases: " + "; ".join(CASES))
    torch.set_num_threads(args.threads)
    portrait = load_image(EXAMPLE_INPUTS / "ft2_portrait.png")
    speech = {"short": load_audio(EXAMPLE_INPUTS / "ft2_speech.wav"), "long": load_audio(EXAMPLE_INPUTS / "ft2_speech_long.wav")}
    print(f"longest wait for a cancel check, seconds ({args.threads} CPU threads)")
    for case, (model, audio, max_side, steps) in CASES.items():
        if args.case not in case:
            continue
        pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(model_folder(model)))
        waits = longest_waits(pipe, portrait, speech[audio], max_side, steps)
        print(f"{case}: " + ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in waits.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
