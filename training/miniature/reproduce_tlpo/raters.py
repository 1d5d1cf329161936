"""The simulated human raters: the oracles play them, with a Yes threshold per dimension and answers flipped at
`critic.label_noise` (raters disagree), on the base model's candidates and on damaged copies of true clips."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import write_mp4
from ft2_core.miniature.world import DEGRADATIONS, FPS, degrade
from training.miniature.reproduce_tlpo.world_data import conditions, in_threads, oracle_scores, true_clip


def rated_clips(config: dict, root: Path) -> list[dict]:
    """What the raters judge: the base model's candidates of the critic conditions, and each condition's true
    clip with every kind of damage (the contrasts that teach what each question is about). Scored by the oracles."""
    frames = config["world"]["frames"]
    critic_conditions = conditions(root, "critic")
    by_id = {c["id"]: c for c in critic_conditions}
    folder = root / "candidates" / "critic"
    records = in_threads(lambda candidate: {
        "video": f"../candidates/critic/{candidate['video']}", "condition": candidate["condition"], "kind": "candidate",
        "oracle": oracle_scores(folder / candidate["video"], by_id[candidate["condition"]], frames)},
        read_jsonl(folder / "candidates.jsonl", ("id", "video", "condition")))
    rng = np.random.default_rng(config["run"]["seed"])
    for index, condition in enumerate(critic_conditions):
        clip = true_clip(condition["seed"], frames)
        other = true_clip(critic_conditions[(index + 1) % len(critic_conditions)]["seed"], frames).audio
        # the damage drawn in order (one generator), then written and scored in threads
        damaged = [(kind, *((clip.frames, clip.audio) if kind == "ground truth" else degrade(clip, kind, rng, other)))
                   for kind in ("ground truth", *DEGRADATIONS)]

        def rated(item, condition=condition):
            kind, pixels, audio = item
            name = f"{condition['id']}_{kind.replace(' ', '_')}.mp4"
            path = root / "critic" / "clips" / name
            if not path.is_file():
                write_mp4(path, pixels, FPS, audio)
            return {"video": f"clips/{name}", "condition": condition["id"], "kind": kind,
                    "oracle": oracle_scores(path, condition, frames)}

        records += in_threads(rated, damaged)
    return records

def answer_thresholds(records: list[dict], pool: str) -> dict[str, float]:
    """Per dimension, the oracle score from which the raters answer Yes: the median over every rated clip, or over the
    generated candidates alone (`pool = "candidates"`), where damaged true clips would otherwise push most candidates
    to one answer."""
    chosen = [r for r in records if pool == "all" or r["kind"] == "candidate"]
    return {d: float(np.median([r["oracle"][d] for r in chosen])) for d in DIMENSION_NAMES}

def clear_pairs(records: list[dict], margin: float) -> list[dict]:
    """Every pair of one condition's candidates whose oracle scores differ by at least `margin`, per dimension, the
    better one first: what a rater asked "which is better?" answers without hesitating."""
    by_condition = {}
    for record in records:
        if record["kind"] == "candidate":
            by_condition.setdefault(record["condition"], []).append(record)
    pairs = []
    for group in by_condition.values():
        for a, b in itertools.combinations(group, 2):
            for d in DIMENSION_NAMES:
                if abs(a["oracle"][d] - b["oracle"][d]) >= margin:
                    better, worse = (a, b) if a["oracle"][d] > b["oracle"][d] else (b, a)
                    pairs.append({"chosen": better["video"], "rejected": worse["video"], "dimension": d})
    return pairs


def rater_answers(config: dict, root: Path) -> dict:
    """Oracle answers (Yes from the `answer_thresholds`), noisy for training, exact for the held-out split, and the
    raters' choice between two candidates of a condition (noisy alike): what the critic learns from and is judged on."""
    c = config["critic"]
    rng = np.random.default_rng(config["run"]["seed"])
    records = rated_clips(config, root)
    thresholds = answer_thresholds(records, c["threshold_pool"])
    held_conditions = sorted({r["condition"] for r in records})
    held_conditions = set(held_conditions[:max(1, round(len(held_conditions) * c["heldout_share"]))])
    train_lines, heldout_lines = [], []
    for record in records:
        truth = {d: record["oracle"][d] >= thresholds[d] for d in DIMENSION_NAMES}
        if record["condition"] in held_conditions:
            heldout_lines.append({"video": record["video"], "kind": record["kind"], "condition": record["condition"],
                                  **{d: "Yes" if truth[d] else "No" for d in DIMENSION_NAMES}})
        else:  # raters disagree: each answer flipped with probability label_noise
            noisy = {d: truth[d] != (rng.random() < c["label_noise"]) for d in DIMENSION_NAMES}
            train_lines.append({"video": record["video"], **{d: "Yes" if noisy[d] else "No" for d in DIMENSION_NAMES}})
    heldout_pairs = clear_pairs([r for r in records if r["condition"] in held_conditions], c["preference_margin"])
    train_pairs = []
    for pair in clear_pairs([r for r in records if r["condition"] not in held_conditions], c["preference_margin"]):
        flipped = rng.random() < c["label_noise"]
        train_pairs.append({**pair, "chosen": pair["rejected"], "rejected": pair["chosen"]} if flipped else pair)
    return {"thresholds": thresholds, "train_lines": train_lines, "heldout_lines": heldout_lines,
            "train_pairs": train_pairs, "heldout_pairs": heldout_pairs}
