"""Checkpoints: the one module that talks to Orbax.

A checkpoint at step s holds two items:
  * ``state``: any pytree of arrays (params, optimizer state, step, RNG key
    data), restored into the structure, dtypes and devices of a target tree
    built by the caller on the current machine -- so a checkpoint written on
    a GPU restores on a CPU;
  * ``meta``: JSON -- the data position, the vocabulary, the config, and a
    SHA-256 digest of every array in ``state``.

Saves are synchronous and atomic (Orbax writes a temporary folder and renames
it), so a process killed mid-save leaves the previous checkpoints intact (the
next ``Checkpointer`` removes the temporary folder).  A save that fails (a full
disk) raises ``CheckpointWriteError`` naming the folder; the checkpoints
already saved stay as they were.  On restore the digest is checked: a
truncated or corrupted latest checkpoint is reported with a warning, moved
aside to ``<step>.unreadable`` (never deleted: it is the user's file) so the
run can write that step again, and the previous one is used.

Each checkpoint also lists the SHA-256 of its files (``files.sha256.json``,
written after Orbax commits it) and restore checks them before Orbax reads
anything: a damaged file is named, and Orbax never starts a read that fails
half-way (its failed concurrent reads call back into a closed event loop).
A checkpoint without the list (killed between commit and list) is read and
checked against the array digest alone.

In a multi-process run only process 0 reads and writes checkpoints (they
hold host arrays gathered from every process); on the others a
``Checkpointer`` is inactive: it saves nothing and finds nothing, and the
caller broadcasts what process 0 restored (``rnnlab.experiment.resume``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import signal
import threading
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp


def tree_digest(tree) -> str:
    """SHA-256 over every leaf's dtype, shape and bytes, in tree order."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(leaf)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class CorruptCheckpointError(RuntimeError):
    pass


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, permissions); earlier ones are intact."""


FILE_DIGESTS = "files.sha256.json"


def _file_digests(folder: pathlib.Path) -> dict[str, str]:
    """``{path relative to folder: SHA-256}`` of every file under ``folder`` but the list itself."""
    digests = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != FILE_DIGESTS):
        h = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
        digests[path.relative_to(folder).as_posix()] = h.hexdigest()
    return digests


def _write_file_digests(folder: pathlib.Path) -> None:
    tmp = folder / (FILE_DIGESTS + ".tmp")
    tmp.write_text(json.dumps(_file_digests(folder), indent=0))
    tmp.replace(folder / FILE_DIGESTS)


def _check_file_digests(folder: pathlib.Path) -> None:
    listed = folder / FILE_DIGESTS
    if not listed.exists():
        return
    want, have = json.loads(listed.read_text()), _file_digests(folder)
    for name in sorted(want.keys() | have.keys()):
        if name not in have:
            raise CorruptCheckpointError(f"checkpoint {folder}: file {name} is missing")
        if name not in want:
            continue  # added later (Orbax metadata, say): the array digest still checks the contents
        if have[name] != want[name]:
            raise CorruptCheckpointError(f"checkpoint {folder}: file {name} differs from when it was saved")


@contextlib.contextmanager
def _deferred_sigint():
    """SIGINT inside the block is held until its end, then given to the handler that was in
    place (Python's raises ``KeyboardInterrupt``; a script's ``rnnlab.experiment.cli`` prints
    its line and exits); a SIGINT that was ignored stays ignored.  Only the main thread can
    hold it; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received and previous is not signal.SIG_IGN:
        if callable(previous):
            previous(signal.SIGINT, None)
        raise KeyboardInterrupt


class Checkpointer:
    """Save every ``every`` steps (and whenever asked), keep the last ``keep``."""

    def __init__(self, directory: str | pathlib.Path, keep: int = 3, every: int = 0, active: bool | None = None):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = pathlib.Path(directory).absolute()
        self.every = every
        self.active = jax.process_index() == 0 if active is None else active
        self._manager = None
        self.last_saved: pathlib.Path | None = None  # the newest checkpoint known whole (a plain attribute)
        if self.active:
            multiprocess = {}
            if jax.process_count() > 1:  # process 0 alone: no barriers with processes that never call Orbax
                multiprocess["multiprocessing_options"] = ocp.options.MultiprocessingOptions(
                    primary_host=jax.process_index(), active_processes={jax.process_index()}
                )
                self.directory.mkdir(parents=True, exist_ok=True)  # Orbax won't create it then
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=keep,
                    enable_async_checkpointing=False,
                    cleanup_tmp_directories=True,
                    create=not multiprocess,
                    **multiprocess,
                ),
            )
            self.last_saved = self.latest_path()

    def steps(self) -> list[int]:
        if not self.active:
            return []
        self._manager.reload()  # other processes (a killed run) may have written since
        return sorted(self._manager.all_steps())

    def path(self, step: int) -> pathlib.Path:
        return self.directory / str(step)

    def due(self, step: int) -> bool:
        return self.every > 0 and step % self.every == 0

    def save(self, step: int, state, meta: dict) -> None:
        """Write one step's checkpoint.  A Ctrl-C that lands inside waits for the save to finish,
        then raises: a checkpoint is whole or absent, and Orbax is never cut mid-write."""
        if not self.active:
            return
        with _deferred_sigint():
            self._save(step, state, meta)

    def _save(self, step: int, state, meta: dict) -> None:
        state = jax.device_get(state)
        meta = dict(meta, step=int(step), digest=tree_digest(state))
        try:
            self._manager.save(
                int(step),
                args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                force=True,
            )
            self._manager.wait_until_finished()
            _write_file_digests(self.path(step))
            self.last_saved = self.path(step)
        except OSError as e:
            kept = ", ".join(map(str, self.steps())) or "none"
            raise CheckpointWriteError(
                e.errno,
                f"could not save the checkpoint of step {step} in {self.directory}: "
                f"{e.strerror or e}; the checkpoints already there (steps: {kept}) are intact",
            ) from e

    def restore(self, step: int, target):
        """``(state, meta)`` of one step, checked against its digest."""
        _check_file_digests(self.path(step))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        )
        state, meta = restored["state"], dict(restored["meta"])
        if jax.tree.structure(state) != jax.tree.structure(target):
            raise CorruptCheckpointError(f"checkpoint {self.path(step)} holds a different state structure")
        if tree_digest(state) != meta.get("digest"):
            raise CorruptCheckpointError(f"checkpoint {self.path(step)} does not match its digest")
        return state, meta

    def restore_latest(self, target):
        """The newest readable checkpoint as ``(step, state, meta)``, or None if there is none.

        Unreadable checkpoints are skipped with a warning naming them.
        """
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore(step, target)
            except Exception as e:  # noqa: BLE001 - any failure to read means "corrupt"
                aside = self._move_aside(step)
                warnings.warn(
                    f"checkpoint at step {step} ({self.path(step)}) is unreadable "
                    f"({type(e).__name__}: {str(e)[:200]}); moved it to {aside.name} and "
                    "trying the previous one",
                    stacklevel=2,
                )
                continue
            self.last_saved = self.path(step)
            return step, state, meta
        self.last_saved = None
        return None

    def _move_aside(self, step: int) -> pathlib.Path:
        """Rename an unreadable checkpoint to ``<step>.unreadable`` (``.unreadable-2``, ...) so the run
        can save that step again; Orbax ignores the name."""
        aside, n = self.directory / f"{step}.unreadable", 1
        while aside.exists():
            n += 1
            aside = self.directory / f"{step}.unreadable-{n}"
        self.path(step).rename(aside)
        self._manager.reload()
        return aside

    def read_meta(self, step: int | None = None) -> dict:
        """The JSON part of a checkpoint (the latest by default), without its arrays."""
        steps = self.steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        restored = self._manager.restore(
            steps[-1] if step is None else step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
        )
        return dict(restored["meta"])

    def latest_path(self) -> pathlib.Path | None:
        steps = self.steps()
        return self.path(steps[-1]) if steps else None

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
