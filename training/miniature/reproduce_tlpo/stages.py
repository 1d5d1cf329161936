"""The chain's stages, each a function of (config, run folder) that returns what its marker file records."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from PIL import Image

from ft2_core.dimensions import DIMENSION_NAMES
from ft2_core.errors import InputError
from ft2_core.io.atomic import write_text_atomic
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import write_mp4
from ft2_core.miniature.model import miniature_critic_dir, miniature_model_dir
from ft2_core.miniature.world import DEGRADATIONS, FPS, HURTS, degrade, make_clip
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.sampling.options import DEFAULT_PROMPT
from ft2_core.tiny import tiny_critic_dir
from ft2_core.tlpo.experts import Expert
from ft2_core.tlpo.gate import StaticMix, load_gate
from ft2_core.tlpo.gate_plot import gate_weights_grid, render_gate
from ft2_core.tlpo.lora_formats import load_lora
from training import curate_pairs, generate_candidates, preprocess, train_critic, train_expert, train_gate
from training.common.config import resolve
from training.common.distributed import cpu_launch
from training.common.interrupts import StopRequests
from training.miniature.reproduce_tlpo.raters import rater_answers
from training.miniature.reproduce_tlpo.report import critic_table
from training.miniature.reproduce_tlpo.schema import EXPERTS, RESULT_SPLITS, video_settings, world_seed
from training.miniature.reproduce_tlpo.world_data import TableRow, conditions, oracle_judgements, oracle_results, true_clip

# the miniature model fits whole batches: no recomputation, no rows one at a time (the same gradient, faster)
WHOLE_BATCHES = {"micro_batch_size": 0, "rows_at_a_time": False, "gradient_checkpointing": False}
BASE_AUDIO_CFG = (1.0, 3.0, 5.0)  # the base's rows in the results table, beside its default guidance


class ChainStopped(Exception):
    def __init__(self, code: int, what: str):
        self.code = code
        super().__init__(f"stage command failed (exit {code}): {what}")


def call(script, argv: list[str]) -> None:
    """Run one of the project's training commands in-process (its `main(argv)`, as `python -m` would); a failure
    stops the chain with its exit code."""
    code = script.main(argv)
    if code:
        raise ChainStopped(code, f"{script.__name__} {' '.join(argv)}")


def launch(script, argv: list[str], processes: int) -> None:
    """Run a data script that splits its items over the processes of an `accelerate launch` (gloo) on `processes` CPU
    processes of one thread each, or in-process (`call`) for one: on this world's small models two one-thread
    processes make more videos a second than one process on two threads (bench/candidate_speed.py)."""
    if processes == 1:
        return call(script, argv)
    command, env = cpu_launch(script.__name__, argv, processes)
    with StopRequests() as stop:  # Ctrl-C reaches the processes too: each stops after its current item, then we do
        code = subprocess.run(command, env=env).returncode
    if stop.signum is not None or code:
        code = 128 + stop.signum if stop.signum is not None else 128 - code if code < 0 else code
        raise ChainStopped(code, f"{processes} processes of {script.__name__} {' '.join(argv)}")


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

def resolve_model(config: dict) -> Path:
    return miniature_model_dir() if config["run"]["model"] == "miniature" else resolve(config["run"]["model"])

def critic_base_dir(config: dict, root: Path) -> Path:
    """The thinker the critic's LoRA starts from: pretrained in this world by this run, the built-in one pretrained
    the same way (`critic_base.thinker = "miniature"`, saves that stage's 20 minutes), or the random one of its size."""
    b = config["critic_base"]
    if b["conditions"]:
        return root / "critic_base" / "run" / "thinker"
    if b["thinker"] == "miniature":
        if b["size"] != "tiny":
            raise InputError(f'critic_base.size = "{b["size"]}": the built-in thinker (critic_base.thinker = "miniature") '
                             'is "tiny"; pretrain one of this size with critic_base.conditions > 0')
        return miniature_critic_dir()
    return tiny_critic_dir(size=b["size"])

def expert_file(root: Path, name: str) -> Path:
    return root / "experts" / name / f"expert_{name}.safetensors"


def stage_conditions(config: dict, root: Path) -> dict:
    frames = config["world"]["frames"]
    counts = {"critic": config["world"]["critic_conditions"], "train": config["world"]["train_conditions"],
              **{split: config["world"]["heldout_conditions"] for split in RESULT_SPLITS}}
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
        launch(generate_candidates, argv, config["run"]["processes"])
        made[split] = len(read_jsonl(root / "candidates" / split / "candidates.jsonl", ("id",)))
    return made

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
            kinds = (
                ["ground truth", *DEGRADATIONS]
                if split == "heldout"
                else ["ground truth", DEGRADATIONS[rng.integers(len(DEGRADATIONS))]]
            )
            for kind in kinds:
                name = f"clips/p{index:05d}_{kind.replace(' ', '_')}.mp4"
                if not (folder / name).is_file():
                    pixels, audio = (clip.frames, clip.audio) if kind == "ground truth" else degrade(clip, kind, rng, other.audio)
                    write_mp4(folder / name, pixels, FPS, audio)
                hurt = HURTS.get(kind, ())
                lines[split].append({"video": name, **{d: "No" if d in hurt else "Yes" for d in DIMENSION_NAMES}})
    for split, records in lines.items():
        write_text_atomic(folder / f"labels_{split}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    toml = write_toml(
        root / "configs" / "critic_base.toml",
        {
            "model": {"folder": str(tiny_critic_dir(size=b["size"]))},
            "lora": {"rank": 0},
            "video": video_settings(config["critic"]),
            "data": {"train": str(folder / "labels_train.jsonl"), "heldout": str(folder / "labels_heldout.jsonl")},
            "train": {
                "output": str(folder / "run"),
                "steps": b["steps"],
                "batch_size": b["batch_size"],
                "lr": b["lr"],
                "seed": config["run"]["seed"],
                "checkpoint_every": max(1, b["steps"] // 4),
                "eval_every": max(1, b["steps"] // 4),
            },
        },
    )
    call(train_critic, ["--config", str(toml)])
    log_lines = read_jsonl(folder / "run" / "metrics.jsonl")
    return {
        "train_clips": len(lines["train"]),
        "heldout_clips": len(lines["heldout"]),
        "heldout_accuracy": [r["heldout_accuracy"] for r in log_lines if "heldout_accuracy" in r][-1],
    }


def stage_critic(config: dict, root: Path) -> dict:
    """Talking-Critic trained on the raters' answers (and, with `critic.preferences`, their choices), then judged on
    held-out clips against the thinker it started from."""
    c = config["critic"]
    answers = rater_answers(config, root)
    train_lines, heldout_lines = answers["train_lines"], answers["heldout_lines"]
    train_pairs, heldout_pairs = answers["train_pairs"], answers["heldout_pairs"]
    labels = root / "critic"  # video paths in the label files are relative to them
    write_text_atomic(labels / "labels_train.jsonl", "".join(json.dumps(r) + "\n" for r in train_lines))
    write_text_atomic(labels / "labels_heldout.jsonl", "".join(json.dumps(r) + "\n" for r in heldout_lines))
    write_text_atomic(labels / "preferences_train.jsonl", "".join(json.dumps(r) + "\n" for r in train_pairs))
    write_text_atomic(labels / "preferences_heldout.jsonl", "".join(json.dumps(r) + "\n" for r in heldout_pairs))
    data = {"train": str(labels / "labels_train.jsonl"), "heldout": str(labels / "labels_heldout.jsonl")}
    if c["preferences"] and train_pairs:
        data.update(train_pairs=str(labels / "preferences_train.jsonl"), heldout_pairs=str(labels / "preferences_heldout.jsonl"))
    elif c["preferences"]:
        raise InputError(
            "critic.preferences: no two candidates of a critic condition differ by critic.preference_margin; "
            "lower it or raise world.critic_conditions"
        )
    toml = write_toml(
        root / "configs" / "critic.toml",
        {
            "model": {"folder": str(critic_base_dir(config, root))},
            "lora": {"rank": c["rank"], "alpha": 2.0 * c["rank"]},
            "video": video_settings(c),
            "data": data,
            "train": {
                "output": str(root / "critic" / "run"),
                "steps": c["steps"],
                "batch_size": c["batch_size"],
                "lr": c["lr"],
                "pair_batch_size": c["pair_batch_size"],
                "seed": config["run"]["seed"],
                "checkpoint_every": max(1, c["steps"] // 3),
                "eval_every": max(1, c["steps"] // 3),
            },
        },
    )
    call(train_critic, ["--config", str(toml)])
    table = critic_table(config, root, critic_base_dir(config, root), answers)
    write_text_atomic(root / "critic" / "critic_table.md", table["markdown"])
    return {
        "thresholds": answers["thresholds"],
        "train_clips": len(train_lines),
        "heldout_clips": len(heldout_lines),
        "train_preferences": len(train_pairs) if c["preferences"] else 0,
        **table["numbers"],
    }


def stage_pairs(config: dict, root: Path) -> dict:
    """Pairs curated by the critic, as the paper does; `curation.judge = "oracle"` curates by the world's oracles
    instead: what a perfect critic would give, to tell the critic's share of a result from the rest of the method's."""
    candidates = root / "candidates" / "train" / "candidates.jsonl"
    argv = [
        "--candidates",
        str(candidates),
        "--out",
        str(root / "pairs"),
        "--margin",
        str(config["curation"]["margin"]),
        "--rule",
        config["curation"]["rule"],
        "--max-pairs-per-condition",
        str(config["curation"]["max_pairs_per_condition"]),
        "--pair-within",
        config["curation"]["pair_within"],
    ]
    if config["curation"]["judge"] == "oracle":
        argv += ["--scores", str(oracle_judgements(config, root))]
    else:
        argv += [
            "--critic-base",
            str(critic_base_dir(config, root)),
            "--critic-lora",
            str(root / "critic" / "run" / "critic_lora.safetensors"),
        ]
    call(curate_pairs, argv)
    counts = {d: len((root / "pairs" / f"pairs_{d}.jsonl").read_text().splitlines()) for d in DIMENSION_NAMES}
    empty = [d for d, n in counts.items() if n == 0]
    if empty:
        raise InputError(
            f"the critic gave no {', '.join(empty)} pairs; raise world.train_conditions or candidates.samples, "
            "or lower curation.margin"
        )
    return counts


def stage_cache(config: dict, root: Path) -> dict:
    by_id = {c["id"]: c for c in conditions(root, "train")}
    folder = root / "candidates" / "train"
    clips = [
        {
            "id": c["id"],
            "video": f"train/{c['video']}",
            "condition": c["condition"],
            "prompt": DEFAULT_PROMPT,
            "image": f"../conditions/{by_id[c['condition']]['image']}",
        }
        for c in read_jsonl(folder / "candidates.jsonl", ("id", "video", "condition"))
    ]
    manifest = write_text_atomic(root / "candidates" / "clips.jsonl", "".join(json.dumps(c) + "\n" for c in clips))
    call(
        preprocess,
        [
            "--clips",
            str(manifest),
            "--out",
            str(root / "cache"),
            "--model-dir",
            config["run"]["model"],
            "--frames",
            str(config["world"]["frames"]),
            "--fps",
            str(FPS),
            "--lip-mask",
            "world",
        ],
    )
    return {"clips": len(clips)}


def train_one_expert(config: dict, root: Path, name: str, pairs: list[str], output: Path, settings: dict) -> Path:
    """One Flow-DPO expert by train_expert.py; `settings` is the [experts] table (an ablation changes some)."""
    e = settings
    toml = write_toml(
        output.parent / f"expert_{output.name}.toml",
        {
            "model": {"folder": str(resolve_model(config))},
            "expert": {"dimension": name, "rank": e["rank"], "alpha": e["alpha"], "lip_mask": e["lip_mask"]},
            "data": {"cache": str(root / "cache"), "pairs": pairs},
            "train": {
                "output": str(output),
                "steps": e["steps"],
                "batch_size": e["batch_size"],
                "lr": e["lr"],
                "beta": e["beta"],
                "winner_penalty": e["winner_penalty"],
                "seed": config["run"]["seed"],
                "checkpoint_every": max(1, e["steps"] // 3),
                **WHOLE_BATCHES,
                "sigma_max": e["sigma_max"],
            },
        },
    )
    call(train_expert, ["--config", str(toml)])
    return output / f"expert_{name}.safetensors"


def stage_experts(config: dict, root: Path) -> dict:
    pairs = {d: str(root / "pairs" / f"pairs_{d}.jsonl") for d in DIMENSION_NAMES}
    seconds = {}
    for name in EXPERTS:
        started = time.perf_counter()
        train_one_expert(
            config,
            root,
            name,
            list(pairs.values()) if name == "pooled" else [pairs[name]],
            root / "experts" / name,
            config["experts"],
        )
        seconds[name] = round(time.perf_counter() - started, 1)
    return {"seconds": seconds}


def stage_gate(config: dict, root: Path) -> dict:
    g = config["gate"]
    toml = write_toml(
        root / "configs" / "gate.toml",
        {
            "model": {"folder": str(resolve_model(config))},
            "gate": {
                "experts": {d: str(expert_file(root, d)) for d in DIMENSION_NAMES},
                "embed_dim": g["embed_dim"],
                "min_period": g["min_period"],
            },
            "data": {
                "cache": str(root / "cache"),
                "pairs": {d: str(root / "pairs" / f"pairs_{d}.jsonl") for d in DIMENSION_NAMES},
            },
            "train": {
                "output": str(root / "gate"),
                "steps": g["steps"],
                "batch_size": g["batch_size"],
                "lr": g["lr"],
                "beta": g["beta"],
                "winner_penalty": g["winner_penalty"],
                "seed": config["run"]["seed"],
                "checkpoint_every": max(1, g["steps"] // 3),
                **WHOLE_BATCHES,
            },
        },
    )
    call(train_gate, ["--config", str(toml)])
    return {}


def stage_evaluate(config: dict, root: Path) -> dict:
    pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(resolve_model(config)))
    experts = {name: Expert(name, load_lora(expert_file(root, name))) for name in EXPERTS}
    gate = load_gate(root / "gate" / "gate.safetensors", pipe.model.num_layers)
    trio = [experts[d] for d in DIMENSION_NAMES]
    default_cfg = pipe.defaults["audio_cfg"]
    rows = {
        "base": TableRow([]),
        # what guidance alone does, beside what the experts do (the candidates were sampled at several audio cfg)
        **{f"base at audio cfg {g:g}": TableRow([], None, g) for g in BASE_AUDIO_CFG if g != default_cfg},
        **{f"{d} expert alone": TableRow([experts[d]]) for d in DIMENSION_NAMES},
        "static equal merge (1/3 each)": TableRow(trio, StaticMix([1 / 3] * 3)),
        "pooled single LoRA": TableRow([experts["pooled"]]),
        "TLPO (experts + trained gate)": TableRow(trio, gate),
    }
    results = oracle_results(config, root, pipe, rows)
    heatmap = render_gate(gate, pipe.model.num_layers, gate.experts)
    Image.fromarray(heatmap).save(root / "gate_heatmap.png")
    grid = gate_weights_grid(gate, pipe.model.num_layers, torch.linspace(1000, 0, 11)).tolist()
    return {"results": results, "gate_grid": grid, "gate_experts": list(gate.experts)}


STAGE_FUNCTIONS = {
    "conditions": stage_conditions,
    "candidates": stage_candidates,
    "critic_base": stage_critic_base,
    "critic": stage_critic,
    "pairs": stage_pairs,
    "cache": stage_cache,
    "experts": stage_experts,
    "gate": stage_gate,
    "evaluate": stage_evaluate,
}
