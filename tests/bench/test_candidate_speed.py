"""The candidate-speed bench refuses settings with no candidate beyond the start-up run (it divided by zero)."""
import pytest

from bench import candidate_speed


@pytest.mark.parametrize("conditions, processes", [(1, 1), (2, 2), (3, 0)])
def test_conditions_must_exceed_processes(conditions, processes, capsys):
    with pytest.raises(SystemExit) as stop:
        candidate_speed.main(["--conditions", str(conditions), "--processes", str(processes)])
    assert stop.value.code == 2 and "must exceed --processes" in capsys.readouterr().err
