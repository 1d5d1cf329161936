"""The DPO memory bench measures each mode in a process of its own, started the way the command was (a module)."""
from bench import dpo_memory


def test_a_mode_is_measured_in_a_fresh_process_that_imports_the_bench():
    """The parent used to start `python bench/dpo_memory.py`, where `bench` does not import: every run failed."""
    result = dpo_memory.measured_alone("forward", blocks=1, tokens=256)
    assert set(result) >= {"peak_mib", "seconds", "weights_mib"}
    assert result["peak_mib"] > result["weights_mib"] > 0
