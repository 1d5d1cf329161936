"""Talking-NSQ curation: score candidates (critic, or weight-free proxies) and write preference pairs.

    python -m training.curate_pairs --candidates data/candidates/candidates.jsonl --out data/pairs \
        [--critic-base QWEN_OMNI_THINKER_DIR --critic-lora critic_lora.safetensors | --proxy | --scores FILE] [--margin 0.1]

`--scores` takes judgements made elsewhere (human raters, another metric): JSONL lines
{"id": candidate id, "scores": {"motion": p, "lipsync": p, "quality": p}} with p in 0..1 (P(Yes) or a rating).

Scores are appended to OUT/scores.jsonl batch by batch, so an interrupted run loses no finished scores
and a rerun scores only what is missing. Writes OUT/pairs_{motion,lipsync,quality}.jsonl for the expert
trainer, the same pairs as the critic's preference lines (OUT/critic_preferences.jsonl: with `--proxy`, weight-free
preferences to train the critic on beside a few hundred human labels), and prints per-dimension counts.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch

from ft2_core.checks import torch_device
from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.errors import InputError, WriteError
from ft2_core.io.atomic import write_text_atomic
from ft2_core.io.jsonl import append_jsonl, read_jsonl
from ft2_core.io.video_io import read_video
from ft2_core.scoring.critic import TalkingCritic
from ft2_core.tiny import tiny_critic_dir
from ft2_core.tlpo.curation import RULES, pairs_by_dimension
from ft2_core.tlpo.preference_data import write_pairs
from training.common.interrupts import Stopped, StopRequests
from training.common.locks import folder_lock
from training.common.script import reported

log = logging.getLogger("ft2.curate")


def read_candidates(path: Path) -> list[dict]:
    rows = read_jsonl(path, ("id", "video", "condition"), "candidates manifest", empty_ok=False)
    for row in rows:
        row["path"] = path.parent / row["video"]
    return rows


def read_scores(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    scores = {}
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a crash: that clip is scored again
                continue
            scores[record["id"]] = record["scores"]
    return scores


def score_all(candidates: list[dict], scores_path: Path, score_batch, batch_size: int) -> dict[str, dict]:
    """Score what is not in scores_path yet, appending each finished batch."""
    scores = read_scores(scores_path)
    todo = [c for c in candidates if c["id"] not in scores]
    log.info("%d candidates scored before, %d to score", len(candidates) - len(todo), len(todo))
    scores_path.parent.mkdir(parents=True, exist_ok=True)
    with StopRequests() as stop:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            results = score_batch(chunk)
            for candidate, result in zip(chunk, results):
                append_jsonl(scores_path, {"id": candidate["id"], "scores": result})
                scores[candidate["id"]] = result
            stop.check(f"after scoring {len(scores)} of {len(candidates)} candidates (kept in {scores_path})")
    return scores


def given_scores(path: Path, candidates: list[dict]) -> dict[str, dict]:
    """Judgements from a file, checked: every candidate judged, every score a number in 0..1 (or null)."""
    def check(record):
        scores = record["scores"]
        if not isinstance(scores, dict):
            return "scores must be an object {dimension: number}"
        bad = [
            d
            for d, v in scores.items()
            if d not in DIMENSION_NAMES or not (v is None or isinstance(v, (int, float)) and 0 <= v <= 1)
        ]
        return f"scores[{bad[0]!r}] must be a dimension of {DIMENSION_NAMES} with a number in 0..1 or null" if bad else None

    scores = {
        r["id"]: {d: r["scores"].get(d) for d in DIMENSION_NAMES}
        for r in read_jsonl(path, ("id", "scores"), "scores file", check)
    }
    missing = [c["id"] for c in candidates if c["id"] not in scores]
    if missing:
        raise InputError(f"--scores {path}: no judgement for {len(missing)} candidates (e.g. {missing[0]!r})")
    return {c["id"]: scores[c["id"]] for c in candidates}


def critic_batch_scorer(critic: TalkingCritic):
    def score(chunk):
        features = []
        for candidate in chunk:
            frames, fps, audio = read_video(candidate["path"])
            features.append(critic.features(frames, fps, audio, candidate["video"]))
        return critic.score(features, batch_size=len(features))

    return score


def proxy_batch_scorer(scorer):
    def score(chunk):
        results = []
        for candidate in chunk:
            frames, fps, audio = read_video(candidate["path"])
            results.append(scorer.score_clip(frames, fps, audio, candidate["video"]))
        return results

    return score


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--critic-base", help="Qwen2.5-Omni thinker folder (default: the tiny random one)")
    parser.add_argument("--critic-lora", help="critic LoRA from train_critic.py")
    parser.add_argument("--proxy", action="store_true", help="weight-free proxy metrics instead of the critic")
    parser.add_argument("--scores", help="judgements made elsewhere (JSONL {id, scores}) instead of the critic")
    parser.add_argument("--face-landmarker", help="for the lip-sync proxy (default: models/mediapipe/)")
    parser.add_argument("--margin", type=float, default=0.1, help="confidence margin around 0.5 (ranking: least P(Yes) gap)")
    parser.add_argument(
        "--rule",
        choices=RULES,
        default="answer",
        help="answer: Yes beats No (the paper); ranking: higher P(Yes) beats lower by the margin",
    )
    parser.add_argument("--max-pairs-per-condition", type=int)
    parser.add_argument("--pair-within", choices=("condition", "guidance"), default="condition",
                        help="guidance: pair only candidates made at the same cfg and audio cfg (differences not the guidance's)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        check_arguments(args)
        with folder_lock(out, "--out"):  # one run appends to its scores at a time
            candidates = read_candidates(Path(args.candidates))
            pairs = curate(args, out, candidates)
            for dimension in DIMENSION_NAMES:
                write_pairs(out / f"pairs_{dimension}.jsonl", pairs[dimension])
            write_critic_preferences(out / CRITIC_PREFERENCES, pairs, candidates)
    except (InputError, WriteError, Stopped) as err:
        return reported(err)
    print(" ".join(f"{d}={len(pairs[d])}" for d in DIMENSION_NAMES))
    return 0


def check_arguments(args) -> None:
    """What needs no file read, before anything is made."""
    if not 0 <= args.margin < 0.5:
        raise InputError(f"--margin must be in [0, 0.5), got {args.margin}")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_pairs_per_condition is not None and args.max_pairs_per_condition < 1:
        raise InputError(f"--max-pairs-per-condition must be at least 1, got {args.max_pairs_per_condition}")
    if args.scores and (args.proxy or args.critic_lora or args.critic_base):
        raise InputError("--scores replaces the critic and the proxies; give it alone")
    torch_device(args.device)


CRITIC_PREFERENCES = "critic_preferences.jsonl"


def write_critic_preferences(path: Path, pairs: dict, candidates: list[dict]) -> Path:
    """The same pairs as the critic's preference lines (`data.train_pairs` of training.train_critic: video paths
    relative to this file), so pairs curated by a weight-free scorer can teach the critic beside human labels."""
    where = {c["id"]: os.path.relpath(c["path"], path.parent) for c in candidates}
    lines = [json.dumps({"chosen": where[p.winner], "rejected": where[p.loser], "dimension": dimension}) + "\n"
             for dimension in DIMENSION_NAMES for p in pairs[dimension]]
    return write_text_atomic(path, "".join(lines))


def curate(args, out: Path, candidates: list[dict]) -> dict:
    """Scores (kept in OUT/scores.jsonl as they come) and the pairs they make, per dimension."""
    if args.scores:
        scores = given_scores(Path(args.scores), candidates)
    elif args.proxy:
        from ft2_core.scoring.lip_mask import LipMasker
        from ft2_core.scoring.proxy_metrics import ProxyScorer

        with LipMasker(args.face_landmarker) as masker:
            scores = score_all(candidates, out / "scores.jsonl", proxy_batch_scorer(ProxyScorer(masker)), args.batch_size)
    else:
        critic = TalkingCritic.from_folder(args.critic_base or tiny_critic_dir(), args.critic_lora, args.device)
        scores = score_all(candidates, out / "scores.jsonl", critic_batch_scorer(critic), args.batch_size)
    groups = {c["id"]: (c.get("cfg"), c.get("audio_cfg")) for c in candidates} if args.pair_within == "guidance" else None
    return pairs_by_dimension(
        scores, {c["id"]: c["condition"] for c in candidates}, args.margin, args.max_pairs_per_condition, args.rule, groups
    )


if __name__ == "__main__":
    raise SystemExit(main())
