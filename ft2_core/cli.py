"""Command line: `python -m ft2_core animate ...`, `python -m ft2_core convert-adapter IN OUT`,
`python -m ft2_core judge VIDEO --world-seed N` (the miniature world's judges on a video of one of its conditions)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from .checks import prompt_text
from .errors import InputError, WriteError
from .models.attention import BACKENDS
from .sampling.flow import SCHEDULERS
from .sampling.options import DEFAULT_NEGATIVE_PROMPT, DEFAULT_PROMPT, METHODS, WindowOptions, within

log = logging.getLogger("ft2_core")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ft2_core", description="FantasyTalking2 tools")
    commands = parser.add_subparsers(dest="command", required=True)

    animate = commands.add_parser("animate", help="portrait + speech -> talking-head MP4")
    animate.add_argument("--image", help="portrait image (default: a generated demo portrait)")
    animate.add_argument("--audio", help="speech: WAV, FLAC, MP3 or OGG (default: a generated demo clip)")
    animate.add_argument("--prompt", default=DEFAULT_PROMPT)
    animate.add_argument("--negative-prompt", default=None, help="default: Wan's standard negative prompt")
    animate.add_argument("--out", required=True, help="output .mp4")
    models = animate.add_argument_group("models (default: the built-in miniature model of cartoon talking faces)")
    models.add_argument("--model-dir", help="diffusers Wan2.1-I2V folder + FantasyTalking adapter + wav2vec2 folder, "
                        "or 'miniature' / 'tiny' for a built-in model (tiny: random weights, a plumbing test)")
    models.add_argument("--dit", help="override: Wan2.1 DiT single file (.safetensors) or diffusers transformer folder")
    models.add_argument("--dit-config", help="config for a single-file DiT: a shipped name or JSON (default: by shape)")
    models.add_argument("--adapter", help="override: fantasytalking_model.ckpt or its .safetensors conversion")
    models.add_argument("--wav2vec", help="override: wav2vec2 folder (e.g. wav2vec2-base-960h)")
    models.add_argument("--cache-dir", help="where the tiny model is built (default: $FT2_CACHE or ~/.cache/ft2)")
    sampling = animate.add_argument_group("sampling (default: the model's recommended values)")
    sampling.add_argument("--steps", type=int)
    sampling.add_argument("--cfg", type=float, help="prompt guidance")
    sampling.add_argument("--audio-cfg", type=float, help="audio guidance (3-7 works well)")
    sampling.add_argument("--audio-cfg-start", type=float, help="fraction of steps where audio guidance starts (default 0)")
    sampling.add_argument("--audio-cfg-end", type=float, help="fraction of steps where it ends (default 1)")
    sampling.add_argument("--audio-scale", type=float, help="strength of the audio cross-attention (default 1)")
    sampling.add_argument("--shift", type=float)
    sampling.add_argument("--scheduler", choices=SCHEDULERS, help="default: euler (upstream)")
    sampling.add_argument("--seed", type=int, help="default 0")
    sampling.add_argument("--frames", type=int, help="frame count (4k+1); default: enough for the whole audio")
    sampling.add_argument("--max-seconds", type=float, help="animate only the first seconds of the audio")
    sampling.add_argument("--fps", type=float)
    sampling.add_argument("--max-side", type=int, help="longest image edge in pixels (multiple of 16)")
    add_memory_options(animate)
    long = animate.add_argument_group("long audio (videos longer than the model's trained length run in windows of it)")
    long.add_argument("--long-method", choices=METHODS,
                      help="sliding: overlapping windows fused at every step; continuation: each window starts from the "
                           "last frames of the one before; single: one window for everything (default: the model's)")
    long.add_argument("--window-frames", type=int, help="frames per window (4k+1; default: the model's trained length)")
    long.add_argument("--overlap-frames", type=int,
                      help=f"frames shared by neighbouring windows (multiple of 4; default {WindowOptions().overlap_frames})")

    tlpo = animate.add_argument_group("TLPO experts (optional)")
    tlpo.add_argument("--expert", action="append", default=[], metavar="NAME=FILE[:STRENGTH]",
                      help="a LoRA expert, e.g. motion=mn.safetensors:1.0 (repeat for lipsync, quality)")
    tlpo.add_argument("--gate", help="trained gate file (.safetensors); default: every expert at weight 1")
    tlpo.add_argument("--schedule", help="instead of a gate: 't: w1, w2, w3' points separated by ';' (t in 0..1000)")
    tlpo.add_argument("--lora", action="append", default=[], metavar="FILE[:STRENGTH]",
                      help="any other Wan LoRA (step distillation, style) at a fixed strength beside the experts (repeatable)")

    experts = commands.add_parser("experts", help="LoRA expert files")
    experts_commands = experts.add_subparsers(dest="experts_command", required=True)
    inspect = experts_commands.add_parser("inspect", help="print format, rank, alpha, modules, layers, dimension")
    inspect.add_argument("file")

    convert = commands.add_parser("convert-adapter", help="fantasytalking_model.ckpt -> .safetensors")
    convert.add_argument("source")
    convert.add_argument("target")

    judge = commands.add_parser("judge", help="the miniature world's judges on a video of one of its conditions (JSON)")
    judge.add_argument("video", help="MP4 of a world condition, with its soundtrack (64x64, 23 fps)")
    judge.add_argument("--world-seed", type=int, required=True, help="the condition's world seed (world.make_clip)")
    judge.add_argument("--frames", type=int, help="judge the first F frames, against the condition drawn at F frames "
                       "(default: the video's length)")
    return parser


def add_memory_options(parser: argparse.ArgumentParser) -> None:
    """Device, precision and memory options: the CLI's, shared with training.generate_candidates."""
    memory = parser.add_argument_group("device and memory (the same video with less memory)")
    memory.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    memory.add_argument("--dtype", choices=tuple(DTYPES), default=None, help="default: bf16 on GPU, fp32 on CPU")
    memory.add_argument("--upcast-weights", action="store_true",
                        help="upcast an fp8 DiT file's weights to the compute dtype on load (default: they stay fp8)")
    memory.add_argument("--keep-on-device", action="store_true",
                        help="load every model onto the device once (default: each visits it for its own stage)")
    memory.add_argument("--sequential-rows", action="store_true",
                        help="run the guidance predictions one after another instead of as one batch")
    memory.add_argument("--ffn-chunk-tokens", type=int,
                        help="run each block's feed-forward on this many tokens at a time (0: all at once)")
    memory.add_argument("--blocks-to-swap", type=int, default=0,
                        help="keep this many DiT blocks on the CPU, each visiting the GPU just before it runs (0: none)")
    memory.add_argument("--attention", choices=tuple(BACKENDS), default="sdpa",
                        help="attention kernel: PyTorch SDPA, or flash-attention / SageAttention when installed")
    memory.add_argument("--vae-tile", type=int, default=0,
                        help="encode/decode in overlapping tiles of this many pixels, e.g. 256 (0: whole frames)")


def resolved_dtype(args) -> str:
    """--dtype, or its default: bf16 on a GPU, fp32 on a CPU (a name of DTYPES, as scripts record it)."""
    from .checks import torch_device

    return args.dtype or ("bf16" if torch_device(args.device).type == "cuda" else "fp32")


def pipeline_from_args(paths, args):
    """The pipeline the memory options ask for (see add_memory_options)."""
    from .pipeline import FantasyTalkingPipeline

    dtype = DTYPES[resolved_dtype(args)]
    return FantasyTalkingPipeline.from_paths(paths, args.device, dtype, keep_on_device=args.keep_on_device,
                                             keep_stored_weights=not args.upcast_weights, vae_tile=args.vae_tile or None,
                                             blocks_to_swap=args.blocks_to_swap, attention=args.attention)


def run_animate(args) -> Path:
    from tqdm import tqdm

    from .builtin_models import model_folder
    from .checks import output_file, torch_device
    from .demo_inputs import demo_portrait, demo_speech
    from .io.atomic import remove_temporaries
    from .io.audio import load_audio
    from .io.image import load_image
    from .io.video_io import write_mp4
    from .model_paths import ModelPaths
    from .progress import RunProgress
    from .tlpo.experts import Expert
    from .tlpo.lora_formats import load_lora

    out = output_file(args.out, (".mp4",), "--out")
    for stale in remove_temporaries(out.parent):
        log.info("removed %s, left by an interrupted run", stale)
    torch_device(args.device)  # a missing CUDA is named before any input is read
    image = load_image(args.image) if args.image else demo_portrait()  # inputs first: fail before loading models
    audio = load_audio(args.audio) if args.audio else demo_speech()
    paths = ModelPaths.from_folder(model_folder(args.model_dir, args.cache_dir), transformer=args.dit,
                                   audio_adapter=args.adapter, wav2vec=args.wav2vec)
    paths.transformer_config = args.dit_config
    check_limits(args, audio, paths.defaults)
    pipe = pipeline_from_args(paths, args)
    options = pipe.sampler_options(
        steps=args.steps, cfg=args.cfg, audio_cfg=args.audio_cfg, shift=args.shift, audio_cfg_start=args.audio_cfg_start,
        audio_cfg_end=args.audio_cfg_end, scheduler=args.scheduler, seed=args.seed, audio_scale=args.audio_scale,
        sequential_rows=args.sequential_rows, ffn_chunk_tokens=args.ffn_chunk_tokens,
    )
    windows = pipe.window_options(args.long_method, args.window_frames, args.overlap_frames)
    experts, gate = experts_from_args(args, pipe.model.num_layers)
    loras = [
        Expert(f"lora{index}", load_lora(path, f"--lora {path}"), strength, f"--lora {path}")
        for index, (path, strength) in enumerate(map(file_and_strength, args.lora))
    ]

    def report(done, total, preview):
        bar.total = total
        bar.update(done - bar.n)

    with tqdm(desc="animating", unit="unit") as bar:  # closed (its line ended) before an error is printed too
        result = pipe.animate(
            image,
            audio,
            args.prompt,
            args.negative_prompt or DEFAULT_NEGATIVE_PROMPT,
            options,
            num_frames=args.frames,
            fps=args.fps,
            max_side=args.max_side,
            progress=RunProgress(report),
            experts=experts,
            gate=gate,
            windows=windows,
            max_seconds=args.max_seconds,
            loras=loras,
        )
    return write_mp4(args.out, result.frames, result.fps, result.audio)


def file_and_strength(spec: str) -> tuple[str, float]:
    """FILE[:STRENGTH] (a colon inside the path is kept when what follows it is not a number)."""
    head, colon, tail = spec.rpartition(":")
    if colon:
        try:
            strength = float(tail)
        except ValueError:  # not a number: part of the path
            return spec, 1.0
        return head, within(strength, "strength", f"the strength in {spec!r}")
    return spec, 1.0


def check_limits(args, audio, defaults: dict) -> None:
    """Every number given on the command line against the limits the nodes' widgets have, before any model loads."""
    from .pipeline import plan_frames

    for name in ("steps", "cfg", "audio_cfg", "shift", "audio_scale", "fps", "max_side", "max_seconds", "window_frames",
                 "overlap_frames"):
        if getattr(args, name) is not None:
            within(getattr(args, name), name, "--" + name.replace("_", "-"))
    prompt_text(args.prompt, "--prompt")
    if args.negative_prompt is not None:
        prompt_text(args.negative_prompt, "--negative-prompt")
    for spec in [*args.lora, *(spec.partition("=")[2] for spec in args.expert)]:
        file_and_strength(spec)
    if args.frames is not None:
        within(args.frames, "num_frames", "--frames")
        fps = args.fps or defaults["fps"]
        plan_frames(audio, fps, args.frames, args.max_seconds, args.window_frames or defaults["window_frames"])


def experts_from_args(args, num_layers: int):
    """--expert NAME=FILE[:STRENGTH] ..., --gate FILE or --schedule TEXT -> experts and their mix."""
    from .tlpo.experts import Expert
    from .tlpo.gate import ScheduledMix, load_gate, parse_schedule
    from .tlpo.lora_formats import load_lora

    experts = []
    for spec in args.expert:
        name, sep, rest = spec.partition("=")
        if not sep or not name:
            raise InputError(f"--expert must look like NAME=FILE[:STRENGTH], got {spec!r}")
        path, strength = file_and_strength(rest)
        experts.append(Expert(name, load_lora(path, f"--expert {spec}"), strength, f"--expert {spec}"))
    if args.gate and args.schedule:
        raise InputError("give --gate or --schedule, not both")
    if (args.gate or args.schedule) and not experts:
        raise InputError("--gate and --schedule mix experts: add --expert NAME=FILE")
    if args.gate:
        return experts, load_gate(args.gate, num_layers)
    if args.schedule:
        return experts, ScheduledMix(*parse_schedule(args.schedule.replace(";", "\n"), len(experts)))
    return experts, None


def quiet_library_progress_bars() -> None:
    """transformers/diffusers draw a bar per weight file; ours is the one that matters."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_library_progress_bars()
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        if args.command == "animate":
            out = run_animate(args)
        elif args.command == "judge":
            from .miniature.judge import judge_video

            print(json.dumps(judge_video(args.video, args.world_seed, args.frames)))
            return 0
        elif args.command == "experts":
            from .tlpo.lora_formats import describe, load_lora

            print(describe(load_lora(args.file)))
            return 0
        else:
            from .models.audio_adapter import convert_adapter

            out = convert_adapter(args.source, args.target)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except WriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    log.info("wrote %s in %.1f s", out, time.perf_counter() - started)
    return 0
