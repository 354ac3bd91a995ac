"""The one place that knows about meshes, shardings, ``jax.distributed`` and
the compilation cache.

Every device of every process sits in one 2-D mesh, ``("sweep", "data")``:
a sweep's rows (one per grid point or seed) are split over ``"sweep"``, and
each row's batch of examples over ``"data"`` (data parallelism: the params
and optimizer state of a row are replicated along ``"data"``, and XLA sums
the gradients across it).  A sweep of many points uses ``data=1``; one
model trained on big batches uses ``data=jax.device_count()``.

    parallel.initialize(coordinator_address, num_processes, process_id)  # before any other JAX call
    mesh = parallel.sweep_mesh(data=1)            # (devices / data) x data
    rows_x = parallel.put(host_x, mesh)           # host [S, ...] -> global array, row s on its devices
    batch = parallel.put_batch(make_rows, (S, B), mesh)   # [S, B, ...]: each device's rows made where it is
    host_x = parallel.to_host(rows_x)             # every process gets the whole array back

``put`` and ``put_batch`` build global arrays with
``jax.make_array_from_callback``: each process makes only the parts its own
devices hold, so the same code runs on one CPU, on 8 GPUs and on several
hosts, and no process ever builds another's examples.  ``to_host`` gathers
with ``process_allgather`` when the array spans processes (a collective:
every process must call it).

``"sweep"`` is an Explicit axis (vmap keeps rows apart by construction);
``"data"`` is Auto, so XLA places the gradient all-reduce of the batch
contraction itself.
"""

from __future__ import annotations

import os
import pathlib

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from rnnlab.validation import InputError

SWEEP_AXIS, DATA_AXIS = "sweep", "data"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: int = 60,
) -> bool:
    """Join a multi-process run (``jax.distributed.initialize``) when one is asked for.

    Arguments left ``None`` are read from ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.  With no coordinator address
    this is a one-process run and nothing happens.  Must run before any other
    JAX call.  Returns whether it initialised.
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = _env_int("JAX_NUM_PROCESSES")
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = _env_int("JAX_PROCESS_ID")
    if coordinator_address is None:
        if num_processes not in (None, 1) or process_id not in (None, 0):
            raise InputError("--num-processes/--process-id need --coordinator-address HOST:PORT")
        return False
    check_address(coordinator_address)
    if num_processes is None or process_id is None:
        raise InputError("--coordinator-address needs --num-processes and --process-id")
    if not 0 <= process_id < num_processes:
        raise InputError(f"--process-id must lie in 0..{num_processes - 1}, got {process_id}")
    if jax.distributed.is_initialized():
        return True
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        cluster_detection_method="deactivate",
        initialization_timeout=timeout_s,
    )
    return True


def _env_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise InputError(f"{name} must be an integer, got {os.environ[name]!r}") from None


def check_address(address: str) -> str:
    """``HOST:PORT`` (an IPv6 host in brackets), port in 1..65535, else an ``InputError``."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"--coordinator-address must be HOST:PORT with a port in 1..65535, got {address!r}")
    return address


def is_primary() -> bool:
    """Process 0: the one that writes the run folder."""
    return jax.process_index() == 0


def sweep_mesh(devices=None, data: int = 1) -> jax.sharding.Mesh:
    """The ``("sweep", "data")`` mesh over ``devices`` (all devices of all processes):
    ``len(devices) // data`` rows of ``data`` devices each."""
    devices = jax.devices() if devices is None else list(devices)
    if data < 1 or len(devices) % data:
        raise ValueError(f"the data axis ({data} devices) must divide the {len(devices)} devices")
    return jax.make_mesh(
        (len(devices) // data, data),
        (SWEEP_AXIS, DATA_AXIS),
        axis_types=(AxisType.Explicit, AxisType.Auto),
        devices=devices,
    )


def padded_size(size: int, mesh) -> int:
    """``size`` rounded up to a multiple of the mesh's ``"sweep"`` axis."""
    n = mesh.shape[SWEEP_AXIS]
    return -(-size // n) * n


def row_sharding(mesh) -> NamedSharding:
    """Rows over ``"sweep"``, each row whole on every device of its ``"data"`` group."""
    return NamedSharding(mesh, PartitionSpec(SWEEP_AXIS))


def put(host_tree, mesh):
    """Host arrays ``[S, ...]`` (S a multiple of the ``"sweep"`` axis) -> global arrays sharded by row."""
    sharding = row_sharding(mesh)

    def one(a):
        a = np.asarray(a)
        if a.shape[0] % mesh.shape[SWEEP_AXIS]:
            raise ValueError(
                f"leading axis {a.shape[0]} is not a multiple of the sweep axis "
                f"({mesh.shape[SWEEP_AXIS]} device groups)"
            )
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(one, host_tree)


def check_batch_size(batch_size: int, mesh) -> None:
    """The batch is split evenly over the ``"data"`` axis or not at all."""
    data = mesh.shape[DATA_AXIS]
    if batch_size % data:
        raise InputError(
            f"the batch size {batch_size} does not divide by the {data} devices it is split over; "
            f"use a multiple of {data} (--batch-size)"
        )


def put_batch(make_rows, rows_shape: tuple[int, int], mesh):
    """A batch ``[S, B, ...]`` with the S rows over ``"sweep"`` and the B examples over ``"data"``.

    ``make_rows(examples: slice) -> host tree [S, len(examples), ...]`` is called once per
    distinct slice of examples that this process's devices hold, never for another
    process's examples (several hosts: each one loads its own part of the batch).
    """
    num_rows, batch_size = rows_shape
    check_batch_size(batch_size, mesh)
    sharding = NamedSharding(mesh, PartitionSpec(SWEEP_AXIS, DATA_AXIS))
    made: dict[tuple[int, int], tuple] = {}

    def rows_for(examples: slice):
        """(treedef, host leaves [S, b, ...]) of one slice of examples, made once."""
        lo, hi, _ = examples.indices(batch_size)
        if (lo, hi) not in made:
            tree = make_rows(slice(lo, hi))
            leaves = [np.asarray(a) for a in jax.tree.leaves(tree)]
            for a in leaves:
                if a.shape[:2] != (num_rows, hi - lo):
                    raise ValueError(
                        f"batch rows for examples {lo}:{hi}: expected a leading shape "
                        f"{(num_rows, hi - lo)}, got {a.shape}"
                    )
            made[(lo, hi)] = jax.tree.structure(tree), leaves
        return made[(lo, hi)]

    first_index = next(iter(sharding.addressable_devices_indices_map((num_rows, batch_size)).values()))
    treedef, example = rows_for(first_index[1])
    arrays = [
        jax.make_array_from_callback(
            (num_rows, batch_size) + a.shape[2:],
            sharding,
            lambda index, i=i: rows_for(index[1])[1][i][(index[0], slice(None)) + tuple(index[2:])],
        )
        for i, a in enumerate(example)
    ]
    return jax.tree.unflatten(treedef, arrays)


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
    _active: list[CompileStats] = []  # JAX's listeners are process-wide and never removed: register once

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
