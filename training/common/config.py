"""Training configs: a TOML file plus `--set a.b.c=value` overrides, checked whole against a schema
before any work starts (types, ranges, allowed values, required keys, unknown keys with the nearest
valid name). Every problem is one sentence; all of them are reported together.
"""
from __future__ import annotations

import argparse
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from ft2_core.errors import InputError

REQUIRED = object()
MAX_SEED = 2**63 - 1  # torch's generators take 64-bit seeds


def resolve(path: str) -> Path:
    """Paths in a config are relative to the current directory, as on the command line."""
    return Path(path).expanduser()


@dataclass(frozen=True)
class Option:
    """One config value: its type, default (or REQUIRED), and limits."""

    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    choices: tuple | None = None


Schema = dict  # section -> key -> Option | Schema


class ConfigError(InputError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def parse_value(raw: str):
    """A --set value is TOML (numbers, booleans, quoted strings, arrays, inline tables); else a bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def set_nested(config: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError([f"--set {dotted}: {part} is a value, not a section"])
        node = child
    node[parts[-1]] = value


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", list: "a list",
             dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _fits(value, kind) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def check(raw: dict, schema: Schema, prefix: str = "") -> tuple[dict, list[str]]:
    """Return the config with defaults filled in, and the list of problems (empty when it is valid)."""
    problems, result = [], {}
    for key, value in raw.items():
        if key not in schema:
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.5)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; valid keys: {', '.join(sorted(schema))}"
            problems.append(f"unknown config key {prefix}{key}{hint}")
    for key, spec in schema.items():
        name = f"{prefix}{key}"
        if isinstance(spec, dict):
            value = raw.get(key, {})
            if not isinstance(value, dict):
                problems.append(f"{name} must be a table (a [section]), got {value!r}")
                continue
            result[key], inner = check(value, spec, f"{name}.")
            problems += inner
            continue
        if key not in raw:
            if spec.default is REQUIRED:
                problems.append(f"{name} is required")
            else:
                result[key] = spec.default
            continue
        value = raw[key]
        if not _fits(value, spec.kind):
            problems.append(f"{name} must be {_type_name(spec.kind)}, got {value!r}")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{name} must be finite, got {value!r}")
            continue
        if spec.choices is not None and value not in spec.choices:
            problems.append(f"{name} must be one of {', '.join(map(repr, spec.choices))}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if spec.minimum is not None and value < spec.minimum:
                problems.append(f"{name} must be at least {spec.minimum:g}, got {value!r}")
            if spec.above is not None and value <= spec.above:
                problems.append(f"{name} must be greater than {spec.above:g}, got {value!r}")
            if spec.maximum is not None and value > spec.maximum:
                problems.append(f"{name} must be at most {spec.maximum:g}, got {value!r}")
        result[key] = value
    return result, problems


def recorded_config(config: dict) -> dict:
    """The config as a trained model records it: without the loader's own keys (those starting with "_", such as the
    config file's folder on this machine), so the record and its hash are the same on every machine."""
    return {key: value for key, value in config.items() if not key.startswith("_")}


def load_config(argv, schema: Schema) -> dict:
    """Parse --config/--set, read the TOML, apply the overrides, check everything; raise ConfigError listing problems."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="TOML config")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value; nested keys too (gate.experts.motion=...)")
    args = parser.parse_args(argv)
    path = Path(args.config)
    if not path.is_file():
        raise InputError(f"config not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"config {path} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise InputError(f"config {path} is not a text file") from None
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key or not all(key.split(".")):
            raise InputError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        set_nested(raw, key.strip(), parse_value(value.strip()))
    config, problems = check(raw, schema)
    if problems:
        raise ConfigError([f"config {path}: {p}" for p in problems])
    config["_config_dir"] = str(path.parent.resolve())
    config["_defaults"] = check({}, schema)[0]  # what a setting recorded before it existed meant (checkpoints)
    return config


# Sections the DPO trainers (experts, gate, pooled) share.
MODEL = {
    "folder": Option(str, ""), "cache_dir": Option(str, ""), "dit": Option(str, ""), "adapter": Option(str, ""),
    "dit_config": Option(str, ""),
    # the frozen base: its compute dtype (auto: bf16 on a GPU, fp32 on a CPU; bf16 trains under bf16 autocast), and its
    # block weights as the file stores them (an fp8 file stays fp8) or stored as fp8 at load (a bf16 file or a folder)
    "dtype": Option(str, "auto", choices=("auto", "fp32", "bf16")),
    "weights": Option(str, "as stored", choices=("as stored", "fp8")),
}
DPO_TRAIN = {
    "output": Option(str), "steps": Option(int, 1000, minimum=1), "batch_size": Option(int, 4, minimum=1),
    "lr": Option(float, 1e-4, above=0, maximum=1.0), "beta": Option(float, 5000.0, above=0),
    "winner_penalty": Option(float, 0.0, minimum=0), "seed": Option(int, 0, minimum=0, maximum=MAX_SEED),
    "checkpoint_every": Option(int, 100, minimum=1), "resume": Option(bool, True),
    "allow_changes": Option(list, []),  # settings a resumed run may change (see training.common.checkpoints)
    "sigma_min": Option(float, 0.0, minimum=0, maximum=1), "sigma_max": Option(float, 1.0, minimum=0, maximum=1),
    "shift": Option(float, 1.0, above=0), "weight_decay": Option(float, 0.0, minimum=0),
    "max_grad_norm": Option(float, 0.0, minimum=0), "gradient_checkpointing": Option(bool, True),
    "mixed_precision": Option(str, "auto", choices=("auto", "no", "bf16", "fp16")),  # auto: bf16 on a GPU, none on a CPU
    "strategy": Option(str, "ddp", choices=("ddp", "fsdp")),
    "cpu": Option(bool, False),
    # memory: frozen blocks kept on the CPU (they visit the device in the forward and again in the backward), each
    # block's checkpointed input kept on the CPU, pairs per forward (0: the whole local batch; several micro-batches
    # accumulate their gradients into one step) and policy rows one at a time (the exact DPO gradient, one row's
    # activations)
    "blocks_to_swap": Option(int, 0, minimum=0), "offload_checkpoints": Option(bool, False),
    "micro_batch_size": Option(int, 1, minimum=0), "rows_at_a_time": Option(bool, True),
}
TOY_DATA = {
    "synthetic": Option(bool, False), "cache": Option(str, ""), "conditions": Option(int, 32, minimum=1),
    "seed": Option(int, 0, minimum=0, maximum=MAX_SEED),
}
