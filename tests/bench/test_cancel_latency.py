"""The cancel-latency bench: a case filter that matches nothing is refused with the cases, not a silent empty run."""
import pytest

from bench import cancel_latency


def test_a_case_filter_matching_nothing_is_refused_naming_the_cases(capsys):
    with pytest.raises(SystemExit) as stop:
        cancel_latency.main(["--case", "sampling"])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "--case 'sampling' names none of the cases" in error and all(case in error for case in cancel_latency.CASES)


def test_progress_counts_map_to_the_stage_they_fall_in():
    stages = [cancel_latency.stage_of(done, chunks=2, steps=3) for done in range(9)]
    assert stages == ["text encoder", "image encoder", "VAE encode", "wav2vec2", "wav2vec2", "sampling", "sampling",
                      "sampling", "VAE decode"]
