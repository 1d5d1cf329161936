"""Pooling chains over seeds: the pooled error against a plain computation, the rule for what holds, and two short
chains pooled into one table."""
import json
import math

import pytest

from ft2_core.dimensions import DIMENSION_NAMES
from tests.conftest import REPO
from tests.training.conftest import write_config
from tests.training.miniature.conftest import SHORT
from training.miniature import pool_tlpo
from training.miniature.reproduce_tlpo import runner

RESULTS = REPO / "training" / "miniature" / "results" / "tlpo_chain"


def plain_variance(values):
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def test_the_pooled_error_adds_the_chains_spread_and_the_conditions_spread():
    per_chain = [{"a": 0.10, "b": 0.30, "c": -0.05}, {"a": 0.02, "b": 0.20, "c": 0.01}, {"a": 0.07, "b": 0.25, "c": -0.10}]
    found = pool_tlpo.pooled_difference(per_chain)
    chain_means = [sum(d.values()) / 3 for d in per_chain]
    condition_means = [sum(d[c] for d in per_chain) / 3 for c in "abc"]
    assert found["mean"] == pytest.approx(sum(chain_means) / 3)
    assert found["per_chain"] == pytest.approx(chain_means)
    expected = math.sqrt(plain_variance(chain_means) / 3 + plain_variance(condition_means) / 3)
    assert found["standard_error"] == pytest.approx(expected)


def test_a_difference_holds_when_three_chains_agree_or_its_interval_excludes_zero():
    noisy = [{"a": 0.3, "b": -0.28}, {"a": 0.2, "b": -0.18}, {"a": 0.25, "b": -0.2}]  # every chain up a little
    assert pool_tlpo.pooled_difference(noisy)["standard_error"] * 2 > pool_tlpo.pooled_difference(noisy)["mean"] > 0
    assert pool_tlpo.pooled_difference(noisy)["holds"]
    assert not pool_tlpo.pooled_difference(noisy[:2])["holds"]  # two chains agreeing is not enough
    split = [{"a": 0.1, "b": 0.1}, {"a": -0.1, "b": -0.12}, {"a": 0.1, "b": 0.1}]
    assert not pool_tlpo.pooled_difference(split)["holds"]
    same_videos = [{"a": 0.3, "b": -0.2}] * 3  # a row no chain trains: three chains, one sample
    assert not pool_tlpo.pooled_difference(same_videos)["holds"]
    rounded_apart = [{"a": 0.3, "b": -0.2}, {"a": 0.3 + 1e-8, "b": -0.2}, {"a": 0.3, "b": -0.2 - 1e-8}]  # other code, same videos
    assert not pool_tlpo.pooled_difference(rounded_apart)["holds"]
    clear = [{"a": 0.5, "b": 0.52}, {"a": 0.49, "b": 0.5}]
    assert pool_tlpo.pooled_difference(clear)["holds"] and pool_tlpo.pooled_difference(clear)["direction"] == "up"


@pytest.fixture(scope="module")
def second_chain(tmp_path_factory):
    """The session's short chain again with another chain seed: every stage trained anew."""
    tmp_path = tmp_path_factory.mktemp("chain_seed1")
    config = write_config(tmp_path / "chain.toml", {"run": {"output": str(tmp_path / "run"), "seed": 1}, **SHORT})
    assert runner.main(["--config", str(config)]) == 0
    return tmp_path / "run"


def test_chains_of_two_seeds_pool_into_one_table(chain, second_chain, tmp_path):
    first = chain[0] / "run"
    assert pool_tlpo.main([str(first), str(second_chain), "--out", str(tmp_path / "pooled")]) == 0
    numbers = json.loads((tmp_path / "pooled.json").read_text())
    assert numbers["chain_seeds"] == [0, 1] and numbers["split"] == "validation" and numbers["conditions"] == 3
    bases = [json.loads((run / "stages" / "evaluate.json").read_text())["results"]["base"] for run in (first, second_chain)]
    means = [sum(r["lipsync"] for r in rows) / len(rows) for rows in bases]
    assert numbers["scores"]["base"]["lipsync"]["per_chain"] == pytest.approx(means)
    assert set(numbers["against_base"]) == set(numbers["scores"]) - {"base"}
    assert len(numbers["stage_seconds"]) == 2 and "Talking-Critic (its base + trained LoRA)" in numbers["critic"]
    text = (tmp_path / "pooled.md").read_text()
    assert "over 2 chain seeds [0, 1]" in text and "The paper's claims here:" in text and text.count("claim ") == 3


def test_runs_that_are_not_replicates_are_refused(chain, tmp_path, capsys):
    first = chain[0] / "run"
    assert pool_tlpo.main([str(first), str(first), "--out", str(tmp_path / "x")]) == 2
    assert "share a chain seed" in capsys.readouterr().err
    assert pool_tlpo.main([str(first), str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x.md").exists()


def mark(difference: dict) -> str:
    return "" if not difference["holds"] else " ↑" if difference["direction"] == "up" else " ↓"


def readme_table(numbers: dict) -> list[str]:
    """The README's form of a pooled table: mean scores, then the pooled difference ± its error and whether it holds."""
    def delta(d):
        return f"{d['mean']:+.3f} ± {d['standard_error']:.3f}{mark(d)}"

    lines = []
    for row, scores in numbers["scores"].items():
        means = " | ".join(f"{scores[d]['mean']:.3f}" for d in DIMENSION_NAMES)
        deltas = " | ".join(delta(numbers["against_base"][row][d]) for d in DIMENSION_NAMES) if row != "base" else " |  | "
        lines.append(f"| {row} | {means} | {deltas} |")
    for row, differences in numbers["tlpo_against"].items():
        lines.append(f"| TLPO minus {row} | | | | " + " | ".join(delta(differences[d]) for d in DIMENSION_NAMES) + " |")
    return lines


@pytest.mark.parametrize("name, section", [("test", "**Result on the test split"), ("test_oracle", "**The control")])
def test_the_readme_states_each_three_seed_table_and_its_claims_as_their_numbers_say(name, section):
    """The README's two three-seed tables and their claim lines are the committed pooled results of three chain seeds,
    and those results' tables are what pool_tlpo makes of their numbers."""
    numbers = json.loads((RESULTS / f"{name}.json").read_text())
    table = (RESULTS / f"{name}.md").read_text()
    command = table.split("Command: `")[1].split("`")[0]
    assert pool_tlpo.markdown(numbers, command) == table
    assert len(numbers["chain_seeds"]) >= 3 and numbers["split"] == "test"
    readme = (REPO / "README.md").read_text()
    start = readme.index(section)
    text = readme[start:readme.index("In words:", start)]
    assert f"tlpo_chain/{name}.md" in text
    for line in [*readme_table(numbers), *pool_tlpo.claims(numbers)]:
        assert line in text.splitlines()
