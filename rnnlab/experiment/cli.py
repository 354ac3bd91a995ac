"""Config dataclasses as command lines, and how a script reports what goes wrong.

* A config dataclass is the CLI: every field is a ``--flag`` (``--help`` lists them with
  defaults); every config also has ``--out``, ``--seed``, ``--steps``, ``--quick``,
  ``--resume``, ``--checkpoint-every``, ``--quiet``.
* Every numeric field declares its valid range where it is defined (``option(100, ge=1)``);
  ``parse_config`` checks them all, and ``Config.check`` any rule between fields.  A bad
  value is reported the way argparse reports one: ``error: --steps must be >= 1, got -5``,
  exit status 2.  So is every user error a script meets later (a missing file or column,
  bad data): ``cli(main)`` prints it in one line and exits with status 2; a traceback is for
  bugs, or for any error with ``--debug``.
* Parsing has no side effects: ``setup(cfg)`` joins a multi-process run
  (``--coordinator-address HOST:PORT --num-processes N --process-id I``, else
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) and turns on the
  persistent compilation cache (``--compile-cache DIR``, default
  ``~/.cache/rnnlab/jax_compile_cache``; ``off`` disables it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import shlex
import sys
import types
import typing

import numpy as np

from rnnlab import parallel
from rnnlab.train import NonFiniteError
from rnnlab.validation import InputError


class ConfigError(InputError):
    """A config value out of its range; the message starts with the flag (``--steps must be ...``)."""


def option(default, *, ge=None, gt=None, le=None, lt=None, choices=None):
    """A config field with its valid values: bounds (``ge``: >=, ``gt``: >, ``le``: <=, ``lt``: <)
    or ``choices``.  For a tuple field every element is checked, and the tuple may not be empty."""
    rules = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices).items() if v is not None}
    return dataclasses.field(default=default, metadata={"rules": rules})


_BOUNDS = {
    "ge": (">=", lambda v, b: v >= b),
    "gt": (">", lambda v, b: v > b),
    "le": ("<=", lambda v, b: v <= b),
    "lt": ("<", lambda v, b: v < b),
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_fields(cfg) -> None:
    """Every float finite, every field's ``option`` rules, then ``cfg.check()``; raises
    ``ConfigError`` naming the flag."""
    for field in dataclasses.fields(cfg):
        rules, value = field.metadata.get("rules", {}), getattr(cfg, field.name)
        values = value if isinstance(value, tuple) else (value,)
        if not values and rules:  # a tuple without rules (per-model settings) may be empty
            raise ConfigError(f"{flag(field.name)} needs at least one value")
        for v in values:
            if v is None:
                continue
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{flag(field.name)} must be a finite number, got {v}")
            if "choices" in rules and v not in rules["choices"]:
                raise ConfigError(
                    f"{flag(field.name)} must be one of {', '.join(map(str, rules['choices']))}, got {v!r}"
                )
            for key, (word, ok) in _BOUNDS.items():
                if key in rules and not ok(v, rules[key]):
                    raise ConfigError(f"{flag(field.name)} must be {word} {rules[key]}, got {v}")
    if hasattr(cfg, "check"):
        cfg.check()


@dataclasses.dataclass
class BaseConfig:
    out: str = "runs/experiment"
    seed: int = option(0, ge=0)
    steps: int = option(1000, ge=1)
    quick: bool = False
    resume: bool = False
    checkpoint_every: int = option(500, ge=0)  # 0: only the final checkpoint
    keep_checkpoints: int = option(3, ge=1)
    log_every: int = option(10, ge=1)
    quiet: bool = False
    debug: bool = False  # show the traceback of every error
    coordinator_address: str | None = None  # HOST:PORT of process 0, for a multi-process run
    num_processes: int | None = option(None, ge=1)
    process_id: int | None = option(None, ge=0)
    compile_cache: str = ""  # a folder, "" for ~/.cache/rnnlab/jax_compile_cache, or "off"

    def apply_quick(self) -> None:
        """Shrink the run for CI and a first look (scripts override)."""

    def apply_explicit(self, explicit: frozenset[str]) -> None:
        """What the fields typed on the command line (``explicit``) change in the script's
        defaults (scripts override: a default never overrides what the user typed)."""

    def check(self) -> None:
        """Rules between fields (scripts extend); raise ``ConfigError`` naming the flag."""
        if self.num_processes is not None and self.process_id is not None and self.process_id >= self.num_processes:
            raise ConfigError(f"--process-id must be < --num-processes = {self.num_processes}, got {self.process_id}")


def _field_type(field, cls):
    hint = typing.get_type_hints(cls)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0]
    if typing.get_origin(hint) is tuple:
        return "tuple", typing.get_args(hint)[0]
    return "scalar", hint


def parse_config(cls, argv=None, description: str | None = None):
    """Build ``cls`` from command-line flags (``--field-name value``; ``--flag/--no-flag`` for bools)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(
        description=description, usage="%(prog)s [-h] [options]", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for field in dataclasses.fields(cls):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        kind, typ = _field_type(field, cls)
        rules = field.metadata.get("rules", {})
        valid = "; " + ", ".join(f"{_BOUNDS[k][0]} {v}" for k, v in rules.items() if k in _BOUNDS) if rules else ""
        if "choices" in rules:
            valid = f"; one of {', '.join(map(str, rules['choices']))}"
        if typ is bool:
            parser.add_argument(flag(field.name), action=argparse.BooleanOptionalAction, default=default)
        elif kind == "tuple":
            parser.add_argument(
                flag(field.name),
                type=typ,
                nargs="+",
                default=default,
                help=f"default: {' '.join(map(str, default))}{valid}",
            )
        else:
            parser.add_argument(flag(field.name), type=typ, default=default, help=f"default: {default}{valid}")
    args = parser.parse_args(argv)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()}
    cfg = cls(**values)
    explicit = {a.split("=")[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
    explicit = frozenset((explicit | {name[3:] for name in explicit if name.startswith("no_")}) & values.keys())
    if getattr(cfg, "quick", False):
        cfg.apply_quick()
        # flags given on the command line win over --quick's defaults
        for name in explicit:
            setattr(cfg, name, values[name])
    cfg.explicit_flags = explicit  # not a field: what was typed, for the checks
    if hasattr(cfg, "apply_explicit"):
        cfg.apply_explicit(explicit)
    try:
        check_fields(cfg)
    except ConfigError as e:
        parser.error(str(e))  # argparse's way: usage, "error: ...", exit status 2
    return cfg


def setup(cfg):
    """What a run needs before its first JAX computation, done explicitly (parsing does not):
    join the multi-process run the flags name (``jax.distributed``) and turn on the persistent
    compilation cache.  Returns ``cfg``."""
    parallel.initialize(cfg.coordinator_address, cfg.num_processes, cfg.process_id)
    parallel.enable_compile_cache(cfg.compile_cache)
    return cfg


# What a script reports in one line: errors in what the user gave it (and the files
# and disks it names).  Anything else is a bug and keeps its traceback.
USER_ERRORS = (InputError, OSError, NonFiniteError)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; its message says where the run stopped and its last checkpoint."""


def cli(main, argv=None):
    """Run a script's ``main(argv)`` from the command line: a user error (``USER_ERRORS``)
    becomes ``<script>: error: <message>`` on stderr and exit status 2, like argparse's;
    Ctrl-C becomes one line (where it stopped, the command that continues it) and exit
    status 130, the shell's for SIGINT.  ``--debug`` keeps the traceback of both."""
    argv = sys.argv[1:] if argv is None else list(argv)
    script = pathlib.Path(sys.argv[0]).name
    try:
        return main(argv)
    except USER_ERRORS as e:
        if "--debug" in argv:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"{script}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as e:
        if "--debug" in argv:
            raise
        where = str(e) if isinstance(e, Interrupted) else "interrupted before training"
        again = shlex.join(["python", sys.argv[0], *argv, *([] if "--resume" in argv else ["--resume"])])
        print(f"{script}: {where}; continue with: {again}", file=sys.stderr)
        raise SystemExit(130) from None


def readable(value) -> str:
    """``value`` (numbers, arrays, lists, dicts of them) for a console summary: every float
    as ``%.3g``, so float32 round-off (``0.0007999999797903001``) never reaches the reader."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {readable(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(readable(v) for v in np.asarray(value, dtype=object).ravel().tolist()) + "]"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return str(value)


def config_dict(cfg) -> dict:
    """The config as JSON values (tuples become lists), as config.json and checkpoints hold it."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
