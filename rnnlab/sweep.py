"""Sweeps: a grid of configs run as few compiled programs, on every device and host.

A sweep is a list of points, each a dict of numbers (seed, learning rate,
clip norm, forget-gate bias, spectral radius, sequence length, ...).  Values
that only change array contents are *columns*: stacked on a leading axis and
vmapped inside one jitted program, so 64 points cost one compile.  Values
that change shapes or code (cell kind, hidden size, optimizer kind) are not
columns: give each its own ``Sweep``.

    points = grid(seed=range(3), learning_rate=[1e-3, 3e-3], forget_bias=[1.0, 3.0])   # 12 points
    sweep = Sweep(points)                       # rows padded to a multiple of the device count
    init = jax.jit(lambda key, fb: model_for(fb).init(key, x))      # one compile for every point
    params = init_params(sweep, lambda key, p: init(key, p["forget_bias"]), keys)
    state = init_states(sweep, optimizer, params, keys, hyperparameters=("learning_rate",))
    state = train(sweep, state, loss_fn, optimizer, batch_fn, num_steps=1000)   # host arrays [12, ...]
    grads = sweep.run(measure_fn, state.params, batch)     # any per-point function, one program

The rows are sharded over the ``"sweep"`` axis of a ``("sweep", "data")`` mesh
of every device of every process (``rnnlab.parallel``); padding rows repeat
the last point and are dropped from everything that comes back.  With
``Sweep(points, data=n)`` each row's batch is also split over ``n`` devices
(data parallelism); ``train(..., batch_size=B)`` then asks
``batch_fn(step, examples)`` for only the examples each process's devices
hold.  A sweep of one point is an ordinary run.
``rnnlab.experiment.train_sweep`` adds the run folder, checkpoints and
``--resume``.
"""

from __future__ import annotations

import itertools
import math
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from rnnlab import parallel
from rnnlab.train import Optimizer, TrainState, fit, init_state, make_train_step
from rnnlab.validation import InputError


def grid(**axes: Sequence) -> list[dict]:
    """Every combination of the given values, the last axis varying fastest:
    ``grid(lr=[1, 2], seed=range(3))`` -> 6 points ``{"lr": 1, "seed": 0}, ...``."""
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, range, np.ndarray)) or not len(values):
            raise ValueError(f"sweep axis {name!r} needs a non-empty list of values, got {values!r}")
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(axes[n]) for n in names))]


def rows_where(points: Sequence[Mapping[str, Any]], **values) -> list[int]:
    """The indices of the ``points`` whose entries equal ``values``, e.g. one learning rate's
    seeds among ``grid(learning_rate=..., seed=...)``: the rows of that sweep's arrays."""
    return [i for i, p in enumerate(points) if all(p[k] == v for k, v in values.items())]


class Sweep:
    """Points (dicts with the same numeric keys) laid out as rows over a device mesh."""

    def __init__(self, points: Sequence[Mapping[str, Any]], mesh=None, data: int = 1):
        points = [dict(p) for p in points]
        if not points:
            raise ValueError("a sweep needs at least one point")
        names = list(points[0])
        for i, p in enumerate(points):
            if list(p) != names:
                raise ValueError(f"sweep point {i} has keys {sorted(p)}, point 0 has {sorted(names)}")
            for k, v in p.items():
                if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool):
                    raise ValueError(
                        f"sweep point {i}: {k}={v!r} is not a number (shape or code changes need a Sweep of their own)"
                    )
        self.points, self.names = points, names
        self.mesh = parallel.sweep_mesh(data=data) if mesh is None else mesh
        self.size = len(points)
        self.padded_size = parallel.padded_size(self.size, self.mesh)
        self._programs: dict = {}

    def __len__(self) -> int:
        return self.size

    def column(self, name: str, dtype=None) -> np.ndarray:
        """One value per point: ``[S]`` (not padded)."""
        return np.asarray([p[name] for p in self.points], dtype)

    def columns(self) -> dict[str, np.ndarray]:
        """Every column, floats as float32 and ints as int32 (the dtypes a traced value gets)."""
        out = {}
        for name in self.names:
            col = self.column(name)
            out[name] = col.astype(np.int32 if np.issubdtype(col.dtype, np.integer) else np.float32)
        return out

    def broadcast(self, host_tree):
        """One host value for every point: each leaf ``[...]`` as rows ``[S, ...]`` (views, no copies),
        e.g. the same batch for every seed."""
        return jax.tree.map(lambda a: np.broadcast_to(a, (self.size, *np.shape(a))), host_tree)

    # -- rows: host [S, ...] <-> global [padded, ...] -----------------------
    def pad(self, host_tree):
        """``[S, ...] -> [padded, ...]``, repeating the last row."""
        extra = self.padded_size - self.size

        def one(a):
            a = np.asarray(a)
            if a.shape[:1] != (self.size,):
                raise ValueError(f"sweep rows: expected a leading axis of {self.size} points, got shape {a.shape}")
            return a if not extra else np.concatenate([a, np.repeat(a[-1:], extra, axis=0)])

        return jax.tree.map(one, host_tree)

    def put(self, host_tree):
        """Host rows ``[S, ...]`` -> global arrays ``[padded, ...]`` sharded over the mesh."""
        return parallel.put(self.pad(host_tree), self.mesh)

    def put_batch(self, make_rows: Callable[[slice], Any], batch_size: int):
        """A batch ``[padded, batch_size, ...]``, examples split over the ``"data"`` axis;
        ``make_rows(examples) -> host rows [S, len(examples), ...]`` is called only for the
        examples this process's devices hold."""
        return parallel.put_batch(
            lambda examples: self.pad(make_rows(examples)), (self.padded_size, batch_size), self.mesh
        )

    def gather(self, tree):
        """Global rows -> host NumPy ``[S, ...]``, padding dropped (on every process)."""
        return jax.tree.map(lambda a: a[: self.size], parallel.to_host(tree))

    # -- programs -----------------------------------------------------------
    def program(self, fn: Callable) -> Callable:
        """``jax.jit(jax.vmap(fn))`` over rows, compiled once per ``fn`` and input shapes; takes
        and returns global row arrays (use ``put`` / ``gather``)."""
        if fn not in self._programs:
            jitted = jax.jit(jax.vmap(fn))

            def call(*args):
                with jax.set_mesh(self.mesh):
                    return jitted(*args)

            self._programs[fn] = call
        return self._programs[fn]

    def run(self, fn: Callable, *host_args):
        """``fn`` on every point in one program: host rows in, host rows out."""
        return self.gather(self.program(fn)(*self.put(host_args)))


def named_keys(seed: int, name: str, count: int):
    """``count`` PRNG keys of ``name``'s own stream under ``seed``:
    ``split(fold_in(key(seed), crc32(name)), count)``, so each model of a run draws its own
    initial weights, the same on every machine and process (Python's ``hash`` is salted)."""
    return jax.random.split(jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode())), count)


def dataset_sums(sweep: Sweep, sums_fn: Callable, params, data: dict, chunk: int) -> dict:
    """Each point's totals over every example of a fixed set ``data`` (host arrays ``{"x": [N, ...],
    "y": [N, ...], ...}``, the same for every point): ``sums_fn(params, batch, weight_c) -> {name: scalar}``
    on ``chunk`` examples per call of one program (``params``: global rows, ``put``), added up on the host.

    The last chunk wraps around to the first examples with weight 0, so every call has one
    shape and each example counts once: ``total[name] = sum_n w_n f_n``, ``[S]`` per name."""
    n, total = len(data["y"]), None
    program = sweep.program(sums_fn)
    for start in range(0, n, chunk):
        rows = np.arange(start, start + chunk)
        batch = sweep.broadcast({k: v[rows % n] for k, v in data.items()})
        weight_sc = sweep.broadcast((rows < n).astype(np.float32))
        got = sweep.gather(program(params, *sweep.put((batch, weight_sc))))
        total = got if total is None else jax.tree.map(np.add, total, got)
    return total


def _key_data(sweep: Sweep, init_keys) -> np.ndarray:
    data = np.asarray(
        jax.random.key_data(init_keys)
        if jax.dtypes.issubdtype(getattr(init_keys, "dtype", None), jax.dtypes.prng_key)
        else init_keys
    )
    if len(data) != sweep.size:
        raise ValueError(f"init_keys: expected one key per point ({sweep.size}), got {len(data)}")
    return data


def host_memory_bytes() -> int:
    """This machine's memory, asked of the operating system alone (safe before JAX starts: a
    config check): its physical memory, or its control group's limit where that is smaller."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def machine_memory_bytes() -> int:
    """What this machine can hold: its memory (``host_memory_bytes``), or the first device's, if smaller."""
    limit = host_memory_bytes()
    stats = jax.local_devices()[0].memory_stats() or {}  # this process's own device; None on the CPU backend
    return min(limit, stats.get("bytes_limit", limit))


# The least a sweep point costs on the host besides its arrays: its dict of values, its row of
# each column, the bookkeeping of its metrics (a lower bound: refusals must never be wrong).
POINT_BYTES = 256


def training_bytes(points: int, batch: int, length: int, features: int, hidden: int, itemsize: int = 4) -> int:
    """The least a training run of ``points`` sweep points allocates for one step, before anything
    is built: each point's bookkeeping (``POINT_BYTES``), its batch of ``batch x length x features``
    numbers and the hidden states its backward keeps, ``batch x length x hidden``.  Python integers:
    a flag of 10**9 never overflows here.  Scripts refuse a run it puts beyond ``host_memory_bytes``
    (``rnnlab.experiment.check_memory``) instead of meeting a MemoryError half-way."""
    return int(points) * (POINT_BYTES + int(batch) * int(length) * (int(features) + int(hidden)) * int(itemsize))


def check_fits(param_shapes, num_points: int, *, copies: int = 4) -> None:
    """``InputError`` when the params of ``num_points`` points, ``copies`` times over (params,
    gradients and Adam's two moments), exceed the machine's memory: one line before anything
    is compiled or allocated (XLA would abort with a C++ stack).  Activations come on top."""
    per_point = sum(math.prod(p.shape) * np.dtype(p.dtype).itemsize for p in jax.tree.leaves(param_shapes))
    need, limit = copies * per_point * num_points, machine_memory_bytes()
    if need > limit:
        raise InputError(
            f"the run's parameters need about {need / 2**30:.3g} GiB ({num_points} points x {per_point / 2**30:.3g} "
            f"GiB, {copies} copies: params, gradients, optimizer moments) and this machine holds {limit / 2**30:.3g} "
            "GiB: use smaller models (--hidden, --model-hidden) or fewer points"
        )


def init_params(sweep: Sweep, init_fn: Callable, init_keys):
    """Host params rows ``[S, ...]``: ``init_fn(key, point)`` for every point (``point``: its dict).

    One call per point, on this process's first device, unsharded: initialisation is
    cheap to run but not to compile (random number generation), so make ``init_fn``
    call a jitted function that takes the point's values as arguments; then every
    point, and every later sweep of the same shapes, reuses its one compile.
    """
    keys = jax.random.wrap_key_data(_key_data(sweep, init_keys))
    check_fits(jax.eval_shape(lambda key: init_fn(key, sweep.points[0]), keys[0]), len(sweep.points))
    rows = [jax.tree.map(np.asarray, init_fn(key, point)) for key, point in zip(keys, sweep.points)]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *rows)


def init_states(
    sweep: Sweep, optimizer: Optimizer, params, init_keys, hyperparameters: Sequence[str] = ()
) -> TrainState:
    """Host ``TrainState`` rows ``[S, ...]`` from params rows, with the optimizer
    hyperparameters named in ``hyperparameters`` (``learning_rate``, ``clip_norm``, ...)
    taken from the sweep's columns: one vmapped program."""
    missing = [n for n in hyperparameters if n not in sweep.names]
    if missing:
        raise ValueError(f"hyperparameters {missing} are not columns of this sweep ({', '.join(sweep.names)})")
    columns = {n: v for n, v in sweep.columns().items() if n in hyperparameters}

    def one(params, key, values):
        return init_state(optimizer, params, key, **values)

    keys = jax.random.wrap_key_data(_key_data(sweep, init_keys))
    return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(params, keys, columns))


def train(
    sweep: Sweep,
    state: TrainState,
    loss_fn: Callable,
    optimizer: Optimizer,
    batch_fn: Callable[..., Any],
    *,
    num_steps: int,
    checkpointer=None,
    batch_size: int | None = None,
    constrain: Callable | None = None,
    **fit_kwargs,
) -> TrainState:
    """Train every point side by side: one compiled step for the whole sweep.

    ``state``: host rows from ``init_states`` (or a checkpoint).  ``batch_fn(step)``: host
    batch rows ``[S, ...]``; or, given ``batch_size``, ``batch_fn(step, examples: slice)``:
    rows ``[S, len(examples), ...]`` of only those examples of the step's batch (a
    ``Sweep(..., data=n)`` splits them over devices and hosts).  Returns host rows.
    ``fit_kwargs`` go to ``rnnlab.train.fit`` (logging, progress, ``tolerate_diverged``);
    checkpoints hold host rows without padding, so a run resumes on any device count.
    ``constrain``: projects the params after each update (``rnnlab.train.make_train_step``).
    """
    step = sweep.program(make_train_step(loss_fn, optimizer, constrain))
    if batch_size is None:
        put_batch = lambda i: sweep.put(batch_fn(i))
    else:  # put_batch refuses a batch size the data axis does not divide, before the first step
        put_batch = lambda i: sweep.put_batch(lambda examples: batch_fn(i, examples), batch_size)
    final = fit(
        step,
        sweep.put(state),
        put_batch,
        num_steps=num_steps,
        checkpointer=checkpointer,
        metrics_to_host=sweep.gather,
        save_state=lambda done, st, meta: checkpointer.save(done, sweep.gather(st), meta),
        **fit_kwargs,
    )
    return sweep.gather(final)


def length_groups(lengths, pad: str = "auto") -> list[tuple[int, ...]]:
    """The sequence lengths that share a program, shorter ones padded to the group's longest.

    Sorted lengths join a group while the padded work, ``len(group) * max(group)``, stays
    within ``ratio`` times the unpadded ``sum(group)``: ``"always"`` pads everything into one
    program, ``"never"`` gives each length its own, and ``"auto"`` uses 1.5 on CPU (where the
    compute grows with the padded rows) and pads everything elsewhere (where each scan step is
    latency-bound, so padding costs little and saves compiles; benchmarks/README.md).
    """
    if pad not in ("auto", "always", "never"):
        raise ValueError(f"pad must be 'auto', 'always' or 'never', got {pad!r}")
    ratio = {"always": float("inf"), "never": 1.0}.get(pad, 1.5 if jax.default_backend() == "cpu" else float("inf"))
    groups: list[list[int]] = []
    for T in sorted(set(lengths)):
        if groups and (len(groups[-1]) + 1) * T <= ratio * (sum(groups[-1]) + T):
            groups[-1].append(T)
        else:
            groups.append([T])
    return [tuple(g) for g in groups]
