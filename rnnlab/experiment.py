"""The conventions every script in ``experiments/`` follows.

* A config dataclass is the CLI: every field is a ``--flag`` (``--help`` lists
  them with defaults); every config also has ``--out``, ``--seed``,
  ``--steps``, ``--quick``, ``--resume``, ``--checkpoint-every``, ``--quiet``.
* The output folder holds ``config.json``, ``metrics.jsonl`` (one JSON object
  per logged step: ``step``, ``loss``, and ``model`` when a script trains
  several), ``results.json`` and PNG figures, plus ``checkpoints/``.
* ``--resume`` continues from the last good checkpoint exactly; without it an
  output folder that already holds a run is never overwritten.
* ``--coordinator-address HOST:PORT --num-processes N --process-id I`` join a
  multi-process run (``jax.distributed.initialize``; read from
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` when
  absent).  Only process 0 writes the output folder.
* ``--compile-cache DIR`` keeps JAX's persistent compilation cache there
  (default ``~/.cache/rnnlab/jax_compile_cache``; ``off`` disables it).
* Every numeric field declares its valid range where it is defined
  (``option(100, ge=1)``); ``parse_config`` checks them all, and ``Config.check``
  any rule between fields.  A bad value is reported the way argparse reports
  one: ``error: --steps must be >= 1, got -5``, exit status 2.  So is every
  user error a script meets later (a missing file or column, bad data):
  ``cli(main)`` prints it in one line and exits with status 2; a traceback is
  for bugs, or for any error with ``--debug``.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import inspect
import json
import math
import os
import pathlib
import shlex
import socket
import sys
import types
import typing

import jax
import numpy as np

from rnnlab import parallel, zoo
from rnnlab import sweep as sweeps
from rnnlab.checkpoint import Checkpointer
from rnnlab.train import NonFiniteError
from rnnlab.unroll import PATHS, resolve_path
from rnnlab.validation import InputError
from rnnlab.zoo import MODELS

# Fields that may change between a run and its resumption; any other difference is an error.
RESUMABLE_FIELDS = {
    "out",
    "steps",
    "resume",
    "checkpoint_every",
    "keep_checkpoints",
    "quiet",
    "log_every",
    "coordinator_address",
    "num_processes",
    "process_id",
    "compile_cache",
    "debug",
}


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


def per_model(field: str, entries: tuple[str, ...], models: tuple[str, ...], parse) -> dict:
    """``("lstm=40", "rnn=80")`` -> ``{"lstm": parse("40"), "rnn": parse("80")}``: a per-model
    setting (``--model-hidden``, ``--model-clip``).  A ``ConfigError`` naming the flag for an
    entry without ``=``, a model not in ``models``, a model named twice or a value ``parse``
    refuses (it raises ``ValueError`` with the reason).  An entry for a model the run does not
    train is ignored, so a script's defaults can name models a user leaves out."""
    out = {}
    for entry in entries:
        name, sep, text = entry.partition("=")
        if not sep:
            raise ConfigError(f"{flag(field)} takes MODEL=VALUE entries, got {entry!r}")
        if name not in models:
            raise ConfigError(f"{flag(field)} names an unknown model {name!r}; choose one of {', '.join(models)}")
        if name in out:
            raise ConfigError(f"{flag(field)} names {name!r} twice")
        try:
            out[name] = parse(text)
        except ValueError as e:
            raise ConfigError(f"{flag(field)} {entry!r}: {e}") from None
    return out


def positive_int(text: str) -> int:
    value = int(text) if text.strip().lstrip("-").isdigit() else None
    if value is None or value < 1:
        raise ValueError(f"expected a positive integer, got {text!r}")
    return value


CLIP_RULES = ("off", "norm:X", "value:X")


def clip_rule(text: str) -> dict[str, float]:
    """``"off"``, ``"norm:X"`` (``clip_by_global_norm(X)``) or ``"value:X"`` (each gradient entry
    clipped to ±X, as the uRNN authors clip) -> ``{"clip_norm": ..., "clip_value": ...}`` (0 = off)."""
    if text == "off":
        return {"clip_norm": 0.0, "clip_value": 0.0}
    kind, _, bound = text.partition(":")
    try:
        value = float(bound)
    except ValueError:
        value = math.nan
    if kind not in ("norm", "value") or not math.isfinite(value) or value <= 0:
        raise ValueError(f"a clip rule is one of {', '.join(CLIP_RULES)} with X > 0, got {text!r}")
    return {"clip_norm": value if kind == "norm" else 0.0, "clip_value": value if kind == "value" else 0.0}


def model_hidden(cfg, name: str) -> int:
    """Model ``name``'s hidden size: its ``--model-hidden`` entry, else ``--hidden``."""
    return per_model("model_hidden", cfg.model_hidden, tuple(MODELS), positive_int).get(name, cfg.hidden)


def model_clip(cfg, name: str) -> dict[str, float] | None:
    """Model ``name``'s ``--model-clip`` rule as ``{"clip_norm", "clip_value"}``, or None (the run's own)."""
    return per_model("model_clip", cfg.model_clip, tuple(MODELS), clip_rule).get(name)


def cell_options(text: str) -> dict[str, float]:
    """``"r_min:0.9,r_max:0.999"`` -> ``{"r_min": 0.9, "r_max": 0.999}``: options for a model's cell."""
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition(":")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise ValueError(f"cell options are KEY:NUMBER entries joined by commas, got {item!r}")
    return out


def model_options(cfg, name: str) -> dict[str, float]:
    """Model ``name``'s ``--model-options`` (its cell's options, e.g. the LRU's ring), else ``{}``."""
    return per_model("model_options", getattr(cfg, "model_options", ()), tuple(MODELS), cell_options).get(name, {})


def execution_path(text: str) -> str:
    if text not in PATHS:
        raise ValueError(f"a path is one of {', '.join(PATHS)}, got {text!r}")
    return text


def model_path(cfg, name: str) -> str | None:
    """Model ``name``'s ``--model-path`` (an execution path, ``rnnlab.unroll.PATHS``), else None (its cell's default)."""
    return per_model("model_path", getattr(cfg, "model_path", ()), tuple(MODELS), execution_path).get(name)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model as the run's flags set it (hashable, so a script can cache its programs on it):
    its name, hidden size (``--model-hidden``), cell options (``--model-options``) and execution
    path (``--model-path``; None is its cell's default)."""

    name: str
    hidden: int
    cell_options: tuple[tuple[str, float], ...] = ()
    path: str | None = None

    def layer(self, *, cell_options=None, **layer_options):
        """``zoo.make_layer`` of this model (``cell_options`` add to the spec's, e.g. a swept radius)."""
        options = dict(self.cell_options) | (cell_options or {})
        return zoo.make_layer(self.name, self.hidden, cell_options=options, path=self.path, **layer_options)

    def resolved_path(self) -> str:
        """The path the model runs: ``path``, or its cell's default."""
        return resolve_path(_probe_cell(self.name, **dict(self.cell_options)), self.path)


def _probe_cell(name: str, **options):
    """Model ``name``'s cell at a tiny size, to read its kind and options (chrono's T_max must exceed 2)."""
    return zoo.make_cell(name, 3, t_max=3, **options)


def model_spec(cfg, name: str) -> ModelSpec:
    """Model ``name`` as the run trains it."""
    return ModelSpec(
        name,
        model_hidden(cfg, name) if hasattr(cfg, "model_hidden") else cfg.hidden,
        tuple(sorted(model_options(cfg, name).items())),
        model_path(cfg, name),
    )


def check_per_model(cfg) -> None:
    """``ConfigError`` for a bad ``--model-hidden``, ``--model-clip`` or ``--model-options`` entry
    (for ``Config.check``); the options of each model the run trains must build its cell."""
    if hasattr(cfg, "model_hidden"):
        model_hidden(cfg, "")
    if hasattr(cfg, "model_clip"):
        model_clip(cfg, "")
    for name in getattr(cfg, "models", ()):
        try:
            resolve_path(_probe_cell(name), model_path(cfg, name))
        except ValueError as e:
            raise ConfigError(f"--model-path {name}: {e}") from None
        options = model_options(cfg, name)
        if not options:
            continue
        # make_cell's own keywords (forget_bias, t_max) come from the script, not from the cell options
        own = sorted(set(options) & set(inspect.signature(zoo.make_cell).parameters))
        if own:
            raise ConfigError(f"--model-options: {name}'s {own[0]} is set by the script, not as a cell option")
        accepted = {f.name for f in dataclasses.fields(_probe_cell(name))} - {"hidden_size"}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise ConfigError(
                f"--model-options: {name} has no option {unknown[0]!r}; its cell takes {', '.join(sorted(accepted))}"
            )
        try:
            _probe_cell(name, **options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"--model-options {name}: {e}") from None


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
    if getattr(cfg, "quick", False):
        explicit = {a.split("=")[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
        explicit |= {name[3:] for name in explicit if name.startswith("no_")}
        cfg.apply_quick()
        # flags given on the command line win over --quick's defaults
        for name in explicit & values.keys():
            setattr(cfg, name, values[name])
    try:
        check_fields(cfg)
    except ConfigError as e:
        parser.error(str(e))  # argparse's way: usage, "error: ...", exit status 2
    if isinstance(cfg, BaseConfig):
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


class RunLockedError(InputError):
    """The output folder is held by another live run."""


_HELD: dict[pathlib.Path, int] = {}  # folders this process has locked -> the lock file's descriptor


def lock_folder(path: pathlib.Path) -> None:
    """Hold an exclusive lock on ``path/.lock`` for the rest of this process.

    ``fcntl.flock``: the kernel releases it when the process dies, SIGKILL included, so a
    killed run never blocks a ``--resume``.  Re-entrant within one process (a script run
    twice in a notebook); a folder another process holds raises ``RunLockedError`` naming
    the holder."""
    key = path.resolve()
    if key in _HELD:
        return
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "a process that is starting"
        os.close(fd)
        raise RunLockedError(
            f"{path} is in use by another run ({holder}); wait for it to end or choose another --out"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    _HELD[key] = fd


class RunDir:
    """An experiment's output folder; in a multi-process run only process 0 writes it
    (``writes`` is False elsewhere and every write is skipped)."""

    def __init__(self, cfg: BaseConfig):
        self.cfg = cfg
        self.path = pathlib.Path(cfg.out)
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.results_path = self.path / "results.json"
        self.writes = parallel.is_primary()
        if not self.writes:
            return
        # one run per folder: two into one would interleave their metrics and checkpoints
        self.path.mkdir(parents=True, exist_ok=True)
        lock_folder(self.path)
        # config.json alone is a run that stopped before its first record (bad data, say): not worth keeping
        checkpoints = self.path / "checkpoints"
        holds_run = (
            self.metrics_path.exists()
            or self.results_path.exists()
            or (checkpoints.is_dir() and any(checkpoints.iterdir()))
        )
        if holds_run and not cfg.resume:
            raise FileExistsError(
                f"{self.path} already holds a run; pass --resume to continue it or choose another --out"
            )
        if cfg.resume and self.config_path.exists():
            check_compatible(json.loads(self.config_path.read_text()), config_dict(cfg))
        write_json(self.config_path, config_dict(cfg))

    def checkpoint_dir(self, name: str = "") -> pathlib.Path:
        return self.path / "checkpoints" / name

    def figure(self, name: str) -> pathlib.Path:
        return self.path / f"{name}.png"

    def save_figure(self, fig, name: str, dpi: int = 110) -> None:
        """``fig`` as ``<out>/<name>.png`` (process 0 only), then closed."""
        import matplotlib.pyplot as plt

        if self.writes:
            fig.savefig(self.figure(name), dpi=dpi)
        plt.close(fig)

    def truncate_metrics(self, model: str | None, after_step: int) -> None:
        """Drop ``model``'s records past ``after_step`` (logged after the checkpoint a
        resumed run restarts from), so the resumed file equals an uninterrupted one.  Process 0
        alone: another process rewriting the file would drop what process 0 appends meanwhile."""
        if not self.writes or not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("model") == model and record["step"] > after_step:
                continue
            kept.append(line)
        self.metrics_path.write_text("".join(f"{line}\n" for line in kept))

    def logger(self, model: str | None = None):
        def log(record: dict) -> None:
            if not self.writes:
                return
            record = {"model": model, **record} if model is not None else record
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

        return log

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def records(self, model: str) -> list[dict]:
        """The metrics records of one model, in step order."""
        return [r for r in self.read_metrics() if r.get("model") == model]

    def curve(self, model: str, key: str = "loss"):
        """``(steps [N], values [S, N])`` of a per-seed metric, for ``plots.learning_curves``."""
        records = self.records(model)
        return [r["step"] for r in records], np.array([r[f"{key}_per_point"] for r in records]).T

    def write_results(self, results: dict) -> None:
        if self.writes:
            write_json(self.results_path, results)


def check_compatible(saved: dict, current: dict) -> None:
    """A resumed run must have the same config but for ``RESUMABLE_FIELDS``."""
    differing = sorted(
        k for k in saved.keys() | current.keys() if k not in RESUMABLE_FIELDS and saved.get(k) != current.get(k)
    )
    if differing:
        detail = ", ".join(f"{k}: saved {saved.get(k)!r} vs now {current.get(k)!r}" for k in differing)
        raise InputError(f"cannot resume: the config differs from the saved run ({detail})")


def write_json(path, obj) -> None:
    path = pathlib.Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)  # atomic: a killed run never leaves half a file


# -- checkpoints of a run -----------------------------------------------------


def checkpoint_meta(cfg, data_position: int, vocab=None) -> dict:
    """What a checkpoint records besides the arrays."""
    return {
        "config": config_dict(cfg),
        "data_position": int(data_position),
        "vocab": vocab.to_dict() if vocab is not None else None,
    }


def resume(checkpointer, target_state, cfg, vocab=None):
    """``(state, step)`` from the newest good checkpoint, or ``(target_state, 0)`` if there is none.

    A checkpoint of an incompatible config or another vocabulary is an error, not a silent restart.
    In a multi-process run process 0 reads and checks it and every process gets its arrays.
    """
    error, found = None, None
    try:
        found = _restore_checked(checkpointer, target_state, cfg, vocab)
    except ValueError as e:
        error = e
    if jax.process_count() > 1:
        failed = int(parallel.broadcast_from_primary(np.int32(error is not None)))
        if failed:
            raise error or ValueError("cannot resume: process 0 refused the checkpoint (see its error)")
        state, step = found if found else (jax.device_get(target_state), 0)
        step = int(parallel.broadcast_from_primary(np.int32(step)))
        state = parallel.broadcast_from_primary(state)
        return (state, step) if step else (target_state, 0)
    if error is not None:
        raise error
    return (target_state, 0) if found is None else found


def _restore_checked(checkpointer, target_state, cfg, vocab):
    found = checkpointer.restore_latest(target_state)
    if found is None:
        return None
    step, state, meta = found
    check_compatible(meta["config"], config_dict(cfg))
    saved_vocab, vocab_dict = meta.get("vocab"), (vocab.to_dict() if vocab is not None else None)
    if saved_vocab != vocab_dict:
        size = lambda v: len(v["tokens"]) if v else 0
        raise InputError(
            f"cannot resume from {checkpointer.path(step)}: its vocabulary ({size(saved_vocab)} tokens) "
            f"differs from this run's ({size(vocab_dict)} tokens)"
        )
    if meta["data_position"] != step:
        raise ValueError(
            f"checkpoint {checkpointer.path(step)} records data position {meta['data_position']} for step {step}"
        )
    return state, step


def train_sweep(
    run: RunDir,
    name: str,
    cfg,
    sweep: sweeps.Sweep,
    *,
    loss_fn,
    optimizer,
    batch_fn,
    init_keys,
    init_fn=None,
    params=None,
    hyperparameters=(),
    num_steps=None,
    log_every=None,
    vocab=None,
    tolerate_diverged: bool = False,
    batch_size: int | None = None,
    constrain=None,
):
    """Train one model at every point of ``sweep`` side by side (one compiled step, rows
    sharded over every device), with the run's checkpoints, resumption and metrics log
    (records tagged ``"model": name``, per-point values in ``<metric>_per_point``).

    ``params``: host rows ``[S, ...]``, or else ``init_fn(key, point) -> params`` makes them
    (``rnnlab.sweep.init_params``); ``batch_fn(step) -> host batch [S, ...]``, or with ``batch_size``
    ``batch_fn(step, examples) -> [S, len(examples), ...]`` (``rnnlab.sweep.train``); ``hyperparameters``: the columns that set
    optimizer hyperparameters (``learning_rate``, ``clip_norm``, ...).  Returns the final
    ``TrainState`` as host rows ``[S, ...]``.  Raises ``NonFiniteError`` like ``fit``
    (with ``tolerate_diverged``, only once every point has diverged).  ``vocab`` (text
    tasks) is saved in every checkpoint and checked on resume.  ``constrain`` projects the params
    after each update (``rnnlab.linen.constrain_recurrent``: IndRNN's bound).
    """
    if params is None:
        params = sweeps.init_params(sweep, init_fn, init_keys)
    state = sweeps.init_states(sweep, optimizer, params, init_keys, hyperparameters)
    checkpointer = Checkpointer(run.checkpoint_dir(name), keep=cfg.keep_checkpoints, every=cfg.checkpoint_every)
    logged = [0]  # the last step logged: where a Ctrl-C says the run got to
    log = run.logger(name)

    def log_step(record: dict) -> None:
        logged[0] = record.get("step", logged[0])
        log(record)

    try:
        if cfg.resume:
            state, start = resume(checkpointer, state, cfg, vocab)
            run.truncate_metrics(name, start)
            logged[0] = start
        return sweeps.train(
            sweep,
            state,
            loss_fn,
            optimizer,
            batch_fn,
            num_steps=cfg.steps if num_steps is None else num_steps,
            checkpointer=checkpointer,
            log_every=cfg.log_every if log_every is None else log_every,
            log=log_step,
            meta_fn=lambda step: checkpoint_meta(cfg, step, vocab),
            progress="none" if cfg.quiet or not run.writes else "auto",
            desc=name,
            tolerate_diverged=tolerate_diverged,
            constrain=constrain,
            batch_size=batch_size,
        )
    except KeyboardInterrupt:
        latest = checkpointer.latest_path()
        saved = f"last checkpoint {latest}" if latest else "no checkpoint yet"
        raise Interrupted(f"interrupted training {name}, last logged step {logged[0]}; {saved}") from None
    finally:
        checkpointer.close()


def train_seeds(
    run: RunDir,
    name: str,
    cfg,
    *,
    init_fn,
    loss_fn,
    optimizer,
    batch_fn,
    init_keys,
    batch_size: int,
    num_steps=None,
    log_every=None,
    vocab=None,
):
    """``train_sweep`` over seeds only, data parallel: each step's ``batch_size`` examples are
    split over every device of every process.  ``init_fn(key) -> params``, one key per seed in
    ``init_keys``; ``batch_fn(step, examples: slice) -> batch [S, len(examples), ...]``, called
    by each process for its own examples only."""
    seeds = sweeps.Sweep([{"seed": i} for i in range(len(init_keys))], data=jax.device_count())
    init = jax.jit(init_fn)  # one compile for every seed
    return train_sweep(
        run,
        name,
        cfg,
        seeds,
        init_fn=lambda key, point: init(key),
        loss_fn=loss_fn,
        optimizer=optimizer,
        batch_fn=batch_fn,
        init_keys=init_keys,
        num_steps=num_steps,
        log_every=log_every,
        vocab=vocab,
        batch_size=batch_size,
    )
