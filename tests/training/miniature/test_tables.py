"""The score table's layout: the dimensions' labels in their one order, mean ± std to three places."""
from training.miniature.tables import score_table


def test_one_row_per_model_in_the_dimensions_order():
    scores = {"motion": {"mean": 0.4, "std": 0.1}, "lipsync": {"mean": 0.5, "std": 0.2}, "quality": {"mean": 0.6, "std": 0.05}}
    assert score_table({"base": scores, "expert": scores}) == [
        "| row | motion naturalness | lip-sync | visual quality |",
        "|---|---|---|---|",
        "| base | 0.400 ± 0.100 | 0.500 ± 0.200 | 0.600 ± 0.050 |",
        "| expert | 0.400 ± 0.100 | 0.500 ± 0.200 | 0.600 ± 0.050 |",
    ]
