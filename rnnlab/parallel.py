"""The one place that knows about meshes, shardings, ``jax.distributed`` and
the compilation cache.

A sweep's leading axis (one row per grid point) is the ``"sweep"`` axis of a
1-D mesh over every device of every process:

    parallel.initialize(coordinator_address, num_processes, process_id)  # before any other JAX call
    mesh = parallel.sweep_mesh()                  # Explicit axis over jax.devices()
    rows_x = parallel.put(host_x, mesh)           # host [S, ...] -> global array, row s on its device
    host_x = parallel.to_host(rows_x)             # every process gets the whole array back

``put`` builds global arrays with ``jax.make_array_from_callback``: each
process fills only the rows its own devices hold, so the same code runs on
one CPU, on 8 GPUs and on several hosts.  ``to_host`` gathers with
``process_allgather`` when the array spans processes (a collective: every
process must call it).
"""

from __future__ import annotations

import os
import pathlib

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

SWEEP_AXIS = "sweep"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 60) -> bool:
    """Join a multi-process run (``jax.distributed.initialize``) when one is asked for.

    Arguments left ``None`` are read from ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.  With no coordinator address
    this is a one-process run and nothing happens.  Must run before any other
    JAX call.  Returns whether it initialised.
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    if coordinator_address is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise ValueError("--num-processes/--process-id need --coordinator-address HOST:PORT")
        return False
    if num_processes is None or process_id is None:
        raise ValueError("--coordinator-address needs --num-processes and --process-id")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must lie in 0..{num_processes - 1}, got {process_id}")
    if jax.distributed.is_initialized():
        return True
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id,
        cluster_detection_method="deactivate", initialization_timeout=timeout_s,
    )
    return True


def is_primary() -> bool:
    """Process 0: the one that writes the run folder."""
    return jax.process_index() == 0


def sweep_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh with an Explicit ``"sweep"`` axis over ``devices`` (all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (SWEEP_AXIS,), axis_types=(AxisType.Explicit,), devices=devices)


def padded_size(size: int, mesh) -> int:
    """``size`` rounded up to a multiple of the mesh's device count."""
    n = mesh.devices.size
    return -(-size // n) * n


def row_sharding(mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(SWEEP_AXIS))


def put(host_tree, mesh):
    """Host arrays ``[S, ...]`` (S a multiple of the device count) -> global arrays sharded by row."""
    sharding = row_sharding(mesh)

    def one(a):
        a = np.asarray(a)
        if a.shape[0] % mesh.devices.size:
            raise ValueError(f"leading axis {a.shape[0]} is not a multiple of {mesh.devices.size} devices")
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(one, host_tree)


def to_host(tree):
    """NumPy copies of (possibly sharded, possibly multi-process) arrays; every process gets all of it."""
    from jax.experimental import multihost_utils

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a)

    return jax.tree.map(one, tree)


def broadcast_from_primary(tree):
    """Process 0's host values on every process (e.g. a checkpoint only process 0 read)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.broadcast_one_to_all(tree))


# -- compilation: the persistent cache and what was compiled ------------------

def default_cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "rnnlab" / "jax_compile_cache"


def enable_compile_cache(setting: str | None) -> str | None:
    """Turn JAX's persistent compilation cache on: ``setting`` is a folder, ``"off"``, or
    ``None``/``""`` for ``$RNNLAB_COMPILE_CACHE`` if set (a folder or ``off``), else
    ``~/.cache/rnnlab/jax_compile_cache``.  Returns the folder used (or None).

    Every program is cached, however short its compile (JAX's default skips those under 1 s).
    """
    setting = setting or os.environ.get("RNNLAB_COMPILE_CACHE", "")
    if setting == "off":
        return None
    path = pathlib.Path(setting) if setting else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)


class CompileStats:
    """Counts XLA compilations and their seconds through JAX's monitoring events.

        with CompileStats() as stats:
            ...
        stats.as_dict()   # {"programs": N, "seconds": S, "cache_hits": K}

    ``programs`` counts the executables JAX built or loaded (JAX's compile event
    fires for a persistent-cache hit too), ``seconds`` the time spent on them, and
    ``cache_hits`` how many of them came from the persistent cache.
    """

    _COMPILE = "/jax/core/compile/backend_compile_duration"
    _HIT = "/jax/compilation_cache/cache_hits"
    _active: list["CompileStats"] = []  # JAX's listeners are process-wide and never removed: register once

    def __init__(self):
        self.programs, self.seconds, self.cache_hits = 0, 0.0, 0
        if not hasattr(CompileStats, "_registered"):
            jax.monitoring.register_event_duration_secs_listener(CompileStats._on_duration)
            jax.monitoring.register_event_listener(CompileStats._on_event)
            CompileStats._registered = True

    @staticmethod
    def _on_duration(event, duration, **_):
        if event == CompileStats._COMPILE:
            for stats in CompileStats._active:
                stats.programs += 1
                stats.seconds += duration

    @staticmethod
    def _on_event(event, **_):
        if event == CompileStats._HIT:
            for stats in CompileStats._active:
                stats.cache_hits += 1

    def __enter__(self):
        CompileStats._active.append(self)
        return self

    def __exit__(self, *exc):
        CompileStats._active.remove(self)

    def as_dict(self) -> dict:
        return {"programs": self.programs, "seconds": round(self.seconds, 3), "cache_hits": self.cache_hits}

