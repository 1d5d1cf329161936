"""How a config-driven training script starts: read and check the whole config first, then run; bad input exits
2 with one line per problem, a stop request exits 128 + the signal."""
from __future__ import annotations

import logging
import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from ft2_core.errors import InputError, WriteError

from .config import ConfigError, load_config, resolve
from .interrupts import Stopped
from .locks import folder_lock

log = logging.getLogger("ft2.train")


def run(main: Callable[[dict], Path], schema: dict, argv=None) -> int:
    """A training script's entry: check the whole config first, then run; bad input exits 2 with one line per problem."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return exit_distributed(outcome(main, schema, argv))


def outcome(main: Callable[[dict], Path], schema: dict, argv) -> int:
    try:
        config = load_config(argv, schema)
        output = config.get("train", {}).get("output")
        if output is not None and not output.strip():
            raise InputError("train.output is empty: name a folder for this run's files (it would be the current folder)")
        with folder_lock(resolve(output), "train.output") if output and main_rank() else nullcontext():
            result = main(config)
    except ConfigError as err:
        for problem in err.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except (Stopped, InputError, WriteError) as err:
        return reported(err)
    if result is not None:
        log.info("wrote %s", result)
    return 0


def reported(err: Stopped | InputError | WriteError) -> int:
    """A script's ending a user can act on, as one line on stderr, and its exit code: a stop request 128 + the signal,
    a failed write 1, bad input 2."""
    if isinstance(err, Stopped):
        print(err, file=sys.stderr)
        return 128 + err.signum
    print(f"error: {err}", file=sys.stderr)
    return 1 if isinstance(err, WriteError) else 2


def main_rank() -> bool:
    """Whether this is the one process of a launch that owns the output folder (rank 0; a plain run is rank 0)."""
    return int(os.environ.get("RANK", "0")) == 0


def exit_distributed(code: int) -> int:
    """In a process of a multi-process launch, everything is written by now: end the process here. Its gloo threads
    can abort the interpreter's teardown ("terminate called without an active exception": measured in about 1 of 6
    2-process runs), and destroying the process group instead hung 2 of 6 runs."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
