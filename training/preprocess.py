"""Build the latent cache the trainers read, from videos with audio, using the ft2_core encoders.

    python -m training.preprocess --clips clips.jsonl --out data/cache [--model-dir DIR] [--frames 81]
    accelerate launch --num_processes 8 -m training.preprocess ...    # the conditions split over 8 GPUs

clips.jsonl, one line per video: {"id": "v001", "video": "a.mp4", "condition": "c001", "prompt": "...",
"image": "portrait.png"?}. Videos of one condition share its portrait, speech and prompt (they are
candidates generated from the same inputs); the condition's portrait is `image` or the first frame of
its first video, and its speech is that video's soundtrack. Resumable: cached items are skipped.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from ft2_core.builtin_models import model_folder
from ft2_core.checks import torch_device
from ft2_core.cli import add_memory_options, pipeline_from_args, resolved_dtype
from ft2_core.errors import InputError, WriteError
from ft2_core.io.image import fit_image, load_image
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import read_video
from ft2_core.model_paths import ModelPaths
from ft2_core.models.audio_windows import check_frame_count
from ft2_core.models.conditioning import VAE_SPACE_STRIDE, encode_i2v_condition, video_from_frames
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.tlpo.preference_data import INDEX, CacheWriter, LatentCache, cache_settings, check_cache_settings
from training.common.distributed import WorkShare
from training.common.interrupts import Stopped, StopRequests
from training.common.script import reported

log = logging.getLogger("ft2.preprocess")


def resized(frames: np.ndarray, max_side: int) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> float [T, h, w, 3] with the inference size rule (multiples of 16)."""
    return torch.stack([fit_image(torch.from_numpy(f).float() / 255, max_side) for f in frames])


@torch.no_grad()
def preprocess(clips: list[dict], out: Path, pipe: FantasyTalkingPipeline, num_frames: int | None, fps: float,
               max_side: int, masker=None, base: Path = Path("."), settings: dict | None = None) -> int:
    with StopRequests() as stop:
        return cache_clips(clips, out, pipe, num_frames, fps, max_side, masker, base, stop, settings)


FLUSH_SECONDS = 60.0  # cached clips are written at least this often: a crash loses at most a minute of encoding


def cache_clips(clips, out, pipe, num_frames, fps, max_side, masker, base, stop: StopRequests, settings=None) -> int:
    """Encode every clip not cached yet; after each one, a stop request writes what is done and stops."""
    from tqdm import tqdm

    writer = CacheWriter(out, settings=settings, flush_seconds=FLUSH_SECONDS)
    done = 0
    with tqdm(clips, desc="caching", unit="clip", mininterval=2.0) as bar:  # its line ends before an error too
        for clip in bar:
            if stop.signum is not None:
                writer.close()
                stop.check(f"after caching {done} new clips (kept in {out})")
            video_key, cond_key = f"video/{clip['id']}", f"cond/{clip['condition']}"
            if video_key in writer and cond_key in writer:
                continue
            frames, clip_fps, audio = read_video(base / clip["video"])
            if abs(clip_fps - fps) > 0.01:
                raise InputError(f"{clip['video']}: {clip_fps:g} fps but the run uses {fps:g}; resample the clips first")
            count = num_frames or min(
                pipe.defaults["window_frames"], (len(frames) - 1) // 4 * 4 + 1
            )  # longest 4k+1, at most the trained length
            if len(frames) < count:
                raise InputError(f"{clip['video']}: {len(frames)} frames, fewer than the {count} to train on")
            pixels = resized(frames[:count], max_side)
            if video_key not in writer:
                latents = pipe.vae.encode(video_from_frames(pixels))[0]
                item = {"latents": latents}
                if masker is not None:
                    from ft2_core.scoring.lip_mask import latent_lip_mask

                    mask = latent_lip_mask(
                        masker,
                        (pixels.numpy() * 255).round().astype(np.uint8),
                        clip["video"],
                        getattr(pipe.vae, "spatial_stride", VAE_SPACE_STRIDE),
                    )
                    if mask is not None:
                        item["lip_mask"] = mask
                writer.add(video_key, item)
            if cond_key not in writer:
                if audio is None:
                    raise InputError(f"{clip['video']}: no audio stream; the condition's speech comes from it")
                image = fit_image(load_image(base / clip["image"]), max_side) if clip.get("image") else pixels[0]
                positive, _ = pipe.encode_text(clip.get("prompt", ""), "")
                writer.add(
                    cond_key,
                    {
                        "condition": encode_i2v_condition(pipe.vae.encode, image, count)[0],
                        "text": positive[0],
                        "image": pipe.image_encoder.encode(image)[0],
                        "audio": pipe.audio_features(audio, count, fps)[0].cpu(),
                        "num_frames": torch.tensor(count),
                    },
                )
            done += 1
    writer.close()
    return done


PARTS = ".parts"  # each process of a multi-process run caches its share here; the main process adopts them at the end


def my_clips(clips: list[dict], out: Path, share: WorkShare) -> list[dict]:
    """This process's share of the clips not cached yet, split by condition, so each condition is encoded once."""
    cached = LatentCache(out).index if (out / INDEX).is_file() else {}
    pending = [c for c in clips if f"video/{c['id']}" not in cached or f"cond/{c['condition']}" not in cached]
    conditions = set(share.mine(list(dict.fromkeys(c["condition"] for c in pending))))
    return [c for c in pending if c["condition"] in conditions]


def adopt_parts(out: Path, settings: dict) -> None:
    """Fold the processes' caches into the one at `out`, in rank order (the items are the same whoever made them)."""
    parts = sorted((out / PARTS).glob("rank-*")) if (out / PARTS).is_dir() else []
    if parts:
        writer = CacheWriter(out, settings=settings)
        for part in parts:
            writer.adopt(part)
        (out / PARTS).rmdir()


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--model-dir", help="model folder, or 'miniature' / 'tiny' for a built-in one (default: tiny)")
    parser.add_argument("--frames", type=int, help="frames per clip (4k+1); default: the longest 4k+1 a clip has, up to 81")
    parser.add_argument("--fps", type=float, default=23.0)
    parser.add_argument("--max-side", type=int, help="default: the model's recommendation")
    parser.add_argument("--face-landmarker", help="face_landmarker.task (default: models/mediapipe/)")
    parser.add_argument(
        "--lip-mask",
        choices=("mediapipe", "world", "none"),
        default="mediapipe",
        help="lip masks from MediaPipe face landmarks (real faces), from the miniature world's mouth "
        "region (its cartoon faces), or none (full-frame loss)",
    )
    add_memory_options(parser)  # the CLI's: --dtype bf16 (the default on a GPU), --vae-tile, --keep-on-device, ...
    args = parser.parse_args(argv)
    try:
        if args.frames is not None:
            check_frame_count(args.frames, "--frames")
        sampling_only = [flag for flag, used in (("--sequential-rows", args.sequential_rows),
                                                 ("--ffn-chunk-tokens", args.ffn_chunk_tokens),
                                                 ("--blocks-to-swap", args.blocks_to_swap),
                                                 ("--attention", args.attention != "sdpa")) if used]
        if sampling_only:
            raise InputError(f"{', '.join(sampling_only)} set how the DiT samples; preprocessing runs only the encoders")
        torch_device(args.device)
        clips_path = Path(args.clips)
        clips = read_jsonl(clips_path, ("id", "video", "condition"), "clips manifest", empty_ok=False)
        ids = [clip["id"] for clip in clips]
        if len(set(ids)) != len(ids):
            raise InputError(f"{clips_path.name}: clip id {next(i for i in ids if ids.count(i) > 1)!r} appears twice; "
                             "ids name the cached items, so each must be unique")
        paths = ModelPaths.from_folder(model_folder(args.model_dir or "tiny", None))
        max_side = args.max_side or paths.defaults["max_side"]
        settings = {"model": args.model_dir or "tiny", "frames": args.frames, "fps": args.fps, "max_side": max_side,
                    "lip_mask": args.lip_mask, "dtype": resolved_dtype(args)}
        share = WorkShare(args.device)
        args.device, out = share.device, Path(args.out)
        with share.holding(out, "--out"):
            check_cache_settings(out, cache_settings(out), settings)  # refused before the model loads
            if share.main:
                adopt_parts(out, settings)  # what the processes of a killed multi-process run had cached
            share.wait()
            mine = my_clips(clips, out, share)
            folder = out if share.count == 1 else out / PARTS / f"rank-{share.rank:05d}"
            pipe = pipeline_from_args(paths, args)
            if args.lip_mask == "none":
                count = preprocess(mine, folder, pipe, args.frames, args.fps, max_side, None, clips_path.parent, settings)
            else:
                if args.lip_mask == "world":
                    from ft2_core.miniature.oracles import WorldLipMasker as masker_class
                else:
                    from ft2_core.scoring.lip_mask import LipMasker as masker_class

                with masker_class() if args.lip_mask == "world" else masker_class(args.face_landmarker) as masker:
                    count = preprocess(mine, folder, pipe, args.frames, args.fps, max_side, masker, clips_path.parent,
                                       settings)
            share.wait()
            if share.main:
                adopt_parts(out, settings)
    except (InputError, WriteError, Stopped) as err:
        return reported(err)
    log.info("cached %d new clips in %s", count, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
