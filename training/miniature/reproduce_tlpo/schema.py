"""The chain's settings: its stages in order, the world's seed ranges per split, and the config schema."""
from __future__ import annotations

import hashlib
import json

from ft2_core.dimensions import DIMENSION_NAMES, POOLED
from ft2_core.miniature.world import HELD_OUT_SEEDS_FROM, VALIDATION_SEEDS_FROM
from ft2_core.tiny import CRITIC_SIZES
from training.common.config import Option

STAGES = ("conditions", "candidates", "critic_base", "critic", "pairs", "cache", "experts", "gate", "evaluate")

# World seed offsets: past VALIDATION_SEEDS_FROM for "validation", past HELD_OUT_SEEDS_FROM for the rest. The results
# table's conditions are one of the last three: "heldout" is where the earlier tables explored settings (they are
# exploration, not claims), settings are chosen on "validation", and "test" is scored once by the chosen config.
SPLITS = {"critic": 10_000, "train": 20_000, "pretrain": 40_000, "heldout": 30_000, "validation": 30_000, "test": 50_000}
RESULT_SPLITS = ("heldout", "validation", "test")

EXPERTS = (*DIMENSION_NAMES, POOLED)

SCHEMA = {
    "run": {
        "output": Option(str),
        "results": Option(str, ""),
        "seed": Option(int, 0, minimum=0),
        "model": Option(str, "miniature"),
        "reuse": Option(str, ""),
        # processes that sample the candidates, one thread each (1: this process, on every core); how the run works,
        # not what it makes (the same frames to float rounding, though their MP4s differ more: bench/candidate_speed.py),
        # so runs with other counts reuse each other's stages
        "processes": Option(int, 1, minimum=1),
    },
    "world": {
        "critic_conditions": Option(int, 24, minimum=2),
        "train_conditions": Option(int, 40, minimum=1),
        "heldout_conditions": Option(int, 16, minimum=1),
        "frames": Option(int, 33, minimum=5),
    },
    "candidates": {
        "samples": Option(int, 4, minimum=2),
        "cfg": Option(list, [1.0]),
        "audio_cfg": Option(list, [1.0, 2.0, 3.0, 5.0]),
        "steps": Option(int, 20, minimum=1),
    },
    "critic_base": {
        "conditions": Option(int, 0, minimum=0),
        "heldout_conditions": Option(int, 20, minimum=1),
        "steps": Option(int, 1000, minimum=1),
        "batch_size": Option(int, 16, minimum=1),
        "lr": Option(float, 1e-3, above=0),
        "thinker": Option(str, "random", choices=("random", "miniature")),
        # the random thinker's widths (ft2_core.tiny.CRITIC_SIZES): what this stage pretrains, or the LoRA's base
        # without it; the built-in "miniature" thinker is "tiny"
        "size": Option(str, "tiny", choices=tuple(CRITIC_SIZES)),
    },
    "critic": {
        "label_noise": Option(float, 0.1, minimum=0, maximum=0.5),
        "heldout_share": Option(float, 0.25, above=0, maximum=0.9),
        "steps": Option(int, 300, minimum=1),
        "batch_size": Option(int, 8, minimum=1),
        "lr": Option(float, 2e-3, above=0),
        "rank": Option(int, 8, minimum=1),
        "sample_fps": Option(float, 23.0, above=0),
        "max_frames": Option(int, 34, minimum=2),
        "min_side": Option(int, 112, minimum=28),
        "threshold_pool": Option(str, "all", choices=("all", "candidates")),
        "preferences": Option(bool, False),
        "preference_margin": Option(float, 0.02, minimum=0),
        "pair_batch_size": Option(int, 4, minimum=1),
    },
    "curation": {
        "margin": Option(float, 0.1, minimum=0, maximum=0.49),
        "max_pairs_per_condition": Option(int, 4, minimum=1),
        "rule": Option(str, "answer", choices=("answer", "ranking")),
        "judge": Option(str, "critic", choices=("critic", "oracle")),
        # "guidance": pairs only of candidates made at one audio cfg, so an expert cannot learn the guidance instead
        "pair_within": Option(str, "condition", choices=("condition", "guidance")),
    },
    "experts": {
        "rank": Option(int, 8, minimum=1),
        "alpha": Option(float, 8.0, above=0),
        "beta": Option(float, 500.0, above=0),
        "steps": Option(int, 150, minimum=1),
        "batch_size": Option(int, 4, minimum=1),
        "lr": Option(float, 1e-3, above=0),
        "lip_mask": Option(bool, True),
        "sigma_max": Option(float, 1.0, above=0, maximum=1),
        "winner_penalty": Option(float, 0.0, minimum=0),
    },
    "gate": {
        "steps": Option(int, 150, minimum=1),
        "batch_size": Option(int, 6, minimum=1),
        "lr": Option(float, 3e-4, above=0),
        "beta": Option(float, 500.0, above=0),
        "winner_penalty": Option(float, 0.0, minimum=0),
        "embed_dim": Option(int, 256, minimum=2),
        "min_period": Option(float, 0.0, minimum=0),
    },
    "evaluate": {
        "seeds": Option(list, [0, 1]),
        "steps": Option(int, 20, minimum=1),
        "split": Option(str, "heldout", choices=RESULT_SPLITS),  # the results table's conditions (see SPLITS)
    },
}


def world_seed(split: str, index: int) -> int:
    return (VALIDATION_SEEDS_FROM if split == "validation" else HELD_OUT_SEEDS_FROM) + SPLITS[split] + index


def video_settings(c: dict) -> dict:
    return {"sample_fps": c["sample_fps"], "max_frames": c["max_frames"], "min_pixels": c["min_side"] ** 2}


# Options added after tables were made, hashed only when set away from these values: older runs keep their hash.
HASHED_WHEN_CHANGED = {("critic_base", "size"): "tiny"}


def settings_hash(config: dict) -> str:
    """What a run's results depend on (every section but where it writes and which chain seed and result split it
    ran), hashed: runs of one config over several seeds and splits share it (loader-internal keys, "_...", left out)."""
    kept = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items() if k != "run" and not k.startswith("_")}
    for (section, key), value in HASHED_WHEN_CHANGED.items():
        if kept.get(section, {}).get(key, value) == value:
            kept.get(section, {}).pop(key, None)
    kept["run"] = {"model": config["run"]["model"]}
    kept["evaluate"] = {k: v for k, v in config["evaluate"].items() if k != "split"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]
