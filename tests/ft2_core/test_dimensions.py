"""The three dimensions are defined once; everything else reads them."""
import ast

import pytest

from ft2_core.dimensions import DIMENSION_NAMES, LABELS, QUESTIONS, dimension, uses_lip_mask
from ft2_core.errors import InputError
from tests.conftest import REPO


def spelled_out(source: str) -> list[int]:
    """Lines where a tuple, list or set literal names all three dimensions, or a dict literal maps all three to constants
    (labels, questions): what a second definition looks like, in any order. Docstrings, subsets (the world's HURTS)
    and dicts of computed values (a scorer's three formulas) do not count."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            items = node.keys if all(isinstance(value, ast.Constant) for value in node.values) else ()
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        else:
            continue
        names = {item.value for item in items or () if isinstance(item, ast.Constant) and isinstance(item.value, str)}
        if set(DIMENSION_NAMES) <= names:
            lines.append(node.lineno)
    return lines


def test_one_order_one_label_one_question_each():
    assert DIMENSION_NAMES == ("motion", "lipsync", "quality")  # the paper's order: MN, LS, VQ
    assert list(LABELS) == list(QUESTIONS) == list(DIMENSION_NAMES)
    assert [uses_lip_mask(name) for name in DIMENSION_NAMES] == [False, True, False]


def test_an_unknown_dimension_is_named_with_the_valid_ones():
    with pytest.raises(InputError, match="dimension must be one of motion, lipsync, quality, got 'mouth'"):
        dimension("mouth")


def test_no_other_module_of_the_product_lists_the_dimensions():
    """Libraries, nodes, training tools and benchmarks: only ft2_core/dimensions.py spells the set out."""
    sources = [p for folder in ("ft2_core", "nodes", "training", "bench") for p in (REPO / folder).rglob("*.py")]
    listing = [f"{p.relative_to(REPO)}:{line}" for p in sources if p.name != "dimensions.py"
               for line in spelled_out(p.read_text())]
    assert listing == []


def test_the_check_finds_what_the_old_tree_had():
    assert spelled_out('DIMENSIONS = ("motion", "lipsync", "quality")') == [1]
    assert spelled_out('COLUMNS = ["lipsync", "motion", "quality"]') == [1]
    assert spelled_out('HELP = {"motion": "m", "lipsync": "l",\n        "quality": "q"}') == [1]
    assert spelled_out('HURTS = {"blur": ("quality",), "frozen": ("motion", "lipsync")}') == []
    assert spelled_out('"""{"motion": "Yes", "lipsync": "No", "quality": "Yes"}"""') == []
    assert spelled_out('scores = {"motion": f(x), "lipsync": None, "quality": g(x)}') == []
