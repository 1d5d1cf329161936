"""MP4 output: H.264 yuv420p video with an AAC soundtrack, written under a temporary name then renamed."""
from __future__ import annotations

import os
import re
import struct
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import InputError, WriteError
from ..io.audio import WAV2VEC_RATE, Audio, fit_to_duration
from .atomic import atomic_path, commit_atomic, writing


def to_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """[T, H, W, 3] float 0..1 (or uint8) -> contiguous uint8."""
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise InputError(f"frames must be [frames>0, height, width, 3], got shape {array.shape}")
    if array.dtype != np.uint8:
        bad = int(np.size(array) - np.isfinite(array).sum())
        if bad:
            raise InputError(f"frames hold {bad} NaN or infinite values (the model produced no picture); nothing was written")
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return np.ascontiguousarray(array)


def write_mp4(path: str | os.PathLike, frames, fps: float, audio: Audio | None = None) -> Path:
    """Encode frames (and audio trimmed/padded to the video's duration) with the bundled ffmpeg."""
    import imageio_ffmpeg
    import soundfile

    pixels = to_uint8(frames)
    count, height, width = pixels.shape[:3]
    if height % 2 or width % 2:
        raise InputError(f"frames must have even sides for yuv420p, got {width}x{height}")
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    target = Path(path)
    tmp_video = atomic_path(target)
    tmp_audio = atomic_path(target.with_suffix(".wav")) if audio is not None else None
    try:
        with writing(target):  # soundfile's and ffmpeg's failures (OSError, RuntimeError) become one WriteError
            if audio is not None:
                track = fit_to_duration(audio, count / fps)
                soundfile.write(str(tmp_audio), track.waveform.T, track.sample_rate, subtype="PCM_16")
            writer = imageio_ffmpeg.write_frames(
                str(tmp_video), (width, height), fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=8,
                ffmpeg_log_level="error", macro_block_size=2, audio_path=None if tmp_audio is None else str(tmp_audio),
                audio_codec=None if tmp_audio is None else "aac",
            )
            writer.send(None)
            for frame in pixels:
                writer.send(frame)
            writer.close()
        written = frames_in(tmp_video)
        if written != count:
            raise WriteError(f"{target}: ffmpeg wrote {written} of {count} frames (is the disk full?); nothing was saved")
        if not mp4_boxes_complete(tmp_video):  # a write cut short can still decode every frame (a lost moov tail)
            raise WriteError(f"{target}: ffmpeg wrote an incomplete file (is the disk full?); nothing was saved")
        return commit_atomic(tmp_video, target)
    finally:
        tmp_video.unlink(missing_ok=True)
        if tmp_audio is not None:
            tmp_audio.unlink(missing_ok=True)


def mp4_boxes_complete(path: Path) -> bool:
    """The file's top-level MP4 boxes (ISO BMFF: 32-bit size and type, or size 1 and a 64-bit size) end exactly at its
    end, and hold the index (moov) and the data (mdat): a file cut anywhere fails this."""
    size, position, kinds = path.stat().st_size, 0, set()
    with open(path, "rb") as handle:
        while position < size:
            handle.seek(position)
            head = handle.read(16)
            if len(head) < 8:
                return False
            length, kind = struct.unpack(">I4s", head[:8])
            if length == 1 and len(head) == 16:
                length = struct.unpack(">Q", head[8:16])[0]
            if length < 8:  # 0 ("to the end of the file") is never written by ffmpeg's mp4 muxer
                return False
            kinds.add(kind)
            position += length
    return position == size and {b"moov", b"mdat"} <= kinds


def frames_in(path: Path) -> int:
    """How many frames ffmpeg can read back from a video file (0 when it cannot read it at all)."""
    import imageio_ffmpeg

    try:
        return imageio_ffmpeg.count_frames_and_secs(str(path))[0]
    except (RuntimeError, OSError):
        return 0


def probe_mp4(path: str | os.PathLike) -> dict:
    """Stream facts of a video file from ffmpeg's own report (imageio-ffmpeg ships no ffprobe).

    Returns frames, fps, video codec, pixel format and, when present, audio codec and the decoded
    audio duration in seconds.
    """
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video: file not found: {path}")
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    report = subprocess.run([exe, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    video = re.search(r"Stream #\S+.*Video: (\w+).*?, (\w+)\(?.*?, (\d+)x(\d+).*?, ([\d.]+) fps", report)
    if video is None:
        raise InputError(f"video: {path} has no video stream")
    facts = {
        "frames": frames, "video_codec": video.group(1), "pix_fmt": video.group(2),
        "width": int(video.group(3)), "height": int(video.group(4)), "fps": float(video.group(5)),
    }
    audio = re.search(r"Stream #\S+.*Audio: (\w+)", report)
    if audio:
        pcm = subprocess.run(
            [exe, "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", "16000", "-f", "s16le", "-"],
            capture_output=True, check=True,
        ).stdout
        facts.update(audio_codec=audio.group(1), audio_seconds=len(pcm) / 2 / 16000)
    return facts


def read_video(path: str | os.PathLike, with_audio: bool = True) -> tuple[np.ndarray, float, Audio | None]:
    """Decode a video file -> frames uint8 [T, H, W, 3], fps, and its soundtrack (None if it has none)."""
    import imageio_ffmpeg

    from ..io.audio import audio_from_waveform

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video: file not found: {path}")
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        width, height = meta["size"]
        frames = [np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3) for chunk in reader]
    except (RuntimeError, OSError, StopIteration) as err:
        raise InputError(f"video: cannot decode {path} ({err})") from None
    if not frames:
        raise InputError(f"video: {path} has zero frames")
    fps = float(meta.get("fps") or 0)
    if fps <= 0:
        raise InputError(f"video: {path} reports no frame rate")
    audio = None
    if with_audio and meta.get("audio_codec"):
        samples = read_soundtrack(path)
        if samples.size:
            audio = audio_from_waveform(samples, WAV2VEC_RATE, f"audio of {path.name}")
    return np.stack(frames), fps, audio


def read_soundtrack(path: Path) -> np.ndarray:
    """A video file's soundtrack as 16 kHz mono float32 samples, unchecked (empty when it has none)."""
    import imageio_ffmpeg

    pcm = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-vn", "-ac", "1",
                          "-ar", str(WAV2VEC_RATE), "-f", "f32le", "-"], capture_output=True).stdout
    return np.frombuffer(pcm, dtype=np.float32).copy()


def frames_at_rate(path: Path, fps: float) -> tuple[dict, Iterator[np.ndarray]]:
    """Stream a video's frames resampled to `fps` by ffmpeg (nearest frame in time), one uint8 [H, W, 3] at a time,
    so a long video never sits in memory whole; also the source's facts (size, fps, audio codec)."""
    import imageio_ffmpeg

    if not path.is_file():
        raise InputError(f"video: file not found: {path}")
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", output_params=["-vf", f"fps={fps:g}"])
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as err:
        raise InputError(f"video: cannot decode {path} ({err})") from None
    width, height = meta["size"]

    def frames():
        try:
            for chunk in reader:
                yield np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3)
        except (RuntimeError, OSError) as err:
            raise InputError(f"video: cannot decode {path} ({err})") from None

    return meta, frames()
