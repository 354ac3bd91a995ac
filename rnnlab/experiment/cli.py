"""Config dataclasses as command lines, and how a script reports what goes wrong.

* A config dataclass is the CLI: every field is a ``--flag`` (``--help`` lists them with
  defaults); every config also has ``--out``, ``--seed``, ``--steps``, ``--quick``,
  ``--resume``, ``--checkpoint-every``, ``--quiet``.
* Every numeric field declares its valid range where it is defined (``option(100, ge=1)``);
  ``parse_config`` checks them all, and ``Config.check`` any rule between fields.  A list flag
  takes each value once: ``--learning-rate 1e-3 1e-3`` is refused (a repeated value would
  train, and count, its points twice).  A typed flag that would do nothing, or does not apply
  to the run (a dataset's flag with another dataset), is refused (``refuse_unused``,
  ``refuse_inapplicable``).  A bad value is reported the way argparse reports one:
  ``error: --steps must be >= 1, got -5``, exit status 2.  So is every user error a script
  meets later (a missing file or column, bad data): ``cli(main)`` prints it in one line and
  exits with status 2; a traceback is for bugs, or for any error with ``--debug``.
* A run too large for the machine is refused the same way, before anything is allocated: a
  config's ``memory_needs`` estimates the least its flags make it allocate (the sweep grid,
  the sequences, the batch; ``rnnlab.sweep.training_bytes``) and ``check_memory`` names the
  flags and the machine's memory.
* Ctrl-C at any moment, compilation included, is one line and exit status 130 (``cli``).
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
import os
import pathlib
import shlex
import signal
import sys
import threading
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


SEED_MAX = 2**32 - 1  # what every seed's consumer takes (MNIST-1D's np.random.seed; JAX keys overflow at 2**63)

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
        if isinstance(value, tuple):  # a value twice would run (and count) its points twice
            seen = []
            for v in value:
                if v in seen:
                    raise ConfigError(f"{flag(field.name)} lists {v} twice; give each value once")
                seen.append(v)
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
    check_memory(cfg)


def refuse_inapplicable(cfg, rules: dict[str, tuple[bool, str]]) -> None:
    """A flag typed on the command line where it does not apply is refused, never ignored: ``rules``
    (a table, checked in its order) maps a field to ``(whether it applies in this run, the rest of
    the sentence)``, e.g. ``{"data_dir": (cfg.dataset == "mnist", "applies to --dataset mnist only")}``
    refuses a typed ``--data-dir`` with ``--data-dir applies to --dataset mnist only`` (for ``Config.check``)."""
    typed = getattr(cfg, "explicit_flags", frozenset())
    for name, (applies, sentence) in rules.items():
        if name in typed and not applies:
            raise ConfigError(f"{flag(name)} {sentence}")


def refuse_unused(cfg, rules: dict[str, tuple[bool, str]]) -> None:
    """A flag typed on the command line that would do nothing is refused, never ignored:
    ``rules`` maps a field to ``(whether it takes effect in this run, why not)``, e.g.
    ``{"rmsprop_decay": (cfg.optimizer == "rmsprop", "--optimizer is adam")}`` (for ``Config.check``)."""
    refuse_inapplicable(cfg, {name: (applies, f"would do nothing: {why}") for name, (applies, why) in rules.items()})


def check_memory(cfg) -> None:
    """Each of ``cfg.memory_needs()`` (``(flags, what, bytes)``: the least a part of the run
    allocates, ``rnnlab.sweep.training_bytes``) within this machine's memory
    (``rnnlab.sweep.host_memory_bytes``), else a ``ConfigError`` naming the flags and the limit,
    before anything is built: ``--clip-perturbations 1000000000: ... needs at least ...``."""
    from rnnlab.sweep import host_memory_bytes

    needs = cfg.memory_needs() if hasattr(cfg, "memory_needs") else []
    limit = host_memory_bytes()
    for flags, what, need in needs:
        if need > limit:
            typed = getattr(cfg, "explicit_flags", frozenset())
            shown = lambda names: ", ".join(f"{flag(n)} {_shown(getattr(cfg, n))}" for n in names)
            first, rest = [n for n in flags if n in typed], [n for n in flags if n not in typed]
            named = f"{shown(first)} (with {shown(rest)})" if first and rest else shown(first or rest)
            raise ConfigError(
                f"{named}: {what} would need at least {need / 2**30:.3g} GiB, more than this machine's "
                f"{limit / 2**30:.3g} GiB of memory; choose smaller values"
            )


def _shown(value) -> str:
    if not isinstance(value, tuple):
        return str(value)
    return (
        " ".join(map(str, value)) if len(value) <= 6 else f"{' '.join(map(str, value[:3]))} ... ({len(value)} values)"
    )


@dataclasses.dataclass
class BaseConfig:
    out: str = "runs/experiment"
    seed: int = option(0, ge=0, le=SEED_MAX)
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

    def memory_needs(self) -> list[tuple[tuple[str, ...], str, int]]:
        """``(fields, what, bytes)`` for each part of the run whose allocation the flags size (scripts
        override; ``rnnlab.sweep.training_bytes``): ``check_fields`` refuses one beyond the machine."""
        return []

    def check(self) -> None:
        """Rules between fields (scripts extend); raise ``ConfigError`` naming the flag."""
        if not str(self.out).strip():
            raise ConfigError("--out must name a folder, got ''")
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
                help=f"default: {' '.join(map(str, default))}{valid}; each value once",
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


class Progress:
    """What the run has done, for the one line a Ctrl-C prints: the model being trained (its last
    logged step and the checkpointer whose ``last_saved`` is its newest checkpoint) and the models
    already trained.  ``rnnlab.experiment.train_sweep`` keeps it; plain attributes, so the
    SIGINT handler reads them safely whatever the main thread was doing."""

    def __init__(self):
        self.trained: list[str] = []
        self.training: str | None = None
        self.logged = 0
        self.checkpointer = None
        self.saved = True  # whether what was trained is in checkpoints (a script without them says not)

    def start(self, name: str, checkpointer) -> None:
        self.training, self.logged, self.checkpointer = name, 0, checkpointer

    def finish(self, name: str, saved: bool = True) -> None:
        """``name`` is trained; ``saved=False`` for a script that keeps no checkpoints of it."""
        self.trained.append(name)
        self.training, self.checkpointer = None, None
        self.saved = self.saved and saved

    def where(self) -> str:
        """``interrupted training lstm, last logged step 40; last checkpoint ...``, ``interrupted
        after training rnn`` (between models, or after the last one), or ``interrupted before training``."""
        if self.training is not None:
            latest = getattr(self.checkpointer, "last_saved", None)
            saved = f"last checkpoint {latest}" if latest else "no checkpoint yet"
            return f"interrupted training {self.training}, last logged step {self.logged}; {saved}"
        if self.trained:
            before = len(self.trained) - 1
            more = f" and {before} model{'s' if before > 1 else ''} before it" if before else ""
            kept = "its checkpoints are saved" if self.saved else "nothing of it is saved: it trains again"
            return f"interrupted after training {self.trained[-1]}{more}; {kept}"
        return "interrupted before training"


PROGRESS = Progress()


def _interrupted(script: str, argv: list[str]) -> str:
    again = shlex.join(["python", sys.argv[0], *argv, *([] if "--resume" in argv else ["--resume"])])
    return f"{script}: {PROGRESS.where()}; continue with: {again}"


def _leave(line: str, status: int) -> None:
    """Print ``line`` on stderr and end the process at once with ``status``: no unwinding through
    whatever the main thread was in (an XLA compile, a callback that would swallow the exception)
    and no interpreter teardown, where state a Ctrl-C cut mid-compile made XLA segfault.  The run's
    files are whole: metrics lines and results are written whole or not at all, and a checkpoint
    save holds SIGINT until it ends (``rnnlab.checkpoint``)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    try:
        os.write(2, (("\n" if sys.stderr.isatty() else "") + line + "\n").encode(errors="replace"))
    finally:
        os._exit(status)


def cli(main, argv=None):
    """Run a script's ``main(argv)`` from the command line: a user error (``USER_ERRORS``)
    becomes ``<script>: error: <message>`` on stderr and exit status 2, like argparse's;
    Ctrl-C becomes one line (where it stopped, the command that continues it) and exit
    status 130, the shell's for SIGINT.  ``--debug`` keeps the traceback of both.

    Called with ``argv=None`` (a script's ``__main__``: the process is the script's), Ctrl-C is
    handled at any moment, compilation included: a SIGINT handler prints the line from
    ``PROGRESS`` and leaves at once with ``os._exit(130)`` (``_leave`` says why), and a Ctrl-C
    after ``main`` returned (its results written) is ignored while the interpreter exits.  A
    SIGINT the shell set to be ignored stays ignored.  Given ``argv`` (tests, notebooks), Ctrl-C
    is Python's ``KeyboardInterrupt``, turned into the same line and ``SystemExit(130)``."""
    owns_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    PROGRESS.__init__()  # a new run (a notebook or a test may call cli more than once)
    script = pathlib.Path(sys.argv[0]).name
    handles_sigint = (
        owns_process
        and "--debug" not in argv
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    )
    if handles_sigint:
        signal.signal(signal.SIGINT, lambda signum, frame: _leave(_interrupted(script, argv), 130))
    try:
        result = main(argv)
    except USER_ERRORS as e:
        if "--debug" in argv:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"{script}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        if "--debug" in argv:
            raise
        if owns_process:
            _leave(_interrupted(script, argv), 130)
        print(_interrupted(script, argv), file=sys.stderr)
        raise SystemExit(130) from None
    if handles_sigint:  # done: a Ctrl-C now would only cut the interpreter's teardown short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return result


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
