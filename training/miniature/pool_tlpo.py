"""One table from several reproduce_tlpo runs that differ only in their chain seed: each row's mean over the chains,
the spread across chains, and each row's difference from the base with an error clustered by condition and by
chain, so training variance is in it. A row "improves" on another only where every chain agrees in sign or the
pooled interval (2 standard errors) excludes zero.

    python -m training.miniature.pool_tlpo outputs/tlpo_validation_seed0 outputs/tlpo_validation_seed1 \\
        outputs/tlpo_validation_seed2 --out training/miniature/results/tlpo_validation
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from ft2_core.dimensions import DIMENSION_NAMES, LABELS
from ft2_core.errors import InputError
from ft2_core.miniature.oracles import PROTOCOL_VERSION
from training.common.script import reported
from training.miniature.reproduce_tlpo.report import candidate_tradeoffs
from training.miniature.reproduce_tlpo.runner import recorded_config
from training.miniature.reproduce_tlpo.schema import STAGES, settings_hash
from training.miniature.tables import command_line, write_result

BASE, TLPO = "base", "TLPO (experts + trained gate)"
MERGE, POOLED_LORA = "static equal merge (1/3 each)", "pooled single LoRA"
SECOND_MEASURE = "sync_confidence"


class Chain:
    """One finished run: its settings, its evaluation's videos, and what its stages recorded."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.config = recorded_config(folder, str(folder))
        self.stages = {}
        for stage in STAGES:
            marker = folder / "stages" / f"{stage}.json"
            if not marker.is_file():
                raise InputError(f"{folder}: stage {stage} has not finished (no {marker.name}); run the chain to its end")
            self.stages[stage] = json.loads(marker.read_text())
        self.results = self.stages["evaluate"]["results"]

    def by_condition(self, row: str, measure: str) -> dict[str, float]:
        """A row's score per condition, averaged over the run's sampling seeds."""
        values = {}
        for record in self.results[row]:
            values.setdefault(record["condition"], []).append(record[measure])
        return {c: float(np.mean(v)) for c, v in values.items()}


SAME_TO_ROUNDING = 1e-6  # scores are in 0..1: chains whose differences agree this closely made the same videos


def check_alike(chains: list[Chain]) -> None:
    hashes = {settings_hash(c.config) for c in chains}
    splits = {c.config["evaluate"]["split"] for c in chains}
    seeds = [c.config["run"]["seed"] for c in chains]
    if len(hashes) > 1 or len(splits) > 1:
        raise InputError(f"runs: they differ in more than their chain seed (settings {sorted(hashes)}, splits {sorted(splits)})")
    if len(set(seeds)) < len(seeds):
        raise InputError(f"runs: two runs share a chain seed ({seeds}); replicates need their own")
    rows = [set(c.results) for c in chains]
    if any(r != rows[0] for r in rows):
        raise InputError("runs: their results tables have different rows")


def differences(chains: list[Chain], row: str, against: str, measure: str) -> dict:
    per_chain = []
    for chain in chains:
        mine, theirs = chain.by_condition(row, measure), chain.by_condition(against, measure)
        per_chain.append({c: mine[c] - theirs[c] for c in mine})
    return pooled_difference(per_chain)


def pooled_difference(per_chain: list[dict[str, float]]) -> dict:
    """A difference given per chain and condition, pooled: its mean, and the mean's standard error from the spread of
    the chain means (training variance) plus the spread of the condition means (which conditions were drawn), each a
    cluster's variance over its count (slightly conservative; it needs no model of either). It holds where at least
    3 chains all agree in sign, or the interval of 2 standard errors excludes zero."""
    conditions = sorted(per_chain[0])
    table = np.array([[d[c] for c in conditions] for d in per_chain])  # [chains, conditions]
    chain_means, condition_means = table.mean(axis=1), table.mean(axis=0)
    variance = condition_means.var(ddof=1) / len(conditions) if len(conditions) > 1 else 0.0
    if len(per_chain) > 1:
        variance += chain_means.var(ddof=1) / len(per_chain)
    mean, error = float(table.mean()), float(np.sqrt(variance))
    # chains that all give the same difference (rows no chain trains, e.g. the base at another guidance) are one sample,
    # also where code versions left them apart by float rounding
    distinct = np.ptp(chain_means) > SAME_TO_ROUNDING
    unanimous = len(per_chain) >= 3 and distinct and ({int(np.sign(m)) for m in chain_means} in ({1}, {-1}))
    return {"mean": mean, "standard_error": error, "per_chain": [float(m) for m in chain_means],
            "holds": bool(unanimous or abs(mean) > 2 * error), "direction": "up" if mean > 0 else "down"}


def row_scores(chains: list[Chain], row: str, measure: str) -> dict:
    means = [float(np.mean(list(chain.by_condition(row, measure).values()))) for chain in chains]
    return {"mean": float(np.mean(means)), "across_chains": float(np.std(means, ddof=1)) if len(means) > 1 else 0.0,
            "per_chain": means}


def pooled(chains: list[Chain]) -> dict:
    rows = list(chains[0].results)
    measures = [*DIMENSION_NAMES, *([SECOND_MEASURE] if all(SECOND_MEASURE in r for r in chains[0].results[BASE]) else [])]
    scores = {row: {m: row_scores(chains, row, m) for m in measures} for row in rows}
    against_base = {row: {m: differences(chains, row, BASE, m) for m in measures} for row in rows if row != BASE}
    tlpo_against = {other: {m: differences(chains, TLPO, other, m) for m in measures} for other in (MERGE, POOLED_LORA)}
    critic = [chain.stages["critic"]["accuracy"] for chain in chains]
    critic_means = {judge: {subset: {d: float(np.mean([c[judge][subset][d] for c in critic])) for d in DIMENSION_NAMES}
                            for subset in critic[0][judge]} for judge in critic[0]}
    tradeoffs = [candidate_tradeoffs(chain.config, chain.folder) for chain in chains]
    return {
        "protocol": PROTOCOL_VERSION,
        "settings_hash": settings_hash(chains[0].config),
        "split": chains[0].config["evaluate"]["split"],
        "chain_seeds": [c.config["run"]["seed"] for c in chains],
        "conditions": len(chains[0].by_condition(BASE, DIMENSION_NAMES[0])),
        "sampling_seeds": chains[0].config["evaluate"]["seeds"],
        "measures": measures,
        "scores": scores,
        "against_base": against_base,
        "tlpo_against": tlpo_against,
        "critic": critic_means,
        "pairs": [{d: chain.stages["pairs"][d] for d in DIMENSION_NAMES} for chain in chains],
        "candidate_correlations": {k: [t[k] for t in tradeoffs] for k in tradeoffs[0]},
        "stage_seconds": [{s: chain.stages[s]["_seconds"] for s in STAGES} for chain in chains],
    }


def label(measure: str) -> str:
    return {**LABELS, SECOND_MEASURE: "sync confidence"}[measure]


def cell(d: dict) -> str:
    mark = "" if not d["holds"] else " ↑" if d["direction"] == "up" else " ↓"
    return f"{d['mean']:+.3f} ± {d['standard_error']:.3f} ({', '.join(f'{x:+.3f}' for x in d['per_chain'])}){mark}"


def claims(numbers: dict) -> list[str]:
    """The paper's claims, each against what held here."""
    scores, against, beats = numbers["scores"], numbers["against_base"], numbers["tlpo_against"]
    compared = [r for r in scores if not r.startswith("base at")]
    lines = []
    for d in DIMENSION_NAMES:
        best = max(compared, key=lambda r: scores[r][d]["mean"])
        own = against[f"{d} expert alone"][d]
        lines.append(f"- Each expert best on its own dimension — {d}: the best row is '{best}'; its own expert against the "
                     f"base {cell(own)}{' (holds)' if own['holds'] and own['direction'] == 'up' else ' (does not hold)'}.")
    up = [d for d in DIMENSION_NAMES if against[TLPO][d]["holds"] and against[TLPO][d]["direction"] == "up"]
    down = [d for d in DIMENSION_NAMES if against[TLPO][d]["holds"] and against[TLPO][d]["direction"] == "down"]
    lines.append(f"- TLPO at least the base on all three: above it where it holds in {', '.join(up) or 'none'}; below it where "
                 f"it holds in {', '.join(down) or 'none'}; {'claim holds' if not down else 'claim fails'}.")
    for other, name in ((MERGE, "the static merge"), (POOLED_LORA, "the pooled LoRA")):
        wins = [d for d in DIMENSION_NAMES if beats[other][d]["holds"] and beats[other][d]["direction"] == "up"]
        lines.append(f"- TLPO above {name} on at least two: in {len(wins)} ({', '.join(wins) or 'none'}); "
                     f"{'claim holds' if len(wins) >= 2 else 'claim fails'}.")
    return lines


def markdown(numbers: dict, command: str) -> str:
    measures = numbers["measures"]
    header = "| row | " + " | ".join(label(m) for m in measures) + " |"
    rule = "|---" * (1 + len(measures)) + "|"
    lines = [
        f"TLPO in the miniature world over {len(numbers['chain_seeds'])} chain seeds {numbers['chain_seeds']} (candidates, "
        f"critic, experts and gate each trained anew): oracle scores (protocol {numbers['protocol']}) on "
        f"{numbers['conditions']} conditions of the {numbers['split']} split x sampling seeds {numbers['sampling_seeds']}. "
        f"Settings hash {numbers['settings_hash']}.",
        "",
        f"Command: `{command}`",
        "",
        "Mean over the chains of each chain's mean (± the standard deviation of the chain means):",
        "",
        header,
        rule,
        *(f"| {row} | " + " | ".join(f"{s[m]['mean']:.3f} ± {s[m]['across_chains']:.3f}" for m in measures) + " |"
          for row, s in numbers["scores"].items()),
        "",
        "Against the base: pooled difference ± standard error (clustered by condition and by chain), then each chain's "
        "difference; ↑ / ↓ where all chains (at least 3) agree in sign or the pooled interval (2 SE) excludes zero:",
        "",
        header,
        rule,
        *(f"| {row} | " + " | ".join(cell(d[m]) for m in measures) + " |" for row, d in numbers["against_base"].items()),
        "",
        "TLPO against the other ways to combine the experts (TLPO minus the row), as above:",
        "",
        header,
        rule,
        *(f"| TLPO - {row} | " + " | ".join(cell(d[m]) for m in measures) + " |" for row, d in numbers["tlpo_against"].items()),
        "",
        "The paper's claims here:",
        *claims(numbers),
        "",
        "Talking-Critic, mean over the chains (held-out accuracy against the oracle; last rows: held-out candidate pairs "
        "ordered the oracles' way, 50% is chance):",
        "",
        "| judge | clips | " + " | ".join(LABELS[d] for d in DIMENSION_NAMES) + " |",
        "|---|---|---|---|---|",
        *(f"| {judge} | {subset} | " + " | ".join(f"{100 * v[d]:.1f}%" for d in DIMENSION_NAMES) + " |"
          for judge, subsets in numbers["critic"].items() for subset, v in subsets.items()),
        "",
        "Pairs curated per chain: " + "; ".join(json.dumps(p) for p in numbers["pairs"]) + ".",
        "",
        "Within a training condition, correlations of the candidates' oracle scores (per chain): "
        + "; ".join(f"{k} {', '.join(f'{v:+.2f}' for v in values)}" for k, values in numbers["candidate_correlations"].items())
        + ".",
        "",
        "Wall time per stage (s, this machine), per chain: "
        + "; ".join(", ".join(f"{s} {t:.0f}" for s, t in times.items()) + f" (total {sum(times.values()):.0f})"
                    for times in numbers["stage_seconds"]) + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished reproduce_tlpo output folders, one per chain seed")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.md and OUT.json")
    args = parser.parse_args(argv)
    try:
        chains = [Chain(folder) for folder in args.runs]
        check_alike(chains)
        numbers = pooled(chains)
        text = write_result(args.out, numbers, markdown(numbers, command_line("training.miniature.pool_tlpo", argv)))
    except InputError as err:
        return reported(err)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
