"""An experiment's output folder: ``config.json``, ``metrics.jsonl``, ``results.json``, figures
and ``checkpoints/``; one run per folder (a lock), and ``--resume`` from its last good checkpoint.

* ``metrics.jsonl`` holds one JSON object per logged step: ``step``, ``loss``, and ``model``
  when a script trains several.
* ``--resume`` continues from the last good checkpoint exactly; without it an output folder
  that already holds a run is never overwritten.  Only process 0 writes the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import socket
import sys

import jax
import numpy as np

from rnnlab import parallel
from rnnlab.experiment.cli import BaseConfig, config_dict
from rnnlab.validation import InputError

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
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"--out {self.path} is a file, not a folder: choose a folder for the run")
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
        if cfg.resume and not holds_run:
            print(f"--resume: {self.path} holds no run yet; starting one from scratch", file=sys.stderr)
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

    def save_figures(self, figures: dict) -> None:
        """Every ``{name: figure}`` as ``save_figure`` saves one."""
        for name, fig in figures.items():
            self.save_figure(fig, name)

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

    def curve(self, model: str, key: str = "loss", rows=None):
        """``(steps [N], values [S, N])`` of a per-seed metric, for ``plots.learning_curves``; given
        ``rows`` (sweep points' indices, e.g. one learning rate's seeds), those points' ``values[rows]``."""
        steps, values_sn = metric_curve(self.metrics_path, model, key)
        return steps, values_sn if rows is None else values_sn[rows]

    def write_results(self, results: dict) -> None:
        if self.writes:
            write_json(self.results_path, results)

    def finish(self, results: dict, compile_stats, save_figures) -> dict | None:
        """The end of a script's ``main``: the device and process counts and the compile
        statistics go into ``results``; on the process that writes, results.json, then
        ``save_figures()`` (a figure that fails leaves the results written).  Returns the
        results there, None elsewhere."""
        results["devices"], results["processes"] = jax.device_count(), jax.process_count()
        results["compile"] = compile_stats.as_dict()
        if not self.writes:
            return None
        self.write_results(results)
        save_figures()
        return results


def read_metrics(path) -> list[dict]:
    """A run's ``metrics.jsonl`` as records ([] if there is none yet)."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def metric_curve(path, model: str, key: str = "loss"):
    """``(steps [N], values [S, N])`` of one model's per-seed metric in the ``metrics.jsonl`` at
    ``path``: ``RunDir.curve``, and a finished run's folder read back without opening it as a run.
    The steps are those whose records hold it (a held-out metric: the evaluation steps)."""
    records = [r for r in read_metrics(path) if r.get("model") == model and f"{key}_per_point" in r]
    return [r["step"] for r in records], np.array([r[f"{key}_per_point"] for r in records]).T


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
