"""A shortened TLPO chain on the shipped miniature model: every stage runs and feeds the next."""
import json
import shutil

import numpy as np
import pytest

from ft2_core.errors import InputError
from ft2_core.io.jsonl import read_jsonl
from ft2_core.io.video_io import read_video, write_mp4
from ft2_core.miniature.world import DEGRADATIONS, FPS, HELD_OUT_SEEDS_FROM, VALIDATION_SEEDS_FROM, degrade
from ft2_core.scoring.proxy_metrics import ProxyScorer
from ft2_core.tlpo.gate import load_gate
from ft2_core.tlpo.lora_formats import load_lora
from tests.training.conftest import write_config
from tests.training.miniature.conftest import SHORT
from training.miniature import ablate_tlpo
from training.miniature.reproduce_tlpo import raters, refresh_critic, report, runner, schema
from training.miniature.reproduce_tlpo import stages as chain_stages
from training.miniature.reproduce_tlpo.world_data import conditions, oracle_scores, true_clip


def test_every_stage_produces_what_the_next_consumes(chain):
    tmp_path, config = chain
    root = tmp_path / "run"
    stages = {p.stem: json.loads(p.read_text()) for p in (root / "stages").glob("*.json")}
    assert set(stages) == set(schema.STAGES) and all(s["_seconds"] >= 0 for s in stages.values())
    assert stages["candidates"] == {"critic": 4, "train": 8, "_seconds": stages["candidates"]["_seconds"]}
    # sampled by two processes (run.processes), each condition by one: the manifest lists rank 0's, then rank 1's
    made = [json.loads(line)["id"] for line in (root / "candidates" / "train" / "candidates.jsonl").read_text().splitlines()]
    assert made == [f"train{c:03d}_{k}" for c in (0, 2, 1, 3) for k in (0, 1)]
    assert stages["critic"]["train_clips"] + stages["critic"]["heldout_clips"] == 2 * 2 + 2 * 7  # candidates + true/damaged
    # the critic's base: the whole thinker trained on world clips (true + one damage each; held out: every damage)
    assert stages["critic_base"]["train_clips"] == 2 * 2 and stages["critic_base"]["heldout_clips"] == 7
    base = root / "critic_base" / "run" / "thinker"
    assert (base / "config.json").is_file() and (base / "ft2_video_settings.json").is_file()
    assert str(base) in (root / "configs" / "critic.toml").read_text()
    # preferences: the training condition's two candidates, one pair per dimension; the held-out ones are measured
    assert (
        stages["critic"]["train_preferences"] == 3 and "preferences_train.jsonl" in (root / "configs" / "critic.toml").read_text()
    )
    assert len((root / "critic" / "preferences_heldout.jsonl").read_text().splitlines()) == 3
    assert (
        "| Talking-Critic (its base + trained LoRA) | held-out candidate pairs ordered |"
        in (root / "critic" / "critic_table.md").read_text()
    )
    assert all(stages["pairs"][d] > 0 for d in ("motion", "lipsync", "quality"))
    for name in schema.EXPERTS:
        assert load_lora(chain_stages.expert_file(root, name)).metadata["ft2.dimension"] == name
    assert load_gate(root / "gate" / "gate.safetensors", 4).experts == ("motion", "lipsync", "quality")
    results = stages["evaluate"]["results"]
    assert len(results) == 9 and all(len(rows) == 3 for rows in results.values())  # 3 validation conditions, 1 seed
    assert {"base at audio cfg 1", "base at audio cfg 5"} < set(results)  # the base at its default 3 is "base"
    assert {r["condition"] for r in results["base"]} == {"validation000", "validation001", "validation002"}
    table = (tmp_path / "results" / "tlpo.md").read_text()
    assert table.count("\n| ") >= 7 + 6 and (tmp_path / "results" / "tlpo_gate.png").is_file()
    # the oracles measure the critic's pairs (they never curate them here)
    assert "the oracles score the winner higher in" in table and (root / "pairs" / "oracle_judgements.jsonl").is_file()
    assert "the oracles' way (50% is chance)" in table
    # resumable: a second run skips every stage and rewrites the same table
    assert runner.main(["--config", str(config)]) == 0
    assert (tmp_path / "results" / "tlpo.md").read_text().split("Wall time")[0] == table.split("Wall time")[0]


GUIDANCE_JUDGE = "simple: the audio guidance it was sampled at (its sign per dimension from the raters' choices)"
PROXY_JUDGE = "simple: weight-free proxies, the sync model's confidence for lip-sync"


def test_the_critic_table_orders_held_out_pairs_by_two_simple_judges(chain):
    """Checked against a plain computation from the run's files: the guidance judge (the sign of the raters' training
    choices between levels) and the proxies' motion and quality; lip-sync has no sync reading on 17 frames."""
    root = chain[0] / "run"
    numbers = json.loads((root / "stages" / "critic.json").read_text())["accuracy"]
    guidance = {f"../candidates/critic/{c['video']}": c["audio_cfg"]
                for c in read_jsonl(root / "candidates" / "critic" / "candidates.jsonl")}
    train, held = (read_jsonl(root / "critic" / f"preferences_{split}.jsonl") for split in ("train", "heldout"))
    proxies = ProxyScorer()
    for d in ("motion", "lipsync", "quality"):
        votes = sum((guidance[p["chosen"]] > guidance[p["rejected"]]) - (guidance[p["chosen"]] < guidance[p["rejected"]])
                    for p in train if p["dimension"] == d)
        outcomes = []
        for p in (p for p in held if p["dimension"] == d):
            higher_chosen = guidance[p["chosen"]] > guidance[p["rejected"]]
            outcomes.append(0.5 if votes == 0 or guidance[p["chosen"]] == guidance[p["rejected"]]
                            else float(higher_chosen == (votes > 0)))
        assert outcomes and numbers[GUIDANCE_JUDGE]["held-out candidate pairs ordered"][d] == np.mean(outcomes)
        if d == "lipsync":
            assert np.isnan(numbers[PROXY_JUDGE]["held-out candidate pairs ordered"][d])
            continue
        scored = {}
        for video in {v for p in held for v in (p["chosen"], p["rejected"])}:
            frames, fps, audio = read_video(root / "critic" / video)
            scored[video] = proxies.score_clip(frames[:SHORT["world"]["frames"]].astype(np.float32) / 255, fps, audio)[d]
        plain = [1.0 if scored[p["chosen"]] > scored[p["rejected"]] else 0.5 if scored[p["chosen"]] == scored[p["rejected"]]
                 else 0.0 for p in held if p["dimension"] == d]
        assert numbers[PROXY_JUDGE]["held-out candidate pairs ordered"][d] == np.mean(plain)
    # each held-out condition has one candidate per guidance level here: no pair of one level to order
    assert all(np.isnan(v) for judge in numbers.values() for v in judge["held-out pairs of one audio guidance ordered"].values())


def test_refresh_critic_remakes_a_finished_runs_table_from_its_own_data(chain, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(chain[0] / "run", run)
    recorded = json.loads((run / "run_config.json").read_text())
    recorded["run"]["results"] = str(tmp_path / "results" / "refreshed")
    (run / "run_config.json").write_text(json.dumps(recorded))
    marker = run / "stages" / "critic.json"
    before = marker.read_text()
    held = run / "critic" / "labels_heldout.jsonl"  # as runs wrote it before the lines named their condition
    held.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "condition"}) + "\n" for r in read_jsonl(held)))
    assert refresh_critic.main([str(run)]) == 0
    assert marker.read_text() == before  # the same critic, the same data: the same numbers
    assert "simple: weight-free proxies" in (tmp_path / "results" / "refreshed.md").read_text()
    answers = read_jsonl(held)
    answers[0]["motion"] = "No" if answers[0]["motion"] == "Yes" else "Yes"
    held.write_text("".join(json.dumps(r) + "\n" for r in answers))
    assert refresh_critic.main([str(run)]) == 2  # data the raters would not give: refused, nothing rewritten
    assert marker.read_text() == before


@pytest.fixture(scope="module")
def oracle_chain(chain, tmp_path_factory):
    """The same chain with pairs curated by the oracles (a perfect critic), its first stages reused from `chain`."""
    first, _ = chain
    tmp_path = tmp_path_factory.mktemp("oracle")
    config = write_config(
        tmp_path / "oracle.toml",
        {
            "run": {"output": str(tmp_path / "run"), "reuse": str(first / "run")},
            **SHORT,
            "curation": {"rule": "ranking", "margin": 0.0, "judge": "oracle"},
        },
    )
    assert runner.main(["--config", str(config)]) == 0
    return tmp_path


def test_a_run_on_another_result_split_reuses_every_stage_but_the_evaluation(chain, tmp_path):
    first, _ = chain
    config = write_config(tmp_path / "test_split.toml", {
        "run": {"output": str(tmp_path / "run"), "reuse": str(first / "run")}, **SHORT,
        "evaluate": {**SHORT["evaluate"], "split": "test"}})
    assert runner.main(["--config", str(config)]) == 0
    root = tmp_path / "run"
    assert all((root / stage).is_symlink() for stage in ("candidates", "critic", "pairs", "cache", "experts", "gate"))
    results = json.loads((root / "stages" / "evaluate.json").read_text())["results"]
    assert {r["condition"] for r in results["base"]} == {"test000", "test001", "test002"}
    validation, test = (schema.world_seed(split, 0) for split in ("validation", "test"))
    assert validation >= VALIDATION_SEEDS_FROM > test >= HELD_OUT_SEEDS_FROM  # the world's own split ranges
    header = (root / "results.md").read_text().splitlines()[0]
    assert "test split" in header and schema.settings_hash(runner.recorded_config(first / "run", "x")) in header


def test_an_oracle_judged_run_reuses_the_first_stages_of_another(chain, oracle_chain, tmp_path):
    first, _ = chain
    root = oracle_chain / "run"
    for stage in ("conditions", "candidates", "critic_base", "critic"):
        assert (root / stage).is_symlink()
        assert (root / "stages" / f"{stage}.json").read_text() == (first / "run" / "stages" / f"{stage}.json").read_text()
    assert not (root / "pairs").is_symlink()  # the curation differs: pairs and what follows are made here
    judged = [json.loads(line) for line in (root / "pairs" / "oracle_judgements.jsonl").read_text().splitlines()]
    assert len(judged) == 8 and all(0 <= v <= 1 for j in judged for v in j["scores"].values())
    assert not (root / "pairs" / "scores.jsonl").exists()  # the critic scored nothing
    assert "Pairs curated by the oracle" in (root / "results.md").read_text()
    # a run whose candidates would differ reuses only what still matches: the conditions
    partial = json.loads((first / "run" / "run_config.json").read_text())
    partial["candidates"] = {**partial["candidates"], "steps": 4}
    partial["run"] = {**partial["run"], "reuse": str(first / "run")}
    (tmp_path / "partial").mkdir()
    runner.reuse_stages(partial, tmp_path / "partial")
    assert sorted(p.name for p in (tmp_path / "partial").iterdir()) == ["conditions", "stages"]


def test_ablations_retrain_one_expert_per_variant_and_compare_paired(chain, tmp_path):
    first, _ = chain
    config = chain_stages.write_toml(
        tmp_path / "ablate.toml",
        {
            "run": {"chain": str(first / "run"), "output": str(tmp_path / "out"), "results": str(tmp_path / "ablations")},
            "ablate": {
                "dimension": "lipsync",
                "heldout": 1,
                "variants": [
                    {"name": "lip mask off", "lip_mask": False},
                    {"name": "margin 0.3", "margin": 0.3},
                    {"name": "winner penalty 5", "winner_penalty": 5.0},
                ],
            },
        },
    )
    assert ablate_tlpo.main(["--config", str(config)]) == 0
    table = (tmp_path / "ablations.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| row")]
    assert sorted(r.split(" | ")[0] for r in rows) == [
        "| base",
        "| lip mask off",
        "| lipsync expert of the run",
        "| margin 0.3",
        "| winner penalty 5",
    ]
    margin_row = next(r for r in rows if r.startswith("| margin 0.3"))
    margin_pairs = (tmp_path / "out" / "margin_0_3" / "pairs" / "pairs_lipsync.jsonl").read_text().splitlines()
    assert margin_row.split(" | ")[1] == str(len(margin_pairs)) and (not margin_pairs) == ("no pairs" in margin_row)
    meta = load_lora(tmp_path / "out" / "lip_mask_off" / "expert" / "expert_lipsync.safetensors").metadata
    assert meta["ft2.dimension"] == "lipsync"
    assert "winner_penalty = 5.0" in (tmp_path / "out" / "winner_penalty_5" / "expert_expert.toml").read_text()
    bad = chain_stages.write_toml(
        tmp_path / "bad.toml",
        {
            "run": {"chain": str(first / "run"), "output": str(tmp_path / "bad")},
            "ablate": {"variants": [{"name": "x", "gate_form": 1}]},
        },
    )
    assert ablate_tlpo.main(["--config", str(bad)]) == 2


def test_rated_clips_scored_in_threads_are_those_drawn_and_scored_one_by_one(chain, tmp_path):
    first, _ = chain
    config = runner.recorded_config(first / "run", "chain")
    root = tmp_path / "run"
    (root / "critic").mkdir(parents=True)
    for stage in ("conditions", "candidates"):
        (root / stage).symlink_to(first / "run" / stage)
    rated = raters.rated_clips(config, root)
    # the plain way: every candidate scored in turn, then the damage drawn from one generator in order, each clip
    # written and scored before the next is drawn
    frames, folder = config["world"]["frames"], root / "candidates" / "critic"
    by_id = {c["id"]: c for c in conditions(root, "critic")}
    plain = [{"video": f"../candidates/critic/{c['video']}", "condition": c["condition"], "kind": "candidate",
              "oracle": oracle_scores(folder / c["video"], by_id[c["condition"]], frames)}
             for c in read_jsonl(folder / "candidates.jsonl")]
    rng = np.random.default_rng(config["run"]["seed"])
    critic_conditions = conditions(root, "critic")
    for index, condition in enumerate(critic_conditions):
        clip = true_clip(condition["seed"], frames)
        other = true_clip(critic_conditions[(index + 1) % len(critic_conditions)]["seed"], frames).audio
        for kind in ("ground truth", *DEGRADATIONS):
            pixels, audio = (clip.frames, clip.audio) if kind == "ground truth" else degrade(clip, kind, rng, other)
            path = write_mp4(tmp_path / "plain" / f"{condition['id']}_{kind.replace(' ', '_')}.mp4", pixels, FPS, audio)
            plain.append({"video": f"clips/{path.name}", "condition": condition["id"], "kind": kind,
                          "oracle": oracle_scores(path, condition, frames)})
    assert rated == plain and len(rated) == 2 * 2 + 2 * (1 + len(DEGRADATIONS))


def test_answer_thresholds_are_medians_over_the_chosen_pool():
    scores = [("candidate", 0.2), ("candidate", 0.4), ("candidate", 0.6), ("blur", 0.9), ("noise", 0.95)]
    records = [{"kind": kind, "oracle": {d: value for d in ("motion", "lipsync", "quality")}} for kind, value in scores]
    assert raters.answer_thresholds(records, "all") == {"motion": 0.6, "lipsync": 0.6, "quality": 0.6}
    assert raters.answer_thresholds(records, "candidates") == {"motion": 0.4, "lipsync": 0.4, "quality": 0.4}


def test_clear_pairs_are_a_condition_s_candidates_far_enough_apart_better_first():
    def record(video, condition, kind, motion, lipsync, quality):
        return {
            "video": video,
            "condition": condition,
            "kind": kind,
            "oracle": {"motion": motion, "lipsync": lipsync, "quality": quality},
        }

    records = [
        record("a", "c1", "candidate", 0.5, 0.20, 0.40),
        record("b", "c1", "candidate", 0.5, 0.30, 0.42),
        record("c", "c2", "candidate", 0.9, 0.90, 0.90),
        record("d", "c1", "blur", 0.0, 0.00, 0.00),
    ]
    assert raters.clear_pairs(records, 0.05) == [{"chosen": "b", "rejected": "a", "dimension": "lipsync"}]
    assert {p["dimension"] for p in raters.clear_pairs(records, 0.0)} == {"motion", "lipsync", "quality"}


def test_a_run_recorded_before_newer_options_reads_with_their_defaults(chain, tmp_path):
    first, _ = chain
    recorded = json.loads((first / "run" / "run_config.json").read_text())
    del recorded["critic_base"], recorded["experts"]["winner_penalty"], recorded["critic"]["preferences"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "run_config.json").write_text(json.dumps(recorded))
    config = runner.recorded_config(tmp_path / "old", "run.reuse")
    assert config["critic_base"]["conditions"] == 0 and config["experts"]["winner_penalty"] == 0.0
    assert config["critic_base"]["thinker"] == "random" and config["critic"]["preferences"] is False
    recorded["experts"]["beta_typo"] = 1.0
    (tmp_path / "old" / "run_config.json").write_text(json.dumps(recorded))
    with pytest.raises(InputError, match="beta_typo"):
        runner.recorded_config(tmp_path / "old", "run.reuse")


def test_ordering_agreement_counts_the_critic_s_order_of_every_clear_candidate_pair(tmp_path):
    def lines(rows):
        return "".join(json.dumps(r) + "\n" for r in rows)

    (tmp_path / "candidates" / "train").mkdir(parents=True)
    (tmp_path / "pairs").mkdir()
    ids = ["c0_0", "c0_1", "c0_2", "c1_0", "c1_1"]
    (tmp_path / "candidates" / "train" / "candidates.jsonl").write_text(
        lines([{"id": i, "video": f"{i}.mp4", "condition": i[:2]} for i in ids])
    )
    oracle = {"c0_0": 0.9, "c0_1": 0.5, "c0_2": 0.51, "c1_0": 0.2, "c1_1": 0.6}
    critic = {"c0_0": 0.7, "c0_1": 0.6, "c0_2": 0.8, "c1_0": 0.4, "c1_1": 0.4}
    (tmp_path / "pairs" / "oracle_judgements.jsonl").write_text(
        lines([{"id": i, "scores": {d: oracle[i] for d in ("motion", "lipsync", "quality")}} for i in ids])
    )
    (tmp_path / "pairs" / "scores.jsonl").write_text(
        lines([{"id": i, "scores": {d: critic[i] for d in ("motion", "lipsync", "quality")}} for i in ids])
    )
    # clear pairs (oracle gap >= 0.05): c0_0>c0_1 (critic agrees: 1), c0_0>c0_2 (critic disagrees: 0), c1_1>c1_0 (tie: 0.5);
    # c0_1 vs c0_2 differ by 0.01 and are left out, as are pairs across conditions
    got = report.ordering_agreement({"curation": {"margin": 0.05}}, tmp_path)
    assert got == pytest.approx({"motion": 0.5, "lipsync": 0.5, "quality": 0.5})
    critic["c0_2"] = 0.65
    (tmp_path / "pairs" / "scores.jsonl").write_text(
        lines([{"id": i, "scores": {d: critic[i] for d in ("motion", "lipsync", "quality")}} for i in ids])
    )
    assert report.ordering_agreement({"curation": {"margin": 0.05}}, tmp_path)["lipsync"] == pytest.approx(2.5 / 3)


def test_candidate_tradeoffs_correlate_within_a_condition(tmp_path):
    """Each condition's mean is removed first: the two conditions' offsets (0.2 vs 0.6 lip-sync) would otherwise
    weaken every correlation."""
    (tmp_path / "candidates" / "train").mkdir(parents=True)
    (tmp_path / "pairs").mkdir()
    candidates, judgements = [], []
    for condition, offset, motion in (("c0", 0.2, (0.4, 0.6, 0.5)), ("c1", 0.6, (0.1, 0.3, 0.2))):
        for k, audio_cfg in enumerate((1.0, 3.0, 5.0)):
            name = f"{condition}_{k}"
            candidates.append({"id": name, "video": f"{name}.mp4", "condition": condition, "audio_cfg": audio_cfg})
            judgements.append(
                {
                    "id": name,
                    "scores": {"lipsync": offset + 0.1 * audio_cfg, "motion": motion[k], "quality": 0.9 - 0.05 * audio_cfg},
                }
            )
    for path, rows in (
        (tmp_path / "candidates" / "train" / "candidates.jsonl", candidates),
        (tmp_path / "pairs" / "oracle_judgements.jsonl", judgements),
    ):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # centred audio guidance per condition: (-2, 0, 2); motion: (-0.1, 0.1, 0) -> correlation 0.4 / 0.8
    assert report.candidate_tradeoffs({}, tmp_path) == pytest.approx(
        {
            "audio guidance / lipsync": 1.0,
            "audio guidance / motion": 0.5,
            "audio guidance / quality": -1.0,
            "motion / lipsync": 0.5,
            "motion / quality": -0.5,
            "lipsync / quality": -1.0,
        }
    )


def test_rows_are_compared_with_the_base_on_the_same_videos():
    """Δ and its standard error come from per-video differences, so a shift smaller than the videos' spread shows."""
    rows = (
        "base",
        "motion expert alone",
        "lipsync expert alone",
        "quality expert alone",
        "static equal merge (1/3 each)",
        "pooled single LoRA",
        "TLPO (experts + trained gate)",
    )
    base_lipsync = [0.2, 0.8, 0.5, 0.3]
    shift = {"lipsync": [0.03, 0.01, 0.02, 0.02], "motion": [0.02, -0.01, 0.0, 0.0], "quality": [-0.1, -0.1, -0.1, -0.1]}
    results = {
        name: [
            {"condition": f"h{i // 2}", "seed": i % 2, "lipsync": base_lipsync[i], "motion": 0.4, "quality": 0.5}
            for i in range(4)
        ]
        for name in rows
    }
    for i, video in enumerate(results["TLPO (experts + trained gate)"]):
        for d in shift:
            video[d] += shift[d][i]
    results["TLPO (experts + trained gate)"].reverse()  # matched by (condition, seed), not by order
    differences = np.array(shift["lipsync"])
    mean, error = report.paired(results, "TLPO (experts + trained gate)", "base", "lipsync")
    assert mean == pytest.approx(differences.mean()) and error == pytest.approx(differences.std(ddof=1) / 2)
    table = report.paired_lines(results)
    assert table[-1] == "| TLPO (experts + trained gate) | +0.003 ± 0.006 | +0.020 ± 0.004 | -0.100 ± 0.000 |"
    verdict = report.verdicts(report.summary_rows(results), results)
    assert (
        "- TLPO improves on the base in 2 of 3 dimensions (motion, lipsync); by more than two standard errors "
        "of the paired difference in 1 (lipsync)."
    ) in verdict


def test_the_sync_reading_is_reported_per_row_when_every_video_has_one():
    def videos(*readings):
        return [{"sync_confidence": confidence, "sync_offset": offset} for confidence, offset in readings]

    results = {"base": videos((0.2, -2), (0.4, 0)), "TLPO (experts + trained gate)": videos((0.5, 1), (0.5, 1))}
    lines = report.sync_lines(results)
    assert "| base | 0.300 ± 0.100 | 1.00 |" in lines and "| TLPO (experts + trained gate) | 0.500 ± 0.000 | 1.00 |" in lines
    assert report.sync_lines({"base": [{"lipsync": 0.3}]}) == []  # clips too short for the sync model: no table


def test_the_critic_thinker_s_size_changes_the_hash_only_when_set_and_needs_its_own_pretraining(chain, tmp_path):
    first, _ = chain
    config = runner.recorded_config(first / "run", "x")
    older = json.loads(json.dumps(config))
    del older["critic_base"]["size"]  # a run recorded before the option existed
    assert config["critic_base"]["size"] == "tiny" and schema.settings_hash(older) == schema.settings_hash(config)
    small = json.loads(json.dumps(config))
    small["critic_base"]["size"] = "small"
    assert schema.settings_hash(small) != schema.settings_hash(config)
    small["critic_base"].update(thinker="miniature", conditions=0)
    small["run"]["output"] = str(tmp_path / "refused")
    with pytest.raises(InputError, match='critic_base.size = "small".*critic_base.conditions > 0'):
        runner.reproduce(small)
    assert not (tmp_path / "refused").exists()  # refused before any stage ran
    small["critic_base"]["thinker"] = "random"
    assert chain_stages.critic_base_dir(small, tmp_path).name.startswith("small-critic-")


def test_a_frame_count_wan_cannot_group_is_refused_before_any_stage(chain, tmp_path):
    """world.frames = 34 used to pass the config check and fail inside the candidates stage's processes."""
    first, _ = chain
    config = runner.recorded_config(first / "run", "x")
    config["world"]["frames"] = 34
    config["run"]["output"] = str(tmp_path / "refused")
    with pytest.raises(InputError, match="world.frames must be 4k\\+1"):
        runner.reproduce(config)
    assert not (tmp_path / "refused").exists()
