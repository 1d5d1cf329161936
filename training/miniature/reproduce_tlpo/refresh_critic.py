"""Remakes finished runs' critic tables with this code's judges and orderings, nothing retrained, then their reports:

    python -m training.miniature.reproduce_tlpo.refresh_critic outputs/tlpo_validation_seed0 [RUN ...]

The raters' answers are drawn again (the same seed, the same clips on disk) and must equal the run's label and
preference files, so the table is made on exactly the data the run's critic was trained and held out on.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ft2_core.errors import InputError
from ft2_core.io.atomic import write_text_atomic
from ft2_core.io.jsonl import read_jsonl
from training.common.script import reported
from training.miniature.reproduce_tlpo.raters import rater_answers
from training.miniature.reproduce_tlpo.report import critic_table
from training.miniature.reproduce_tlpo.runner import recorded_config, reproduce
from training.miniature.reproduce_tlpo.stages import critic_base_dir

STORED = {"train_lines": "labels_train.jsonl", "heldout_lines": "labels_heldout.jsonl",
          "train_pairs": "preferences_train.jsonl", "heldout_pairs": "preferences_heldout.jsonl"}


def without_condition(lines: list[dict]) -> list[dict]:
    """Label lines as runs before the held-out lines named their condition wrote them."""
    return [{k: v for k, v in line.items() if k != "condition"} for line in lines]


def run_config(run: Path) -> dict:
    config = recorded_config(run, "run folder")
    config["run"]["output"] = str(run)  # wherever the folder is now
    return config


def remade_table(run: Path, config: dict) -> dict:
    """The critic table of the run's critic stage made again (written beside it); its numbers for the stage marker."""
    if not (run / "stages" / "critic.json").is_file():
        raise InputError(f"{run}: its critic stage has not finished; nothing to refresh")
    answers = rater_answers(config, run)
    for key, name in STORED.items():
        if without_condition(answers[key]) != without_condition(read_jsonl(run / "critic" / name)):
            raise InputError(f"{run / 'critic' / name}: the raters' answers drawn again differ from the run's (made by other "
                             "code?); run its critic stage again instead")
    table = critic_table(config, run, critic_base_dir(config, run), answers)
    write_text_atomic(run / "critic" / "critic_table.md", table["markdown"])
    return table["numbers"]


def refresh(runs: list[Path]) -> None:
    """Each run's critic stage numbers remade, then its report (every stage done: only the report is written). Runs
    that share one critic stage (reused from one another) have it remade once."""
    remade = {}
    for run in runs:
        config, shared = run_config(run), (run / "critic").resolve()
        if shared not in remade:
            remade[shared] = remade_table(run, config)
        marker = run / "stages" / "critic.json"
        write_text_atomic(marker, json.dumps({**json.loads(marker.read_text()), **remade[shared]}))
        reproduce(config)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished reproduce_tlpo output folders")
    args = parser.parse_args(argv)
    try:
        refresh(args.runs)
    except InputError as err:
        return reported(err)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
