"""Judge any video file of a world condition: the oracles' three scores and the sync model's reading, as a rater of
this world would give them (`python -m ft2_core judge VIDEO.mp4 --world-seed N [--frames F]`).

The condition's portrait and truth come from its seed, as world.make_clip makes them for F frames (the video's own
length unless --frames says otherwise: a clip of the same seed drawn at another length is another condition).
Lip-sync is judged against the file's own soundtrack, as a rater would hear it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.video_io import read_video
from .oracles import PROTOCOL_VERSION, score_clip
from .sync_model import MAX_OFFSET, WINDOW, SyncModel
from .world import FPS, SIZE, make_clip

FPS_TOLERANCE = 0.01


def judge_video(path: str | Path, world_seed: int, frames: int | None = None) -> dict:
    pixels, fps, audio = read_video(path)
    if audio is None:
        raise InputError(f"video: {path} has no soundtrack; lip-sync is judged against the video's own audio")
    if pixels.shape[1:3] != (SIZE, SIZE):
        raise InputError(f"video: {path} is {pixels.shape[2]}x{pixels.shape[1]}; world clips are {SIZE}x{SIZE}")
    if abs(fps - FPS) > FPS_TOLERANCE:
        raise InputError(f"video: {path} runs at {fps:g} fps; world clips run at {FPS:g} fps")
    count = len(pixels) if frames is None else frames
    shortest = WINDOW + 2 * MAX_OFFSET
    if not shortest <= count <= len(pixels):
        raise InputError(f"--frames: expected {shortest} to {len(pixels)} (the video's length), got {count}")
    if world_seed < 0:
        raise InputError(f"--world-seed: expected a seed of 0 or more, got {world_seed}")
    clip = make_clip(world_seed, count)
    video = pixels[:count].astype(np.float32) / 255
    scores = score_clip(video, audio, clip.fps, clip.face, clip.frames)
    sync = SyncModel.load().read(video, audio, clip.fps, clip.portrait)
    return {**scores.by_dimension(), **sync.as_scores(), "protocol": PROTOCOL_VERSION}
