"""The choices the paper leaves open, decided by measurement: one expert retrained with one setting changed
(β, rank, the lip mask, the pair margin) on a finished reproduce_tlpo run's pairs and cache, and judged by the
world's oracles on its held-out conditions beside the base and the run's own expert.

    python -m training.miniature.ablate_tlpo --config training/miniature/configs/ablations.toml

Each variant is a table of [experts] keys to change (and `margin`, which re-curates the run's judgements);
finished variants are skipped on a rerun. Differences are paired (same conditions, same seeds) against the
run's own expert, with their standard error.
"""
from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np

from ft2_core.dimensions import DIMENSION_NAMES, LABELS
from ft2_core.errors import InputError
from ft2_core.io.atomic import write_text_atomic
from ft2_core.model_paths import ModelPaths
from ft2_core.pipeline import FantasyTalkingPipeline
from ft2_core.tlpo.experts import Expert
from ft2_core.tlpo.lora_formats import load_lora
from training import curate_pairs
from training.common.config import Option, resolve
from training.common.script import run
from training.miniature.reproduce_tlpo.report import paired
from training.miniature.reproduce_tlpo.runner import recorded_config
from training.miniature.reproduce_tlpo.stages import call, expert_file, resolve_model, train_one_expert
from training.miniature.reproduce_tlpo.world_data import TableRow, oracle_results

log = logging.getLogger("ft2.ablate")
CHANGEABLE = {
    "beta": float,
    "winner_penalty": float,
    "rank": int,
    "alpha": float,
    "lip_mask": bool,
    "steps": int,
    "lr": float,
    "margin": float,
}
SCHEMA = {
    "run": {"chain": Option(str), "output": Option(str), "results": Option(str, "")},
    "ablate": {
        "dimension": Option(str, "lipsync", choices=DIMENSION_NAMES),
        "heldout": Option(int, 12, minimum=1),
        "variants": Option(list, []),
    },
}


def check_variants(variants: list) -> list[dict]:
    checked = []
    for index, variant in enumerate(variants):
        if not isinstance(variant, dict) or not isinstance(variant.get("name"), str):
            raise InputError(f"ablate.variants[{index}]: expected a table with a name, got {variant!r}")
        unknown = [k for k in variant if k != "name" and k not in CHANGEABLE]
        if unknown:
            raise InputError(
                f"ablate.variants[{index}] ({variant['name']}): {unknown[0]!r} cannot be changed; one of {', '.join(CHANGEABLE)}"
            )
        if len(variant) < 2:
            raise InputError(f"ablate.variants[{index}] ({variant['name']}): changes nothing")
        checked.append({"name": variant["name"], **{k: CHANGEABLE[k](v) for k, v in variant.items() if k != "name"}})
    return checked


def variant_pairs(chain: Path, chain_config: dict, dimension: str, variant: dict, folder: Path) -> list[str]:
    """The run's pairs, or, for a margin, the run's judgements curated again with it (nothing is scored again)."""
    if "margin" not in variant:
        return [str(chain / "pairs" / f"pairs_{dimension}.jsonl")]
    judgements = (
        chain / "pairs" / ("oracle_judgements.jsonl" if chain_config["curation"]["judge"] == "oracle" else "scores.jsonl")
    )
    curation = chain_config["curation"]
    call(
        curate_pairs,
        [
            "--candidates",
            str(chain / "candidates" / "train" / "candidates.jsonl"),
            "--out",
            str(folder / "pairs"),
            "--scores",
            str(judgements),
            "--margin",
            str(variant["margin"]),
            "--rule",
            curation["rule"],
            "--max-pairs-per-condition",
            str(curation["max_pairs_per_condition"]),
        ],
    )
    return [str(folder / "pairs" / f"pairs_{dimension}.jsonl")]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def report(config: dict, chain_config: dict, results: dict, pair_counts: dict) -> str:
    dimension, own = config["ablate"]["dimension"], f"{config['ablate']['dimension']} expert of the run"
    e = chain_config["experts"]
    lines = [
        f"Ablations of the {dimension} expert on the pairs of `{config['run']['chain']}` (judge: "
        f"{chain_config['curation']['judge']}); run settings: beta {e['beta']}, rank {e['rank']}, lip mask {e['lip_mask']}, "
        f"margin {chain_config['curation']['margin']}, {e['steps']} steps. Oracle scores on {config['ablate']['heldout']} "
        f"held-out conditions x {len(chain_config['evaluate']['seeds'])} seeds (mean ± std); Δ is paired against the run's "
        "own expert (± standard error).",
        "",
        f"Command: `python -m training.miniature.ablate_tlpo {' '.join(sys.argv[1:])}`",
        "",
        "| row | pairs | "
        + " | ".join(LABELS[d] for d in DIMENSION_NAMES)
        + " | "
        + " | ".join(f"Δ {LABELS[d]}" for d in DIMENSION_NAMES)
        + " |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in pair_counts.keys() - results.keys():
        lines.append(f"| {name} | 0 | no pairs at this setting | | | | | |")
    for name, items in results.items():
        means = " | ".join(f"{np.mean([i[d] for i in items]):.3f} ± {np.std([i[d] for i in items]):.3f}" for d in DIMENSION_NAMES)
        deltas = " | ".join(
            "" if name in ("base", own) else "{:+.3f} ± {:.3f}".format(*paired(results, name, own, d)) for d in DIMENSION_NAMES
        )
        lines.append(f"| {name} | {pair_counts.get(name, '')} | {means} | {deltas} |")
    return "\n".join(lines) + "\n"


def ablate(config: dict) -> Path:
    chain, out = resolve(config["run"]["chain"]), resolve(config["run"]["output"])
    if not (chain / "stages" / "evaluate.json").is_file():
        raise InputError(f"run.chain: {chain} is not a finished reproduce_tlpo run (no stages/evaluate.json)")
    chain_config = recorded_config(chain, "run.chain")
    dimension, variants = config["ablate"]["dimension"], check_variants(config["ablate"]["variants"])
    pipe = FantasyTalkingPipeline.from_paths(ModelPaths.from_folder(resolve_model(chain_config)))
    own = f"{dimension} expert of the run"
    rows = {"base": None, own: expert_file(chain, dimension)}
    pair_counts = {own: len((chain / "pairs" / f"pairs_{dimension}.jsonl").read_text().splitlines())}
    for variant in variants:
        folder = out / slug(variant["name"])
        pairs = variant_pairs(chain, chain_config, dimension, variant, folder)
        pair_counts[variant["name"]] = len(Path(pairs[0]).read_text().splitlines())
        if not pair_counts[variant["name"]]:
            log.info("variant %s: no pairs, nothing to train", variant["name"])
            continue
        settings = {**chain_config["experts"], **{k: v for k, v in variant.items() if k not in ("name", "margin")}}
        if not (folder / "expert" / f"expert_{dimension}.safetensors").is_file():
            log.info("variant %s: training", variant["name"])
            train_one_expert(chain_config, chain, dimension, pairs, folder / "expert", settings)
        rows[variant["name"]] = folder / "expert" / f"expert_{dimension}.safetensors"
    results = {}
    for name, path in rows.items():
        saved = out / "scores" / f"{slug(name)}.json"
        if not saved.is_file():
            log.info("evaluating %s", name)
            chosen = [] if path is None else [Expert(dimension, load_lora(path))]
            found = oracle_results(chain_config, chain, pipe, {name: TableRow(chosen)}, config["ablate"]["heldout"])[name]
            write_text_atomic(saved, json.dumps(found))
        results[name] = json.loads(saved.read_text())
    text = report(config, chain_config, results, pair_counts)
    written = write_text_atomic(out / "ablations.md", text)
    if config["run"]["results"]:
        write_text_atomic(resolve(config["run"]["results"]).with_suffix(".md"), text)
    print(text)
    return written


def main(argv=None) -> int:
    """The command: `python -m training.miniature.ablate_tlpo --config FILE [--set KEY=VALUE ...]`."""
    return run(ablate, SCHEMA, argv)


if __name__ == "__main__":
    raise SystemExit(main())
