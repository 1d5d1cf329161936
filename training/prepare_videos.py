"""From a folder of talking videos to the conditions and clips the rest of the chain reads.

    python -m training.prepare_videos --videos DIR_OR_LIST --out data/prepared [--frames 81] [--fps 23] [--size 512]

Each video (any fps, length and size) is resampled to the model's fps and cut into windows of `--frames` frames
(`--stride` apart, at most `--max-clips-per-video`). A window becomes one clip and its own condition:
- OUT/clips/<id>.mp4: the window at the model's fps with its speech (16 kHz mono), face-centred and square
  (`--face crop`, MediaPipe's face landmarks over the window, the box recorded), or the whole frame;
- OUT/conditions/<id>.png and <id>.wav: its first frame (the portrait) and its speech;
- OUT/conditions.jsonl: {"id", "image", "audio", "prompt", "source", "start_seconds", "crop_box"}, what
  `training.generate_candidates --conditions` reads;
- OUT/clips.jsonl: {"id", "video", "condition", "image", "prompt"}, what `training.preprocess --clips` reads.
Videos or windows without a face (`--face crop|check`) or without speech are recorded in OUT/skipped.jsonl and
skipped. A clip's manifest lines are written after its files, so a crash loses at most the clip being written and a
rerun goes on from there. `--videos` is a folder (searched recursively), or a .txt list (one path per line) or a
.jsonl list ({"video", "prompt"?}) whose paths are relative to the list.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ft2_core.checks import changed_settings, finite_number, prompt_text
from ft2_core.errors import InputError, WriteError
from ft2_core.io.atomic import remove_temporaries, write_file_atomic, write_text_atomic
from ft2_core.io.audio import WAV2VEC_RATE, Audio
from ft2_core.io.jsonl import append_jsonl, read_jsonl
from ft2_core.io.video_io import frames_at_rate, read_soundtrack, write_mp4
from ft2_core.models.audio_windows import check_frame_count
from ft2_core.sampling.options import DEFAULT_PROMPT
from training.common.interrupts import Stopped, StopRequests
from training.common.locks import folder_lock
from training.common.script import reported

log = logging.getLogger("ft2.prepare")

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
SPEECH_LEVEL = 10 ** (-40 / 20)  # a 20 ms frame this loud (RMS, -40 dBFS) or louder holds sound, not room noise
MIN_SPEECH_SHARE = 0.2  # a window with sound in less than this share of its 20 ms frames has no speech to learn from
FACE_PROBES = 3  # frames of a window the face is looked for in (first, middle, last)
SETTINGS_FILE = "prepare_settings.json"


def list_videos(source: Path, prompt: str) -> list[dict]:
    """[{"video": Path, "name": str, "prompt": str}] from a folder or a .txt / .jsonl list, in a stable order."""
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
        entries = [{"video": p, "name": p.relative_to(source).as_posix(), "prompt": prompt} for p in paths]
    elif source.suffix == ".jsonl":
        entries = [{"video": source.parent / r["video"], "name": r["video"], "prompt": prompt_text(r.get("prompt", prompt))}
                   for r in read_jsonl(source, ("video",), "video list")]
    elif source.is_file():
        lines = [line.strip() for line in source.read_text().splitlines() if line.strip() and not line.startswith("#")]
        entries = [{"video": source.parent / line, "name": line, "prompt": prompt} for line in lines]
    else:
        raise InputError(f"--videos {source}: not found; give a folder of videos or a .txt/.jsonl list of them")
    if not entries:
        raise InputError(f"--videos {source}: no videos ({', '.join(VIDEO_SUFFIXES)}) found")
    for entry in entries:  # ids name files: the source's path with its separators and dots made plain
        entry["id"] = "".join(c if c.isalnum() or c in "-_" else "_" for c in entry["name"])
    ids = Counter(entry["id"] for entry in entries)
    if max(ids.values()) > 1:
        twice = next(i for i, n in ids.items() if n > 1)
        raise InputError(f"--videos {source}: two videos map to the clip name {twice!r}; rename one")
    return entries


def speech_share(samples: np.ndarray) -> float:
    """Share of 20 ms frames at least SPEECH_LEVEL loud."""
    hop = WAV2VEC_RATE // 50
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    if not len(frames):
        return 0.0
    return float((np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) >= SPEECH_LEVEL).mean())


def face_box(points: list[np.ndarray], height: int, width: int, scale: float) -> tuple[int, int, int, int]:
    """A square (x0, y0, x1, y1) centred on the landmarks of all probed frames, `scale` times their larger extent,
    moved (not cut) to stay inside the frame; even sides, for yuv420p."""
    every = np.concatenate(points)
    (left, top), (right, bottom) = every.min(axis=0), every.max(axis=0)
    side = int(min(max(right - left, bottom - top) * scale, height, width)) // 2 * 2
    x0 = int(np.clip(round((left + right) / 2 - side / 2), 0, width - side))
    y0 = int(np.clip(round((top + bottom) / 2 - side / 2), 0, height - side))
    return x0, y0, x0 + side, y0 + side


def resized_square(frames: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """uint8 [T, H, W, 3] -> the box cut out and resized (antialiased) to size x size."""
    x0, y0, x1, y1 = box
    crop = torch.from_numpy(frames[:, y0:y1, x0:x1]).permute(0, 3, 1, 2).float()
    out = F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False, antialias=(x1 - x0) > size)
    return out.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def even_sides(frames: np.ndarray) -> np.ndarray:
    """yuv420p needs even sides: drop a last odd row or column."""
    return frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]


def write_png(path: Path, frame: np.ndarray) -> Path:
    from PIL import Image

    return write_file_atomic(path, lambda tmp: Image.fromarray(frame).save(tmp, format="PNG"))


def write_wav(path: Path, samples: np.ndarray) -> Path:
    import soundfile

    return write_file_atomic(path, lambda tmp: soundfile.write(str(tmp), samples, WAV2VEC_RATE, subtype="PCM_16",
                                                               format="WAV"))


class Preparer:
    """Cuts videos into clips and conditions in `out`, keeping what a previous run finished."""

    def __init__(self, out: Path, args, masker):
        self.out, self.args, self.masker = out, args, masker
        self.conditions_path, self.clips_path, self.skipped_path = (out / "conditions.jsonl", out / "clips.jsonl",
                                                                    out / "skipped.jsonl")
        self.done = {r["id"] for r in read_jsonl(self.clips_path, ("id",), "clips manifest", missing_ok=True)}
        self.conditioned = {r["id"] for r in read_jsonl(self.conditions_path, ("id",), "conditions manifest", missing_ok=True)}
        self.skipped = {r["id"]: r["reason"]
                        for r in read_jsonl(self.skipped_path, ("id", "reason"), "skipped list", missing_ok=True)}
        self.counts = Counter()
        for folder in ("clips", "conditions"):
            (out / folder).mkdir(parents=True, exist_ok=True)
            remove_temporaries(out / folder)  # half-written files of a killed run

    def skip(self, item: str, source: str, reason: str) -> bool:
        """Record why a video or window gives no clip (False: no clip)."""
        self.counts[f"skipped: {reason}"] += 1
        if item not in self.skipped:
            append_jsonl(self.skipped_path, {"id": item, "source": source, "reason": reason})
            self.skipped[item] = reason
            log.info("skipped %s: %s", item, reason)
        return False

    def video(self, entry: dict, stop: StopRequests) -> None:
        """Every window of one video not finished yet."""
        if entry["id"] in self.skipped:
            self.counts[f"skipped: {self.skipped[entry['id']]}"] += 1
            return
        args = self.args
        try:
            samples = read_soundtrack(entry["video"])
            if not samples.size:
                self.skip(entry["id"], entry["name"], "no audio track")
                return
            if speech_share(samples) == 0:  # windows are judged one by one; this saves decoding a silent video
                self.skip(entry["id"], entry["name"], "no speech")
                return
            _, frames = frames_at_rate(entry["video"], args.fps)
            window, start, index, produced = [], 0, 0, 0
            for number, frame in enumerate(frames):
                if number < start:  # between windows (a stride longer than a window)
                    continue
                window.append(frame)
                if len(window) == args.frames:
                    produced += self.window(entry, index, start, np.stack(window), samples)
                    stop.check(f"after {len(self.done)} clips (kept in {self.out})")
                    index += 1
                    if index == args.max_clips_per_video:
                        break
                    window, start = window[args.stride:], start + args.stride
        except InputError as err:
            self.skip(entry["id"], entry["name"], f"unreadable ({err})")
            return
        if index == 0:
            self.skip(entry["id"], entry["name"], f"shorter than {args.frames} frames at {args.fps:g} fps")
        self.counts["videos with clips"] += produced > 0

    def window(self, entry: dict, index: int, start: int, frames: np.ndarray, samples: np.ndarray) -> bool:
        """Window `index` of a video as a clip (True), or why not in the skipped list (False)."""
        args, item = self.args, f"{entry['id']}-{index:03d}"
        if item in self.done:
            self.counts["clips kept"] += 1
            return True
        if item in self.skipped:
            self.counts[f"skipped: {self.skipped[item]}"] += 1
            return False
        begin = round(start / args.fps * WAV2VEC_RATE)
        speech = samples[begin : begin + round(args.frames / args.fps * WAV2VEC_RATE)]
        if speech_share(speech) < MIN_SPEECH_SHARE:
            return self.skip(item, entry["name"], "no speech")
        box = None
        if self.masker is not None:
            probes = [frames[i] for i in np.linspace(0, len(frames) - 1, FACE_PROBES).round().astype(int)]
            found = [p for p in map(self.masker.landmarks, probes) if p is not None]
            if not found:
                return self.skip(item, entry["name"], "no face")
            if args.face == "crop":
                box = face_box(found, frames.shape[1], frames.shape[2], args.crop_scale)
        frames = resized_square(frames, box, args.size) if box else even_sides(frames)
        speech = np.pad(speech, (0, round(args.frames / args.fps * WAV2VEC_RATE) - len(speech)))
        video = write_mp4(self.out / "clips" / f"{item}.mp4", frames, args.fps, Audio(speech[None], WAV2VEC_RATE))
        image = write_png(self.out / "conditions" / f"{item}.png", frames[0])
        audio = write_wav(self.out / "conditions" / f"{item}.wav", speech)
        relative = {name: str(path.relative_to(self.out)) for name, path in (("video", video), ("image", image),
                                                                               ("audio", audio))}
        if item not in self.conditioned:
            append_jsonl(self.conditions_path, {"id": item, "image": relative["image"], "audio": relative["audio"],
                                                "prompt": entry["prompt"], "source": entry["name"],
                                                "start_seconds": round(start / args.fps, 4), "crop_box": box})
            self.conditioned.add(item)
        append_jsonl(self.clips_path, {"id": item, "video": relative["video"], "condition": item,
                                       "image": relative["image"], "prompt": entry["prompt"]})
        self.done.add(item)
        self.counts["clips new"] += 1
        return True


def check_settings(out: Path, settings: dict) -> None:
    """A folder keeps the settings its clips were made with; other settings are refused, naming what differs."""
    path = out / SETTINGS_FILE
    if path.is_file():
        changes = changed_settings(json.loads(path.read_text()), settings)
        if changes:
            raise InputError(f"--out {out} was prepared with {changes}: use another --out for these settings")
    else:
        write_text_atomic(path, json.dumps(settings, indent=1))


def summary(counts: Counter, videos: int) -> str:
    parts = [f"{videos} videos", f"{counts['videos with clips']} gave clips",
             f"{counts['clips new'] + counts['clips kept']} clips ({counts['clips new']} new)"]
    parts += [f"{n} {reason}" for reason, n in sorted(counts.items()) if reason.startswith("skipped")]
    return "; ".join(parts)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", required=True, help="a folder of videos, or a .txt / .jsonl list of them")
    parser.add_argument("--out", required=True)
    parser.add_argument("--frames", type=int, default=81, help="frames per clip (4k+1; the model's window)")
    parser.add_argument("--fps", type=float, default=23.0, help="the model's frame rate; videos are resampled to it")
    parser.add_argument("--stride", type=int, help="frames from one clip's start to the next's (default: --frames)")
    parser.add_argument("--max-clips-per-video", type=int, default=0, help="0: every window")
    parser.add_argument("--face", choices=("crop", "check", "none"), default="crop",
                        help="crop: square around the face (MediaPipe); check: skip faceless windows, keep the whole frame; "
                        "none: no face detection (e.g. the miniature world's cartoon faces)")
    parser.add_argument("--crop-scale", type=float, default=1.8, help="the crop's side over the face landmarks' extent")
    parser.add_argument("--size", type=int, default=512, help="side of the face crop in pixels")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="the prompt of every clip (a .jsonl list may give its own)")
    parser.add_argument("--face-landmarker", help="face_landmarker.task (default: models/mediapipe/)")
    args = parser.parse_args(argv)
    try:
        check_frame_count(args.frames, "--frames")
        finite_number(args.fps, "--fps", above=0.0)
        finite_number(args.crop_scale, "--crop-scale", minimum=1.0)
        args.stride = args.frames if args.stride is None else args.stride
        for flag, value, least in (("--stride", args.stride, 1), ("--size", args.size, 16),
                                   ("--max-clips-per-video", args.max_clips_per_video, 0)):
            if value < least:
                raise InputError(f"{flag} must be at least {least}, got {value}")
        if args.size % 2:
            raise InputError(f"--size must be even (yuv420p), got {args.size}")
        prompt_text(args.prompt, "--prompt")
        out = Path(args.out)
        videos = list_videos(Path(args.videos), args.prompt)
        settings = {key: getattr(args, key) for key in ("frames", "fps", "stride", "max_clips_per_video", "face",
                                                        "crop_scale", "size")}
        from tqdm import tqdm

        with folder_lock(out, "--out"):
            check_settings(out, settings)
            if args.face == "none":
                masker = None
            else:
                from ft2_core.scoring.lip_mask import LipMasker

                masker = LipMasker(args.face_landmarker)
            preparer = Preparer(out, args, masker)
            try:
                with StopRequests() as stop, tqdm(videos, desc="videos", unit="video", mininterval=2.0) as bar:
                    for entry in bar:
                        preparer.video(entry, stop)
                        bar.set_postfix(clips=len(preparer.done))
            finally:
                if masker is not None:
                    masker.close()
    except (InputError, WriteError, Stopped) as err:
        return reported(err)
    log.info("%s", summary(preparer.counts, len(videos)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
