"""The chain's conditions and their truth: condition records per split, each condition's true clip, and the
oracles' scores of any video against it (what the results table and the oracle-curated control use)."""
from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ft2_core.io.atomic import write_text_atomic
from ft2_core.io.image import load_image
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import read_video
from ft2_core.miniature.oracles import score_clip
from ft2_core.miniature.sync_model import MAX_OFFSET, WINDOW, SyncModel
from ft2_core.miniature.world import FPS, make_clip
from ft2_core.sampling.options import DEFAULT_PROMPT, SamplerOptions


def conditions(root: Path, split: str) -> list[dict]:
    return read_jsonl(root / "conditions" / f"{split}.jsonl", ("id", "image", "audio", "seed"), "conditions")

@functools.lru_cache(maxsize=64)
def true_clip(seed: int, frames: int):
    """A condition's ground-truth clip, drawn once: every candidate and damaged copy of it is scored against it."""
    return make_clip(seed, frames)

def oracle_scores(video: Path, condition: dict, frames: int) -> dict:
    pixels, fps, audio = read_video(video)
    clip = true_clip(condition["seed"], frames)
    return score_clip(pixels[:frames].astype(np.float32) / 255, audio, fps, clip.face, clip.frames).by_dimension()

def sync_model_for(frames: int) -> SyncModel | None:
    """The sync model, where clips of `frames` are long enough for it to read (None where not)."""
    return SyncModel.load() if frames >= WINDOW + 2 * MAX_OFFSET else None

def in_threads(function, items) -> list:
    """`function` of each item, in order, on every core: the oracles' numpy and ffmpeg work lets go of the GIL, so clips
    are scored side by side, with the same numbers as one after another (tested on the raters' clips)."""
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        return list(pool.map(function, items))

def oracle_judgements(config: dict, root: Path) -> Path:
    """The oracles' scores of every training candidate (made once): a judge for `curation.judge = "oracle"`, and
    otherwise the measure of how often the critic's pairs are right."""
    path = root / "pairs" / "oracle_judgements.jsonl"
    if not path.is_file():
        candidates = root / "candidates" / "train" / "candidates.jsonl"
        by_id = {c["id"]: c for c in conditions(root, "train")}
        judgements = in_threads(lambda c: {"id": c["id"], "scores": oracle_scores(
            candidates.parent / c["video"], by_id[c["condition"]], config["world"]["frames"])},
            read_jsonl(candidates, ("id", "video", "condition")))
        write_text_atomic(path, "".join(json.dumps(j) + "\n" for j in judgements))
    return path

def scores_by_id(path: Path) -> dict[str, dict[str, float]]:
    """A judgements file (the oracles' or the critic's) as clip id -> scores per dimension."""
    return {r["id"]: r["scores"] for r in read_jsonl(path, ("id", "scores"))}

def training_candidates_by_condition(root: Path, fields: tuple[str, ...]) -> list[list[dict]]:
    """The training candidates' records (id, condition and `fields`), grouped by condition."""
    groups = {}
    for c in read_jsonl(root / "candidates" / "train" / "candidates.jsonl", ("id", "condition", *fields)):
        groups.setdefault(c["condition"], []).append(c)
    return list(groups.values())

class TableRow(NamedTuple):
    """One row of a results table: the experts attached, how they mix (None: summed), and the audio guidance (None:
    the model's default)."""

    experts: list
    mix: object = None
    audio_cfg: float | None = None


def oracle_results(config: dict, root: Path, pipe, rows: dict[str, TableRow],
                   heldout: int | None = None) -> dict[str, list[dict]]:
    """Each row animates the first `heldout` conditions of the results split (`evaluate.split`) once per evaluation
    seed; the oracles score every video against the condition's true clip, and the sync model reads it (clips it can
    reach)."""
    frames, d = config["world"]["frames"], pipe.defaults
    sync = sync_model_for(frames)
    results = {name: [] for name in rows}
    for condition in conditions(root, config["evaluate"]["split"])[:heldout]:
        clip = true_clip(condition["seed"], frames)
        image = load_image(root / "conditions" / condition["image"])
        for seed in config["evaluate"]["seeds"]:
            for name, row in rows.items():
                audio_cfg = d["audio_cfg"] if row.audio_cfg is None else row.audio_cfg
                options = SamplerOptions(steps=config["evaluate"]["steps"], cfg=d["cfg"], audio_cfg=audio_cfg, shift=d["shift"],
                                         seed=int(seed))
                video = pipe.animate(image, clip.audio, DEFAULT_PROMPT, options=options, num_frames=frames, fps=FPS,
                                     experts=row.experts, gate=row.mix).frames.numpy()
                s = score_clip(video, clip.audio, FPS, clip.face, clip.frames)
                reading = sync.read(video, clip.audio, FPS, clip.portrait).as_scores() if sync else {}
                results[name].append({"condition": condition["id"], "seed": int(seed), **s.by_dimension(), **reading})
    return results
