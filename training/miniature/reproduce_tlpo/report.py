"""The chain's tables and what they say: the results table with each row paired against the base, the critic table,
the curated pairs' agreement with the oracles, the candidates' trade-offs, and the gate."""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ft2_core.dimensions import DIMENSION_NAMES, LABELS
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import read_video
from ft2_core.miniature.oracles import PROTOCOL_VERSION
from ft2_core.scoring.critic import TalkingCritic, VideoSettings
from ft2_core.scoring.proxy_metrics import ProxyScorer
from ft2_core.tiny import tiny_critic_dir
from ft2_core.tlpo.gate import load_gate
from training.common.metrics import ordered_share
from training.miniature.reproduce_tlpo.schema import STAGES, settings_hash, video_settings
from training.miniature.reproduce_tlpo.world_data import (
    conditions,
    oracle_judgements,
    scores_by_id,
    sync_model_for,
    training_candidates_by_condition,
    true_clip,
)
from training.miniature.tables import score_table


def critic_table(config: dict, root: Path, base: Path, answers: dict) -> dict:
    """Held-out accuracy against the oracle, on the generated candidates (what curation judges) and on every
    held-out clip, and how often the score orders two held-out candidates of a condition the oracles' way (what
    curation needs), over all such pairs and over those of one audio guidance (the pairs `curation.pair_within`
    keeps): trained critic, the thinker it started from, the random thinker, majority-answer baseline, and two simple
    judges of the ordering (`simple_judges`). `answers` is `raters.rater_answers`."""
    c = config["critic"]
    train_lines, heldout_lines, heldout_pairs = answers["train_lines"], answers["heldout_lines"], answers["heldout_pairs"]
    majority = np.array([np.mean([line[d] == "Yes" for line in train_lines]) >= 0.5 for d in DIMENSION_NAMES])
    truth = np.array([[line[d] == "Yes" for d in DIMENSION_NAMES] for line in heldout_lines])
    candidate = np.array([line["kind"] == "candidate" for line in heldout_lines])
    said = {"majority answer of the training labels": np.repeat(majority[None], len(heldout_lines), axis=0)}
    probabilities = {"majority answer of the training labels": np.full((len(heldout_lines), len(DIMENSION_NAMES)), 0.5)}
    size = config["critic_base"]["size"]
    judges = {f"random {size} thinker (no training)": (tiny_critic_dir(size=size), None)}
    if base != tiny_critic_dir(size=size):
        judges["world-pretrained thinker (no LoRA)"] = (base, None)
    judges["Talking-Critic (its base + trained LoRA)"] = (base, root / "critic" / "run" / "critic_lora.safetensors")
    videos = {line["video"]: read_video(root / "critic" / line["video"]) for line in heldout_lines}  # read once
    features = None  # the same for every judge (same frame sampling and audio features): prepared once
    for name, (base, lora) in judges.items():
        critic = TalkingCritic.from_folder(base, lora)
        critic.settings = VideoSettings(**video_settings(c))
        if features is None:
            features = [critic.features(*videos[line["video"]], line["video"]) for line in heldout_lines]
        scores = critic.score(features, batch_size=4)
        probabilities[name] = np.array([[s[d] for d in DIMENSION_NAMES] for s in scores])
        said[name] = probabilities[name] >= 0.5
    scores = {name: {line["video"]: p[r] for r, line in enumerate(heldout_lines)} for name, p in probabilities.items()}
    guidance = candidate_guidance(root)
    scores.update(simple_judges(config, root, answers, videos, guidance))
    pair_sets = {"held-out candidate pairs ordered": heldout_pairs,
                 "held-out pairs of one audio guidance ordered": [
                     x for x in heldout_pairs if guidance[x["chosen"]] == guidance[x["rejected"]]]}
    counts = {subset: "/".join(str(sum(x["dimension"] == d for x in pairs)) for d in DIMENSION_NAMES)
              for subset, pairs in pair_sets.items()}
    lines = [f"Held-out accuracy against the oracle, in the form of the paper's Table 1 ({int(candidate.sum())} generated "
             f"candidates, {len(heldout_lines)} clips in all, from {c['heldout_share']:.0%} of the critic conditions; the "
             f"critic's training answers were flipped with probability {c['label_noise']}). Last rows: the share of "
             f"held-out pairs of one condition's candidates (oracle scores at least {c['preference_margin']} apart; "
             f"{counts['held-out candidate pairs ordered']} pairs per dimension, of which "
             f"{counts['held-out pairs of one audio guidance ordered']} of one audio guidance) that the judge's score "
             "orders the oracles' way (a tie counts half):", "",
             "| judge | clips | " + " | ".join(LABELS[d] for d in DIMENSION_NAMES) + " |", "|---|---|---|---|---|"]
    numbers = {}
    for name, answer in said.items():
        correct = answer == truth
        for subset, rows in (("generated candidates", candidate), ("all held-out clips", np.ones_like(candidate))):
            accuracy = correct[rows].mean(axis=0)
            numbers.setdefault(name, {})[subset] = dict(zip(DIMENSION_NAMES, map(float, accuracy)))
            lines.append(f"| {name} | {subset} | " + " | ".join(f"{100 * a:.1f}%" for a in accuracy) + " |")
    for subset, pairs in pair_sets.items():
        for name, score in scores.items():
            ordering = {}
            for k, d in enumerate(DIMENSION_NAMES):
                chosen_rejected = [(score[x["chosen"]][k], score[x["rejected"]][k]) for x in pairs if x["dimension"] == d
                                   and np.isfinite([score[x["chosen"]][k], score[x["rejected"]][k]]).all()]
                ordering[d] = ordered_share(*zip(*chosen_rejected)) if chosen_rejected else float("nan")
            numbers.setdefault(name, {})[subset] = ordering
            lines.append(f"| {name} | {subset} | " + " | ".join(f"{100 * ordering[d]:.1f}%" for d in DIMENSION_NAMES) + " |")
    return {"markdown": "\n".join(lines) + "\n", "numbers": {"accuracy": numbers}}


def candidate_guidance(root: Path) -> dict[str, float]:
    """The audio guidance each critic candidate was sampled at, by its path in the raters' files."""
    listed = read_jsonl(root / "candidates" / "critic" / "candidates.jsonl", ("video", "audio_cfg"))
    return {f"../candidates/critic/{c['video']}": float(c["audio_cfg"]) for c in listed}


def simple_judges(config: dict, root: Path, answers: dict, videos: dict, guidance: dict[str, float]
                  ) -> dict[str, dict[str, np.ndarray]]:
    """Two simple judges of the held-out candidates, as clip -> [3] scores, neither trained on the raters' data: the
    weight-free proxies (`proxy_metrics`: motion and quality; its lip-sync needs a real face) with the sync model's
    confidence for lip-sync; and the audio guidance a candidate was sampled at, counted better or worse per dimension
    as most of the raters' training choices between two guidance levels say (it knows nothing within one level).
    `videos`: each held-out clip's `read_video`; `guidance`: `candidate_guidance`."""
    frames, proxies = config["world"]["frames"], ProxyScorer()
    sync = sync_model_for(frames)  # None for clips too short: no lip-sync score
    by_id = {c["id"]: c for c in conditions(root, "critic")}
    measured = {}
    for line in answers["heldout_lines"]:
        if line["kind"] != "candidate":
            continue
        pixels, fps, audio = videos[line["video"]]
        pixels = pixels[:frames].astype(np.float32) / 255
        proxy = proxies.score_clip(pixels, fps, audio)
        confidence = (sync.read(pixels, audio, fps, true_clip(by_id[line["condition"]]["seed"], frames).portrait).confidence
                      if sync else float("nan"))
        measured[line["video"]] = np.array([confidence if d == "lipsync" else proxy[d] for d in DIMENSION_NAMES])
    direction = np.zeros(len(DIMENSION_NAMES))
    for pair in answers["train_pairs"]:  # +1 each time the higher guidance was chosen, -1 the lower
        direction[DIMENSION_NAMES.index(pair["dimension"])] += np.sign(guidance[pair["chosen"]] - guidance[pair["rejected"]])
    return {"simple: weight-free proxies, the sync model's confidence for lip-sync": measured,
            "simple: the audio guidance it was sampled at (its sign per dimension from the raters' choices)":
                {video: np.sign(direction) * guidance[video] for video in measured}}


def pair_agreement(config: dict, root: Path) -> dict[str, float]:
    """Per dimension, the share of curated pairs whose winner the oracles also score higher."""
    truth = scores_by_id(oracle_judgements(config, root))
    shares = {}
    for d in DIMENSION_NAMES:
        pairs = read_jsonl(root / "pairs" / f"pairs_{d}.jsonl", ("winner", "loser"))
        shares[d] = float(np.mean([truth[p["winner"]][d] > truth[p["loser"]][d] for p in pairs])) if pairs else float("nan")
    return shares


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
        shares[d] = (ordered_share([judged[a][d] for a, _ in better_first], [judged[b][d] for _, b in better_first])
                     if clear else float("nan"))
    return shares


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


def sync_lines(results: dict) -> list[str]:
    """The second lip-sync measure per row (ft2_core.miniature.sync_model), where the clips were long enough for it."""
    if not all("sync_confidence" in r for items in results.values() for r in items):
        return []
    lines = ["", "Second lip-sync measure (the sync model's confidence, mean ± std over videos; its offset should be 0):", "",
             "| row | sync confidence | mean abs sync offset (frames) |", "|---|---|---|"]
    for name, items in results.items():
        confidence = np.array([r["sync_confidence"] for r in items])
        offset = np.mean([abs(r["sync_offset"]) for r in items])
        lines.append(f"| {name} | {confidence.mean():.3f} ± {confidence.std():.3f} | {offset:.2f} |")
    return lines


def verdicts(table: dict, results: dict) -> list[str]:
    base, tlpo = table["base"], table["TLPO (experts + trained gate)"]
    merge, pooled = table["static equal merge (1/3 each)"], table["pooled single LoRA"]
    lines = []
    for d in DIMENSION_NAMES:
        best = max(table, key=lambda name: table[name][d]["mean"])
        lines.append(
            f"- {d}: best row is '{best}'; its own expert {'is' if best == f'{d} expert alone' else 'is not'} the best row."
        )
    up = [d for d in DIMENSION_NAMES if tlpo[d]["mean"] > base[d]["mean"]]
    differences = {d: paired(results, "TLPO (experts + trained gate)", "base", d) for d in up}
    clear = [d for d in up if differences[d][0] > 2 * differences[d][1]]
    lines.append(
        f"- TLPO improves on the base in {len(up)} of 3 dimensions ({', '.join(up) or 'none'}); by more than "
        f"two standard errors of the paired difference in {len(clear)} ({', '.join(clear) or 'none'})."
    )
    for other, name in ((merge, "the static merge"), (pooled, "the pooled LoRA")):
        wins = [d for d in DIMENSION_NAMES if tlpo[d]["mean"] > other[d]["mean"]]
        lines.append(f"- TLPO beats {name} in {len(wins)} of 3 dimensions ({', '.join(wins) or 'none'}).")
    return lines


def candidate_tradeoffs(config: dict, root: Path) -> dict[str, float]:
    """Correlations across the training candidates, each condition's mean removed, of the oracles' scores with each
    other and with the audio guidance they were sampled with: pairs only teach what varies within a condition, so a
    negative correlation between two dimensions is a trade the experts learn too."""
    truth = scores_by_id(oracle_judgements(config, root))
    groups = [
        np.array([[c["audio_cfg"], *(truth[c["id"]][d] for d in DIMENSION_NAMES)] for c in group])
        for group in training_candidates_by_condition(root, ("audio_cfg",))
    ]
    centred = np.concatenate([rows - rows.mean(axis=0) for rows in groups])
    r = np.corrcoef(centred, rowvar=False)
    names = ["audio guidance", *DIMENSION_NAMES]
    return {f"{names[i]} / {names[j]}": float(r[i, j]) for i, j in itertools.combinations(range(len(names)), 2)}


def describe_gate(grid: list, experts: list[str]) -> str:
    weights = np.array(grid)  # [experts, layers, 11 timesteps from 1000 to 0]
    parts = []
    for k, name in enumerate(experts):
        early, late = weights[k, :, :4].mean(), weights[k, :, -4:].mean()
        parts.append(
            f"{name}: {early:.2f} at t 1000-700, {late:.2f} at t 300-0 (layers {weights[k].mean(axis=1).min():.2f}"
            f"-{weights[k].mean(axis=1).max():.2f})"
        )
    return "; ".join(parts)


def largest_gate_step(root: Path) -> float:
    """The largest change of any gate weight between neighbouring integer timesteps: how jumpy the gate is in t."""
    weights = load_gate(root / "gate" / "gate.safetensors")(torch.arange(0.0, 1001.0)).detach()
    return float((weights[1:] - weights[:-1]).abs().max())


def report(config: dict, root: Path, stages: dict) -> str:
    results = stages["evaluate"]["results"]
    table = summary_rows(results)
    heldout, seeds = config["world"]["heldout_conditions"], config["evaluate"]["seeds"]
    lines = [
        f"TLPO in the miniature world: oracle scores (protocol {PROTOCOL_VERSION}) on {heldout} conditions of the "
        f"{config['evaluate']['split']} split x {len(seeds)} sampling seeds (mean ± std over the {heldout * len(seeds)} "
        f"videos; per-seed means in the JSON). Chain seed {config['run']['seed']}, settings hash {settings_hash(config)}.",
        "",
        f"Command: `python -m training.miniature.reproduce_tlpo {' '.join(sys.argv[1:])}`",
        "",
        *score_table(table),
        *sync_lines(results),
    ]
    lines += [
        "",
        "Paired against the base (the same conditions and seeds; mean ± standard error of the difference):",
        "",
        *paired_lines(results),
        "",
        "What the numbers say:",
        *verdicts(table, results),
        "",
        f"Gate (heatmap: gate_heatmap.png; min_period {config['gate']['min_period']:g}): "
        f"{describe_gate(stages['evaluate']['gate_grid'], stages['evaluate']['gate_experts'])}; largest change between "
        f"neighbouring timesteps {largest_gate_step(root):.4f}.",
        "",
        "Talking-Critic:",
        "",
        (root / "critic" / "critic_table.md").read_text().strip(),
        "",
        f"Pairs curated by the {config['curation']['judge']} ({config['curation']['rule']} rule, "
        f"margin {config['curation']['margin']}): "
        f"{json.dumps({d: stages['pairs'][d] for d in DIMENSION_NAMES})}; the oracles score the winner higher in "
        + ", ".join(f"{100 * v:.1f}% ({d})" for d, v in pair_agreement(config, root).items())
        + " of them."
        + (
            ""
            if config["curation"]["judge"] == "oracle"
            else f" Over every pair of a training condition's candidates whose oracle scores differ by at least "
            f"{config['curation']['margin']}, the critic orders "
            + ", ".join(f"{100 * v:.1f}% ({d})" for d, v in ordering_agreement(config, root).items())
            + " the oracles' way (50% is chance)."
        ),
        "",
        "Within a training condition (its mean removed), the oracles' scores of the candidates correlate: "
        + ", ".join(f"{k} {v:+.2f}" for k, v in candidate_tradeoffs(config, root).items())
        + ".",
        "",
        "Wall time per stage (s, this machine): " + ", ".join(f"{s} {stages[s]['_seconds']:.0f}" for s in STAGES) + ".",
    ]
    return "\n".join(lines) + "\n"
