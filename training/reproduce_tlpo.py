"""TLPO reproduced end to end in the miniature world, with one command, stage by stage (resumable):

    python training/reproduce_tlpo.py --config training/configs/miniature_tlpo.toml

conditions -> candidate videos of the base model (several seeds and audio-guidance settings each) ->
Talking-Critic (the tiny Qwen2.5-Omni thinker + our LoRA, trained on oracle judgements with rater
noise) -> Talking-NSQ pairs curated by the critic (never by the oracles) -> latent cache (world lip
masks) -> three Flow-DPO experts and a pooled single LoRA -> the gate with the experts frozen ->
evaluation by the oracles on held-out conditions. Every stage calls the project's own scripts; a
finished stage leaves `stages/<name>.json` (with its wall time) and is skipped on the next run.
"""
from __future__ import annotations

import functools
import itertools
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ft2_core.io.atomic import write_text_atomic  # noqa: E402
from ft2_core.dimensions import DIMENSION_NAMES, LABELS, POOLED  # noqa: E402
from ft2_core.scoring.critic import TalkingCritic, VideoSettings  # noqa: E402
from ft2_core.errors import InputError  # noqa: E402
from ft2_core.tlpo.experts import Expert  # noqa: E402
from ft2_core.tlpo.gate import StaticMix, load_gate  # noqa: E402
from ft2_core.tlpo.gate_plot import gate_weights_grid, render_gate  # noqa: E402
from ft2_core.io.image import load_image  # noqa: E402
from ft2_core.io.jsonl import read_jsonl  # noqa: E402
from ft2_core.tlpo.lora_formats import load_lora  # noqa: E402
from ft2_core.miniature.model import miniature_critic_dir, miniature_model_dir  # noqa: E402
from ft2_core.miniature.oracles import score_clip  # noqa: E402
from ft2_core.miniature.world import DEGRADATIONS, FPS, HELD_OUT_SEEDS_FROM, HURTS, degrade, make_clip  # noqa: E402
from ft2_core.model_paths import ModelPaths  # noqa: E402
from ft2_core.pipeline import FantasyTalkingPipeline  # noqa: E402
from ft2_core.sampling.options import DEFAULT_PROMPT, SamplerOptions  # noqa: E402
from ft2_core.tiny import tiny_critic_dir  # noqa: E402
from ft2_core.io.video_io import read_video, write_mp4  # noqa: E402
from training import curate_pairs, generate_candidates, preprocess, train_critic, train_expert, train_gate  # noqa: E402
from training.config import Option, check  # noqa: E402
from training.trainer import Stopped, resolve, run  # noqa: E402

log = logging.getLogger("ft2.tlpo")
STAGES = ("conditions", "candidates", "critic_base", "critic", "pairs", "cache", "experts", "gate", "evaluate")
SPLITS = {"critic": 10_000, "train": 20_000, "heldout": 30_000, "pretrain": 40_000}  # world seed offsets past HELD_OUT_SEEDS_FROM
EXPERTS = (*DIMENSION_NAMES, POOLED)
SCHEMA = {
    "run": {"output": Option(str), "results": Option(str, ""), "seed": Option(int, 0, minimum=0),
            "model": Option(str, "miniature"), "reuse": Option(str, "")},
    "world": {"critic_conditions": Option(int, 24, minimum=2), "train_conditions": Option(int, 40, minimum=1),
              "heldout_conditions": Option(int, 16, minimum=1), "frames": Option(int, 33, minimum=5)},
    "candidates": {"samples": Option(int, 4, minimum=2), "cfg": Option(list, [1.0]), "audio_cfg": Option(list, [1.0, 2.0, 3.0, 5.0]),
                   "steps": Option(int, 20, minimum=1)},
    "critic_base": {"conditions": Option(int, 0, minimum=0), "heldout_conditions": Option(int, 20, minimum=1),
                    "steps": Option(int, 1000, minimum=1), "batch_size": Option(int, 16, minimum=1),
                    "lr": Option(float, 1e-3, above=0),
                    "thinker": Option(str, "random", choices=("random", "miniature"))},
    "critic": {"label_noise": Option(float, 0.1, minimum=0, maximum=0.5), "heldout_share": Option(float, 0.25, above=0, maximum=0.9),
               "steps": Option(int, 300, minimum=1), "batch_size": Option(int, 8, minimum=1), "lr": Option(float, 2e-3, above=0),
               "rank": Option(int, 8, minimum=1), "sample_fps": Option(float, 23.0, above=0), "max_frames": Option(int, 34, minimum=2),
               "min_side": Option(int, 112, minimum=28),
               "threshold_pool": Option(str, "all", choices=("all", "candidates")),
               "preferences": Option(bool, False), "preference_margin": Option(float, 0.02, minimum=0),
               "pair_batch_size": Option(int, 4, minimum=1)},
    "curation": {"margin": Option(float, 0.1, minimum=0, maximum=0.49), "max_pairs_per_condition": Option(int, 4, minimum=1),
                 "rule": Option(str, "answer", choices=("answer", "ranking")),
                 "judge": Option(str, "critic", choices=("critic", "oracle"))},
    "experts": {"rank": Option(int, 8, minimum=1), "alpha": Option(float, 8.0, above=0), "beta": Option(float, 500.0, above=0),
                "steps": Option(int, 150, minimum=1), "batch_size": Option(int, 4, minimum=1), "lr": Option(float, 1e-3, above=0),
                "lip_mask": Option(bool, True), "sigma_max": Option(float, 1.0, above=0, maximum=1),
                "winner_penalty": Option(float, 0.0, minimum=0)},
    "gate": {"steps": Option(int, 150, minimum=1), "batch_size": Option(int, 6, minimum=1), "lr": Option(float, 3e-4, above=0),
             "beta": Option(float, 500.0, above=0), "winner_penalty": Option(float, 0.0, minimum=0),
             "embed_dim": Option(int, 256, minimum=2),
             "min_period": Option(float, 0.0, minimum=0)},
    "evaluate": {"seeds": Option(list, [0, 1]), "steps": Option(int, 20, minimum=1)},
}


# ------------------------------------------------------------------ helpers
def call(script, argv: list[str]) -> None:
    """Run one of the project's scripts in-process; a failure stops the chain with its exit code."""
    finish(script.main(argv), f"{script.__name__} {' '.join(argv)}")


def finish(code: int, what: str) -> None:
    """A stage command's exit code: 0 goes on; a stop (128 + signal) or a failure ends the chain with it."""
    if code:
        raise ChainStopped(code, what)


class ChainStopped(Exception):
    def __init__(self, code: int, what: str):
        self.code = code
        super().__init__(f"stage command failed (exit {code}): {what}")


def write_toml(path: Path, sections: dict) -> Path:
    def value(v):
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(map(value, v)) + "]"
        return json.dumps(v)

    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {value(v)}" for key, v in table.items()]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def world_seed(split: str, index: int) -> int:
    return HELD_OUT_SEEDS_FROM + SPLITS[split] + index


def conditions(root: Path, split: str) -> list[dict]:
    return read_jsonl(root / "conditions" / f"{split}.jsonl", ("id", "image", "audio", "seed"), "conditions")


@functools.lru_cache(maxsize=64)
def true_clip(seed: int, frames: int):
    """A condition's ground-truth clip, drawn once: every candidate and damaged copy of it is scored against it."""
    return make_clip(seed, frames)


def oracle_scores(video: Path, condition: dict, frames: int) -> dict:
    pixels, fps, audio = read_video(video)
    clip = true_clip(condition["seed"], frames)
    return score_clip(pixels[:frames].astype(np.float32) / 255, audio, fps, clip.portrait, clip.frames).by_dimension()


# ------------------------------------------------------------------ stages
def stage_conditions(config: dict, root: Path) -> dict:
    frames = config["world"]["frames"]
    counts = {"critic": config["world"]["critic_conditions"], "train": config["world"]["train_conditions"],
              "heldout": config["world"]["heldout_conditions"]}
    for split, count in counts.items():
        records = []
        for index in range(count):
            seed = world_seed(split, index)
            clip = make_clip(seed, frames)
            name = f"{split}{index:03d}"
            folder = root / "conditions" / split
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((clip.portrait * 255).round().astype(np.uint8)).save(folder / f"{name}.png")
            soundfile.write(folder / f"{name}.wav", clip.audio.waveform[0], clip.audio.sample_rate, subtype="FLOAT")
            records.append({"id": name, "image": f"{split}/{name}.png", "audio": f"{split}/{name}.wav", "prompt": DEFAULT_PROMPT,
                            "seed": seed})
        write_text_atomic(root / "conditions" / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return counts


def stage_candidates(config: dict, root: Path) -> dict:
    c = config["candidates"]
    made = {}
    for split in ("critic", "train"):
        argv = ["--conditions", str(root / "conditions" / f"{split}.jsonl"), "--out", str(root / "candidates" / split),
                "--samples", str(c["samples"]), "--model-dir", config["run"]["model"], "--steps", str(c["steps"]),
                "--frames", str(config["world"]["frames"]), "--fps", str(FPS), "--seed", str(config["run"]["seed"]),
                "--cfg", *map(str, c["cfg"]), "--audio-cfg", *map(str, c["audio_cfg"])]
        call(generate_candidates, argv)
        made[split] = len(read_jsonl(root / "candidates" / split / "candidates.jsonl", ("id",)))
    return made


def rated_clips(config: dict, root: Path) -> list[dict]:
    """What the raters judge: the base model's candidates of the critic conditions, and each condition's true
    clip with every kind of damage (the contrasts that teach what each question is about). Scored by the oracles."""
    frames = config["world"]["frames"]
    critic_conditions = conditions(root, "critic")
    by_id = {c["id"]: c for c in critic_conditions}
    folder = root / "candidates" / "critic"
    records = []
    for candidate in read_jsonl(folder / "candidates.jsonl", ("id", "video", "condition")):
        condition = by_id[candidate["condition"]]
        records.append({"video": f"../candidates/critic/{candidate['video']}", "condition": candidate["condition"],
                        "kind": "candidate", "oracle": oracle_scores(folder / candidate["video"], condition, frames)})
    rng = np.random.default_rng(config["run"]["seed"])
    for index, condition in enumerate(critic_conditions):
        clip = true_clip(condition["seed"], frames)
        other = true_clip(critic_conditions[(index + 1) % len(critic_conditions)]["seed"], frames).audio
        for kind in ("ground truth", *DEGRADATIONS):
            pixels, audio = (clip.frames, clip.audio) if kind == "ground truth" else degrade(clip, kind, rng, other)
            name = f"{condition['id']}_{kind.replace(' ', '_')}.mp4"
            path = root / "critic" / "clips" / name
            if not path.is_file():
                write_mp4(path, pixels, FPS, audio)
            records.append({"video": f"clips/{name}", "condition": condition["id"], "kind": kind,
                            "oracle": oracle_scores(path, condition, frames)})
    return records


def video_settings(c: dict) -> dict:
    return {"sample_fps": c["sample_fps"], "max_frames": c["max_frames"], "min_pixels": c["min_side"] ** 2}


def critic_base_dir(config: dict, root: Path) -> Path:
    """The thinker the critic's LoRA starts from: pretrained in this world by this run, the built-in one pretrained
    the same way (`critic_base.thinker = "miniature"`, saves that stage's 20 minutes), or the random tiny one."""
    if config["critic_base"]["conditions"]:
        return root / "critic_base" / "run" / "thinker"
    return miniature_critic_dir() if config["critic_base"]["thinker"] == "miniature" else tiny_critic_dir()


def stage_critic_base(config: dict, root: Path) -> dict:
    """A thinker that has learned to watch this world, as Qwen2.5-Omni has learned to watch ours before any critic
    LoRA: every weight trained on many true clips and damaged copies, each answer known from the kind of damage
    (`HURTS`, the world's rule; no oracle). `critic_base.conditions = 0` keeps the random thinker."""
    b, frames = config["critic_base"], config["world"]["frames"]
    if not b["conditions"]:
        return {"skipped": True}
    rng = np.random.default_rng(config["run"]["seed"])
    folder = root / "critic_base"
    lines = {"train": [], "heldout": []}
    for split, first, count in (("train", 0, b["conditions"]), ("heldout", b["conditions"], b["heldout_conditions"])):
        for index in range(first, first + count):
            clip, other = true_clip(world_seed("pretrain", index), frames), true_clip(world_seed("pretrain", index + 1), frames)
            kinds = ["ground truth", *DEGRADATIONS] if split == "heldout" else ["ground truth", DEGRADATIONS[rng.integers(len(DEGRADATIONS))]]
            for kind in kinds:
                name = f"clips/p{index:05d}_{kind.replace(' ', '_')}.mp4"
                if not (folder / name).is_file():
                    pixels, audio = (clip.frames, clip.audio) if kind == "ground truth" else degrade(clip, kind, rng, other.audio)
                    write_mp4(folder / name, pixels, FPS, audio)
                hurt = HURTS.get(kind, ())
                lines[split].append({"video": name, **{d: "No" if d in hurt else "Yes" for d in DIMENSION_NAMES}})
    for split, records in lines.items():
        write_text_atomic(folder / f"labels_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    toml = write_toml(root / "configs" / "critic_base.toml", {
        "lora": {"rank": 0}, "video": video_settings(config["critic"]),
        "data": {"train": str(folder / "labels_train.jsonl"), "heldout": str(folder / "labels_heldout.jsonl")},
        "train": {"output": str(folder / "run"), "steps": b["steps"], "batch_size": b["batch_size"], "lr": b["lr"],
                  "seed": config["run"]["seed"], "checkpoint_every": max(1, b["steps"] // 4), "eval_every": max(1, b["steps"] // 4)},
    })
    finish(run(train_critic.main, train_critic.SCHEMA, ["--config", str(toml)]), "train_critic (whole thinker)")
    log_lines = read_jsonl(folder / "run" / "metrics.jsonl")
    return {"train_clips": len(lines["train"]), "heldout_clips": len(lines["heldout"]),
            "heldout_accuracy": [r["heldout_accuracy"] for r in log_lines if "heldout_accuracy" in r][-1]}


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


def stage_critic(config: dict, root: Path) -> dict:
    """Oracle answers (Yes from the `answer_thresholds`), noisy for training, exact for the held-out split; with
    `critic.preferences`, also the raters' choice between two candidates of a condition (noisy alike)."""
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
            heldout_lines.append({"video": record["video"], "kind": record["kind"],
                                  **{d: "Yes" if truth[d] else "No" for d in DIMENSION_NAMES}})
        else:  # raters disagree: each answer flipped with probability label_noise
            noisy = {d: truth[d] != (rng.random() < c["label_noise"]) for d in DIMENSION_NAMES}
            train_lines.append({"video": record["video"], **{d: "Yes" if noisy[d] else "No" for d in DIMENSION_NAMES}})
    heldout_pairs = clear_pairs([r for r in records if r["condition"] in held_conditions], c["preference_margin"])
    train_pairs = []
    for pair in clear_pairs([r for r in records if r["condition"] not in held_conditions], c["preference_margin"]):
        flipped = rng.random() < c["label_noise"]
        train_pairs.append({**pair, "chosen": pair["rejected"], "rejected": pair["chosen"]} if flipped else pair)
    labels = root / "critic"  # video paths in the label files are relative to them
    write_text_atomic(labels / "labels_train.jsonl", "".join(json.dumps(r) + "\n" for r in train_lines))
    write_text_atomic(labels / "labels_heldout.jsonl", "".join(json.dumps(r) + "\n" for r in heldout_lines))
    write_text_atomic(labels / "preferences_train.jsonl", "".join(json.dumps(r) + "\n" for r in train_pairs))
    write_text_atomic(labels / "preferences_heldout.jsonl", "".join(json.dumps(r) + "\n" for r in heldout_pairs))
    data = {"train": str(labels / "labels_train.jsonl"), "heldout": str(labels / "labels_heldout.jsonl")}
    if c["preferences"] and train_pairs:
        data.update(train_pairs=str(labels / "preferences_train.jsonl"), heldout_pairs=str(labels / "preferences_heldout.jsonl"))
    elif c["preferences"]:
        raise InputError("critic.preferences: no two candidates of a critic condition differ by critic.preference_margin; "
                         "lower it or raise world.critic_conditions")
    toml = write_toml(root / "configs" / "critic.toml", {
        "model": {"folder": str(critic_base_dir(config, root))},
        "lora": {"rank": c["rank"], "alpha": 2.0 * c["rank"]},
        "video": video_settings(c),
        "data": data,
        "train": {"output": str(root / "critic" / "run"), "steps": c["steps"], "batch_size": c["batch_size"], "lr": c["lr"],
                  "pair_batch_size": c["pair_batch_size"], "seed": config["run"]["seed"],
                  "checkpoint_every": max(1, c["steps"] // 3), "eval_every": max(1, c["steps"] // 3)},
    })
    finish(run(train_critic.main, train_critic.SCHEMA, ["--config", str(toml)]), "train_critic")
    table = critic_table(config, root, train_lines, heldout_lines, heldout_pairs)
    write_text_atomic(root / "critic" / "critic_table.md", table["markdown"])
    return {"thresholds": thresholds, "train_clips": len(train_lines), "heldout_clips": len(heldout_lines),
            "train_preferences": len(train_pairs) if c["preferences"] else 0, **table["numbers"]}


def critic_table(config: dict, root: Path, train_lines: list[dict], heldout_lines: list[dict],
                 heldout_pairs: list[dict]) -> dict:
    """Held-out accuracy against the oracle, on the generated candidates (what curation judges) and on every
    held-out clip, and how often the score orders two held-out candidates of a condition the oracles' way (what
    curation needs): trained critic, the thinker it started from, the random thinker, majority-answer baseline."""
    c = config["critic"]
    majority = np.array([np.mean([line[d] == "Yes" for line in train_lines]) >= 0.5 for d in DIMENSION_NAMES])
    truth = np.array([[line[d] == "Yes" for d in DIMENSION_NAMES] for line in heldout_lines])
    candidate = np.array([line["kind"] == "candidate" for line in heldout_lines])
    answers = {"majority answer of the training labels": np.repeat(majority[None], len(heldout_lines), axis=0)}
    probabilities = {"majority answer of the training labels": np.full((len(heldout_lines), len(DIMENSION_NAMES)), 0.5)}
    judges = {"random tiny thinker (no training)": (tiny_critic_dir(), None)}
    if critic_base_dir(config, root) != tiny_critic_dir():
        judges["world-pretrained thinker (no LoRA)"] = (critic_base_dir(config, root), None)
    judges["Talking-Critic (its base + trained LoRA)"] = (critic_base_dir(config, root), root / "critic" / "run" / "critic_lora.safetensors")
    features = None  # the same for every judge (same frame sampling and audio features): prepared once
    for name, (base, lora) in judges.items():
        critic = TalkingCritic.from_folder(base, lora)
        critic.settings = VideoSettings(**video_settings(c))
        if features is None:
            features = [critic.features(*read_video(root / "critic" / line["video"]), line["video"]) for line in heldout_lines]
        scores = critic.score(features, batch_size=4)
        probabilities[name] = np.array([[s[d] for d in DIMENSION_NAMES] for s in scores])
        answers[name] = probabilities[name] >= 0.5
    row = {line["video"]: r for r, line in enumerate(heldout_lines)}
    lines = [f"Held-out accuracy against the oracle, in the form of the paper's Table 1 ({int(candidate.sum())} generated "
             f"candidates, {len(heldout_lines)} clips in all, from {c['heldout_share']:.0%} of the critic conditions; the "
             f"critic's training answers were flipped with probability {c['label_noise']}). Last rows: the share of "
             f"{len(heldout_pairs)} held-out pairs of one condition's candidates (oracle scores at least "
             f"{c['preference_margin']} apart) that the judge's P(Yes) orders the oracles' way (a tie counts half):", "",
             "| judge | clips | " + " | ".join(LABELS[d] for d in DIMENSION_NAMES) + " |", "|---|---|---|---|---|"]
    numbers = {}
    for name, answer in answers.items():
        correct = answer == truth
        for subset, rows in (("generated candidates", candidate), ("all held-out clips", np.ones_like(candidate))):
            accuracy = correct[rows].mean(axis=0)
            numbers.setdefault(name, {})[subset] = dict(zip(DIMENSION_NAMES, map(float, accuracy)))
            lines.append(f"| {name} | {subset} | " + " | ".join(f"{100 * a:.1f}%" for a in accuracy) + " |")
    for name, p in probabilities.items():
        ordering = {}
        for k, d in enumerate(DIMENSION_NAMES):
            pairs = [(p[row[x["chosen"]], k], p[row[x["rejected"]], k]) for x in heldout_pairs if x["dimension"] == d]
            ordering[d] = train_critic.ordered_share(*zip(*pairs)) if pairs else float("nan")
        numbers[name]["held-out candidate pairs ordered"] = ordering
        lines.append(f"| {name} | held-out candidate pairs ordered | "
                     + " | ".join(f"{100 * ordering[d]:.1f}%" for d in DIMENSION_NAMES) + " |")
    return {"markdown": "\n".join(lines) + "\n", "numbers": {"accuracy": numbers}}


def stage_pairs(config: dict, root: Path) -> dict:
    """Pairs curated by the critic, as the paper does; `curation.judge = "oracle"` curates by the world's oracles
    instead: what a perfect critic would give, to tell the critic's share of a result from the rest of the method's."""
    candidates = root / "candidates" / "train" / "candidates.jsonl"
    argv = ["--candidates", str(candidates), "--out", str(root / "pairs"), "--margin", str(config["curation"]["margin"]),
            "--rule", config["curation"]["rule"], "--max-pairs-per-condition", str(config["curation"]["max_pairs_per_condition"])]
    if config["curation"]["judge"] == "oracle":
        argv += ["--scores", str(oracle_judgements(config, root))]
    else:
        argv += ["--critic-base", str(critic_base_dir(config, root)),
                 "--critic-lora", str(root / "critic" / "run" / "critic_lora.safetensors")]
    call(curate_pairs, argv)
    counts = {d: len((root / "pairs" / f"pairs_{d}.jsonl").read_text().splitlines()) for d in DIMENSION_NAMES}
    empty = [d for d, n in counts.items() if n == 0]
    if empty:
        raise InputError(f"the critic gave no {', '.join(empty)} pairs; raise world.train_conditions or candidates.samples, "
                         "or lower curation.margin")
    return counts


def oracle_judgements(config: dict, root: Path) -> Path:
    """The oracles' scores of every training candidate (made once): a judge for `curation.judge = "oracle"`, and
    otherwise the measure of how often the critic's pairs are right."""
    path = root / "pairs" / "oracle_judgements.jsonl"
    if not path.is_file():
        candidates = root / "candidates" / "train" / "candidates.jsonl"
        by_id = {c["id"]: c for c in conditions(root, "train")}
        judgements = [{"id": c["id"], "scores": oracle_scores(candidates.parent / c["video"], by_id[c["condition"]],
                                                              config["world"]["frames"])}
                      for c in read_jsonl(candidates, ("id", "video", "condition"))]
        write_text_atomic(path, "".join(json.dumps(j) + "\n" for j in judgements))
    return path


def scores_by_id(path: Path) -> dict[str, dict[str, float]]:
    """A judgements file (the oracles' or the critic's) as clip id -> scores per dimension."""
    return {r["id"]: r["scores"] for r in read_jsonl(path, ("id", "scores"))}


def pair_agreement(config: dict, root: Path) -> dict[str, float]:
    """Per dimension, the share of curated pairs whose winner the oracles also score higher."""
    truth = scores_by_id(oracle_judgements(config, root))
    shares = {}
    for d in DIMENSION_NAMES:
        pairs = read_jsonl(root / "pairs" / f"pairs_{d}.jsonl", ("winner", "loser"))
        shares[d] = float(np.mean([truth[p["winner"]][d] > truth[p["loser"]][d] for p in pairs])) if pairs else float("nan")
    return shares


def training_candidates_by_condition(root: Path, fields: tuple[str, ...]) -> list[list[dict]]:
    """The training candidates' records (id, condition and `fields`), grouped by condition."""
    groups = {}
    for c in read_jsonl(root / "candidates" / "train" / "candidates.jsonl", ("id", "condition", *fields)):
        groups.setdefault(c["condition"], []).append(c)
    return list(groups.values())


def ordering_agreement(config: dict, root: Path) -> dict[str, float]:
    """Per dimension, over every pair of a training condition's candidates whose oracle scores differ by at least the
    curation margin, the share the critic's P(Yes) orders the oracles' way (a tie counts half; 50% is chance): how well
    the critic ranks, whichever pairs the curation rule then keeps."""
    truth = scores_by_id(oracle_judgements(config, root))
    judged = scores_by_id(root / "pairs" / "scores.jsonl")
    by_condition = [[c["id"] for c in group] for group in training_candidates_by_condition(root, ())]
    shares = {}
    for d in DIMENSION_NAMES:
        clear = [(a, b) for ids in by_condition for a, b in itertools.combinations(ids, 2)
                 if abs(truth[a][d] - truth[b][d]) >= config["curation"]["margin"]]
        better_first = [(a, b) if truth[a][d] > truth[b][d] else (b, a) for a, b in clear]
        shares[d] = (train_critic.ordered_share([judged[a][d] for a, _ in better_first], [judged[b][d] for _, b in better_first])
                     if clear else float("nan"))
    return shares


def stage_cache(config: dict, root: Path) -> dict:
    by_id = {c["id"]: c for c in conditions(root, "train")}
    folder = root / "candidates" / "train"
    clips = [{"id": c["id"], "video": f"train/{c['video']}", "condition": c["condition"], "prompt": DEFAULT_PROMPT,
              "image": f"../conditions/{by_id[c['condition']]['image']}"}
             for c in read_jsonl(folder / "candidates.jsonl", ("id", "video", "condition"))]
    manifest = write_text_atomic(root / "candidates" / "clips.jsonl", "".join(json.dumps(c) + "\n" for c in clips))
    call(preprocess, ["--clips", str(manifest), "--out", str(root / "cache"), "--model-dir", config["run"]["model"],
                      "--frames", str(config["world"]["frames"]), "--fps", str(FPS), "--lip-mask", "world"])
    return {"clips": len(clips)}


def expert_file(root: Path, name: str) -> Path:
    return root / "experts" / name / f"expert_{name}.safetensors"


def train_one_expert(config: dict, root: Path, name: str, pairs: list[str], output: Path, settings: dict) -> Path:
    """One Flow-DPO expert by train_expert.py; `settings` is the [experts] table (an ablation changes some)."""
    e = settings
    toml = write_toml(output.parent / f"expert_{output.name}.toml", {
        "model": {"folder": str(resolve_model(config))},
        "expert": {"dimension": name, "rank": e["rank"], "alpha": e["alpha"], "lip_mask": e["lip_mask"]},
        "data": {"cache": str(root / "cache"), "pairs": pairs},
        "train": {"output": str(output), "steps": e["steps"], "batch_size": e["batch_size"], "lr": e["lr"],
                  "beta": e["beta"], "winner_penalty": e["winner_penalty"], "seed": config["run"]["seed"],
                  "checkpoint_every": max(1, e["steps"] // 3),
                  "sigma_max": e["sigma_max"]},
    })
    finish(run(train_expert.main, train_expert.SCHEMA, ["--config", str(toml)]), f"train_expert {name}")
    return output / f"expert_{name}.safetensors"


def stage_experts(config: dict, root: Path) -> dict:
    pairs = {d: str(root / "pairs" / f"pairs_{d}.jsonl") for d in DIMENSION_NAMES}
    seconds = {}
    for name in EXPERTS:
        started = time.perf_counter()
        train_one_expert(config, root, name, list(pairs.values()) if name == "pooled" else [pairs[name]],
                         root / "experts" / name, config["experts"])
        seconds[name] = round(time.perf_counter() - started, 1)
    return {"seconds": seconds}


def stage_gate(config: dict, root: Path) -> dict:
    g = config["gate"]
    toml = write_toml(root / "configs" / "gate.toml", {
        "model": {"folder": str(resolve_model(config))},
        "gate": {"experts": {d: str(expert_file(root, d)) for d in DIMENSION_NAMES}, "embed_dim": g["embed_dim"],
                 "min_period": g["min_period"]},
        "data": {"cache": str(root / "cache"), "pairs": {d: str(root / "pairs" / f"pairs_{d}.jsonl") for d in DIMENSION_NAMES}},
        "train": {"output": str(root / "gate"), "steps": g["steps"], "batch_size": g["batch_size"], "lr": g["lr"], "beta": g["beta"],
                  "winner_penalty": g["winner_penalty"], "seed": config["run"]["seed"], "checkpoint_every": max(1, g["steps"] // 3)},
    })
    finish(run(train_gate.main, train_gate.SCHEMA, ["--config", str(toml)]), "train_gate")
    return {}


def resolve_model(config: dict) -> Path:
    return miniature_model_dir() if config["run"]["model"] == "miniature" else resolve(config["run"]["model"])


def stage_evaluate(config: dict, root: Path) -> dict:
    pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(resolve_model(config)))
    experts = {name: Expert(name, load_lora(expert_file(root, name))) for name in EXPERTS}
    gate = load_gate(root / "gate" / "gate.safetensors", pipe.model.num_layers)
    trio = [experts[d] for d in DIMENSION_NAMES]
    rows = {"base": ([], None), **{f"{d} expert alone": ([experts[d]], None) for d in DIMENSION_NAMES},
            "static equal merge (1/3 each)": (trio, StaticMix([1 / 3] * 3)), "pooled single LoRA": ([experts["pooled"]], None),
            "TLPO (experts + trained gate)": (trio, gate)}
    results = oracle_results(config, root, pipe, rows)
    heatmap = render_gate(gate, pipe.model.num_layers, gate.experts)
    Image.fromarray(heatmap).save(root / "gate_heatmap.png")
    grid = gate_weights_grid(gate, pipe.model.num_layers, torch.linspace(1000, 0, 11)).tolist()
    return {"results": results, "gate_grid": grid, "gate_experts": list(gate.experts)}


def oracle_results(config: dict, root: Path, pipe, rows: dict, heldout: int | None = None) -> dict[str, list[dict]]:
    """Each row (experts, mix) animates the first `heldout` held-out conditions once per evaluation seed; the oracles
    score every video against the condition's true clip."""
    frames, d = config["world"]["frames"], pipe.defaults
    results = {name: [] for name in rows}
    for condition in conditions(root, "heldout")[:heldout]:
        clip = true_clip(condition["seed"], frames)
        image = load_image(root / "conditions" / condition["image"])
        for seed in config["evaluate"]["seeds"]:
            options = SamplerOptions(steps=config["evaluate"]["steps"], cfg=d["cfg"], audio_cfg=d["audio_cfg"], shift=d["shift"],
                                     seed=int(seed))
            for name, (chosen, mix) in rows.items():
                video = pipe.animate(image, clip.audio, DEFAULT_PROMPT, options=options, num_frames=frames, fps=FPS,
                                     experts=chosen, gate=mix).frames.numpy()
                s = score_clip(video, clip.audio, FPS, clip.portrait, clip.frames)
                results[name].append({"condition": condition["id"], "seed": int(seed), **s.by_dimension()})
    return results


STAGE_FUNCTIONS = {"conditions": stage_conditions, "candidates": stage_candidates, "critic_base": stage_critic_base,
                   "critic": stage_critic,
                   "pairs": stage_pairs, "cache": stage_cache, "experts": stage_experts, "gate": stage_gate,
                   "evaluate": stage_evaluate}


# ------------------------------------------------------------------ report
def summary_rows(results: dict) -> dict:
    table = {}
    for name, items in results.items():
        values = {d: np.array([i[d] for i in items]) for d in DIMENSION_NAMES}
        per_seed = {d: sorted({i["seed"] for i in items}) for d in values}
        table[name] = {d: {"mean": float(v.mean()), "std": float(v.std()),
                           "seed_means": [float(np.mean([i[d] for i in items if i["seed"] == s])) for s in per_seed[d]]}
                       for d, v in values.items()}
    return table


def paired(results: dict, row: str, against: str, dimension: str) -> tuple[float, float]:
    """Mean and standard error of row - against over the same (condition, seed) videos."""
    theirs = {(r["condition"], r["seed"]): r[dimension] for r in results[against]}
    differences = np.array([r[dimension] - theirs[(r["condition"], r["seed"])] for r in results[row]])
    spread = differences.std(ddof=1) / np.sqrt(len(differences)) if len(differences) > 1 else float("nan")
    return float(differences.mean()), float(spread)


def paired_lines(results: dict) -> list[str]:
    """Each row against the base on the same videos: differences far smaller than the videos' spread still show."""
    lines = ["| row | " + " | ".join(f"Δ {LABELS[d]}" for d in DIMENSION_NAMES) + " |", "|---|---|---|---|"]
    for name in results:
        if name != "base":
            lines.append(f"| {name} | " + " | ".join("{:+.3f} ± {:.3f}".format(*paired(results, name, "base", d))
                                                     for d in DIMENSION_NAMES) + " |")
    return lines


def verdicts(table: dict, results: dict) -> list[str]:
    base, tlpo = table["base"], table["TLPO (experts + trained gate)"]
    merge, pooled = table["static equal merge (1/3 each)"], table["pooled single LoRA"]
    lines = []
    for d in DIMENSION_NAMES:
        best = max(table, key=lambda name: table[name][d]["mean"])
        lines.append(f"- {d}: best row is '{best}'; its own expert {'is' if best == f'{d} expert alone' else 'is not'} the best row.")
    up = [d for d in DIMENSION_NAMES if tlpo[d]["mean"] > base[d]["mean"]]
    differences = {d: paired(results, "TLPO (experts + trained gate)", "base", d) for d in up}
    clear = [d for d in up if differences[d][0] > 2 * differences[d][1]]
    lines.append(f"- TLPO improves on the base in {len(up)} of 3 dimensions ({', '.join(up) or 'none'}); by more than "
                 f"two standard errors of the paired difference in {len(clear)} ({', '.join(clear) or 'none'}).")
    for other, name in ((merge, "the static merge"), (pooled, "the pooled LoRA")):
        wins = [d for d in DIMENSION_NAMES if tlpo[d]["mean"] > other[d]["mean"]]
        lines.append(f"- TLPO beats {name} in {len(wins)} of 3 dimensions ({', '.join(wins) or 'none'}).")
    return lines


def candidate_tradeoffs(config: dict, root: Path) -> dict[str, float]:
    """Correlations across the training candidates, each condition's mean removed, of the oracles' scores with each
    other and with the audio guidance they were sampled with: pairs only teach what varies within a condition, so a
    negative correlation between two dimensions is a trade the experts learn too."""
    truth = scores_by_id(oracle_judgements(config, root))
    groups = [np.array([[c["audio_cfg"], *(truth[c["id"]][d] for d in DIMENSION_NAMES)] for c in group])
              for group in training_candidates_by_condition(root, ("audio_cfg",))]
    centred = np.concatenate([rows - rows.mean(axis=0) for rows in groups])
    r = np.corrcoef(centred, rowvar=False)
    names = ["audio guidance", *DIMENSION_NAMES]
    return {f"{names[i]} / {names[j]}": float(r[i, j]) for i, j in itertools.combinations(range(len(names)), 2)}


def describe_gate(grid: list, experts: list[str]) -> str:
    weights = np.array(grid)  # [experts, layers, 11 timesteps from 1000 to 0]
    parts = []
    for k, name in enumerate(experts):
        early, late = weights[k, :, :4].mean(), weights[k, :, -4:].mean()
        parts.append(f"{name}: {early:.2f} at t 1000-700, {late:.2f} at t 300-0 (layers {weights[k].mean(axis=1).min():.2f}"
                     f"-{weights[k].mean(axis=1).max():.2f})")
    return "; ".join(parts)


def largest_gate_step(root: Path) -> float:
    """The largest change of any gate weight between neighbouring integer timesteps: how jumpy the gate is in t."""
    weights = load_gate(root / "gate" / "gate.safetensors")(torch.arange(0.0, 1001.0)).detach()
    return float((weights[1:] - weights[:-1]).abs().max())


def report(config: dict, root: Path, stages: dict) -> str:
    results = stages["evaluate"]["results"]
    table = summary_rows(results)
    heldout, seeds = config["world"]["heldout_conditions"], config["evaluate"]["seeds"]
    lines = [f"TLPO in the miniature world: oracle scores on {heldout} held-out conditions x {len(seeds)} seeds "
             f"(mean ± std over the {heldout * len(seeds)} videos; per-seed means in the JSON).", "",
             f"Command: `python training/reproduce_tlpo.py {' '.join(sys.argv[1:])}`", "",
             "| row | " + " | ".join(LABELS[d] for d in DIMENSION_NAMES) + " |", "|---|---|---|---|"]
    for name, scores in table.items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[d]['mean']:.3f} ± {scores[d]['std']:.3f}"
                                                 for d in DIMENSION_NAMES) + " |")
    lines += ["", "Paired against the base (the same conditions and seeds; mean ± standard error of the difference):", "",
              *paired_lines(results), "", "What the numbers say:", *verdicts(table, results), "",
              f"Gate (heatmap: gate_heatmap.png; min_period {config['gate']['min_period']:g}): "
              f"{describe_gate(stages['evaluate']['gate_grid'], stages['evaluate']['gate_experts'])}; largest change between "
              f"neighbouring timesteps {largest_gate_step(root):.4f}.",
              "", "Talking-Critic:", "", (root / "critic" / "critic_table.md").read_text().strip(), "",
              f"Pairs curated by the {config['curation']['judge']} ({config['curation']['rule']} rule, margin {config['curation']['margin']}): "
              f"{json.dumps({d: stages['pairs'][d] for d in DIMENSION_NAMES})}; the oracles score the winner higher in "
              + ", ".join(f"{100 * v:.1f}% ({d})" for d, v in pair_agreement(config, root).items()) + " of them."
              + ("" if config["curation"]["judge"] == "oracle" else
                 f" Over every pair of a training condition's candidates whose oracle scores differ by at least "
                 f"{config['curation']['margin']}, the critic orders "
                 + ", ".join(f"{100 * v:.1f}% ({d})" for d, v in ordering_agreement(config, root).items())
                 + " the oracles' way (50% is chance)."), "",
              "Within a training condition (its mean removed), the oracles' scores of the candidates correlate: "
              + ", ".join(f"{k} {v:+.2f}" for k, v in candidate_tradeoffs(config, root).items()) + ".", "",
              "Wall time per stage (s, this machine): " + ", ".join(f"{s} {stages[s]['_seconds']:.0f}" for s in STAGES) + "."]
    return "\n".join(lines) + "\n"


# What each stage's output depends on besides the stages before it; another run's output is taken, in stage
# order, as long as these match.
REUSABLE = {"conditions": (("world",), ()), "candidates": (("candidates",), ("model", "seed")),
            "critic_base": (("critic_base",), ()), "critic": (("critic",), ()),
            "pairs": (("curation",), ()), "cache": ((), ()), "experts": (("experts",), ())}


def stage_inputs(config: dict, stage: str) -> dict:
    sections, run_keys = REUSABLE[stage]
    return {**{s: config[s] for s in sections}, **{f"run.{k}": config["run"][k] for k in run_keys}}


def recorded_config(run_folder: Path, what: str) -> dict:
    """A finished run's settings, with the defaults of options added since it ran (each default is the old behaviour)."""
    recorded = run_folder / "run_config.json"
    if not recorded.is_file():
        raise InputError(f"{what}: {run_folder} has no run_config.json; is it a reproduce_tlpo output folder?")
    raw = {k: v for k, v in json.loads(recorded.read_text()).items() if not k.startswith("_")}
    config, problems = check(raw, SCHEMA)
    if problems:
        raise InputError(f"{what}: {recorded}: {problems[0]}")
    return config


def reuse_stages(config: dict, root: Path) -> None:
    """Take the first stages of another run of the same world (`run.reuse`), up to the first whose settings differ:
    an ablation of the curation, the experts or the gate then runs only what it changes."""
    other = resolve(config["run"]["reuse"])
    theirs = recorded_config(other, "run.reuse")
    for stage in REUSABLE:
        if (root / "stages" / f"{stage}.json").is_file():
            continue
        if not (other / "stages" / f"{stage}.json").is_file() or stage_inputs(theirs, stage) != stage_inputs(config, stage):
            log.info("stage %s: %s differs or is not done there; not reused", stage, other)
            break  # later stages depend on this one
        link = root / stage
        if not link.exists() and (other / stage).exists():  # a skipped stage left no folder
            link.symlink_to((other / stage).resolve(), target_is_directory=True)
        write_text_atomic(root / "stages" / f"{stage}.json", (other / "stages" / f"{stage}.json").read_text())
        log.info("stage %s: reused from %s", stage, other)


def main(config: dict) -> Path:
    root = resolve(config["run"]["output"])
    root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(root / "run_config.json", json.dumps(config, indent=1))
    if config["run"]["reuse"]:
        reuse_stages(config, root)
    stages = {}
    for name in STAGES:
        marker = root / "stages" / f"{name}.json"
        if marker.is_file():
            stages[name] = json.loads(marker.read_text())
            log.info("stage %s: done before, skipped", name)
            continue
        log.info("stage %s", name)
        started = time.perf_counter()
        try:
            result = STAGE_FUNCTIONS[name](config, root)
        except ChainStopped as stopped:
            if stopped.code > 128:
                raise Stopped(stopped.code - 128, f"in stage {name}") from None
            raise InputError(str(stopped)) from None
        stages[name] = {**result, "_seconds": round(time.perf_counter() - started, 1)}
        write_text_atomic(marker, json.dumps(stages[name]))
    text = report(config, root, stages)
    out = write_text_atomic(root / "results.md", text)
    write_text_atomic(root / "results.json", json.dumps({"summary": summary_rows(stages["evaluate"]["results"]), "stages": stages}, indent=1))
    if config["run"]["results"]:
        target = resolve(config["run"]["results"])
        write_text_atomic(target.with_suffix(".md"), text)
        shutil.copyfile(root / "gate_heatmap.png", target.with_name(target.stem + "_gate.png"))
    print(text)
    return out


if __name__ == "__main__":
    raise SystemExit(run(main, SCHEMA))
