from ft2_core.tlpo.curation import pairs_by_dimension


def test_pair_rule_on_hand_made_scores():
    scores = {
        "a": {"motion": 0.9, "lipsync": 0.55, "quality": 0.2},
        "b": {"motion": 0.1, "lipsync": 0.95, "quality": 0.8},
        "c": {"motion": 0.62, "lipsync": 0.05, "quality": None},
        "d": {"motion": 0.8, "lipsync": 0.9, "quality": 0.9},  # another condition
        "e": {"motion": 0.3, "lipsync": 0.35, "quality": 0.1},
    }
    conditions = {"a": "c1", "b": "c1", "c": "c1", "d": "c2", "e": "c2"}
    pairs = pairs_by_dimension(scores, conditions, margin=0.1)
    as_tuples = {d: [(p.condition, p.winner, p.loser) for p in ps] for d, ps in pairs.items()}
    assert as_tuples == {
        # c1: winners >= 0.6 are a (0.9) and c (0.62), loser <= 0.4 is b; c2: d beats e
        "motion": [("c1", "a", "b"), ("c1", "c", "b"), ("c2", "d", "e")],
        # c1: b wins over c; a (0.55) is inside the margin; c2: d beats e (0.35)
        "lipsync": [("c1", "b", "c"), ("c2", "d", "e")],
        # c1: b beats a; c has no quality score; c2: d beats e
        "quality": [("c1", "b", "a"), ("c2", "d", "e")],
    }
    assert pairs["motion"][0].scores == {"winner": 0.9, "loser": 0.1}
    capped = pairs_by_dimension(scores, conditions, margin=0.1, max_pairs_per_condition=1)
    assert [(p.winner, p.loser) for p in capped["motion"]] == [("a", "b"), ("d", "e")]  # the most confident of c1
    strict = pairs_by_dimension(scores, conditions, margin=0.35)  # winners >= 0.85, losers <= 0.15
    assert {d: [(p.winner, p.loser) for p in ps] for d, ps in strict.items()} == {
        "motion": [("a", "b")], "lipsync": [("b", "c")], "quality": [("d", "e")]}


def test_ranking_rule_pairs_by_the_gap_whatever_the_side_of_one_half():
    scores = {"a": {"motion": 0.70, "lipsync": 0.9, "quality": None}, "b": {"motion": 0.64, "lipsync": 0.9, "quality": 0.2},
              "c": {"motion": 0.60, "lipsync": 0.9, "quality": 0.1}}
    conditions = {name: "c1" for name in scores}
    answer = pairs_by_dimension(scores, conditions, margin=0.05)
    assert answer["motion"] == [] and answer["lipsync"] == []  # all answered Yes: the paper's rule finds no pair
    ranking = pairs_by_dimension(scores, conditions, margin=0.05, rule="ranking")
    assert [(p.winner, p.loser) for p in ranking["motion"]] == [("a", "c"), ("a", "b")]  # gaps 0.10, 0.06; b-c is 0.04
    assert ranking["lipsync"] == [] and [(p.winner, p.loser) for p in ranking["quality"]] == [("b", "c")]


def test_groups_pair_only_candidates_of_one_guidance_level():
    values = {"low_1": (0.2, 0.1, 0.9), "low_2": (0.3, 0.4, 0.8), "high_1": (0.9, 0.8, 0.1), "high_2": (0.6, 0.9, 0.3)}
    scores = {name: dict(zip(("motion", "lipsync", "quality"), v)) for name, v in values.items()}
    conditions = {name: "c1" for name in scores}
    groups = {name: name.split("_")[0] for name in scores}  # e.g. audio cfg 1 and 5
    pooled = pairs_by_dimension(scores, conditions, margin=0.05, rule="ranking")
    within = pairs_by_dimension(scores, conditions, margin=0.05, rule="ranking", groups=groups)
    assert ("high_1", "low_1") in [(p.winner, p.loser) for p in pooled["motion"]]  # across levels: guidance's doing
    assert {d: [(p.winner, p.loser) for p in ps] for d, ps in within.items()} == {
        "motion": [("high_1", "high_2"), ("low_2", "low_1")], "lipsync": [("low_2", "low_1"), ("high_2", "high_1")],
        "quality": [("high_2", "high_1"), ("low_1", "low_2")]}
