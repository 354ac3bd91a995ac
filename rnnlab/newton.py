r"""Newton's method over the whole sequence: a sequential cell evaluated in parallel over time
(the ``newton`` and ``quasi_newton`` paths; ELK's Levenberg-Marquardt as an option of both).

A sequential cell defines its trajectory implicitly: ``h_t = f(h_{t-1}, x_t)`` for t = 1..T
from a given ``h_0`` (``h`` is the whole carry, the LSTM's ``(h, c)`` as one state of size
D = F·H with F carry fields).  Treat ``h_1..h_T`` as unknowns and linearise ``f`` around the
current guess ``h^{(k)}``; what is left is a *linear* recurrence,

    h^{(k+1)}_t = A_t h^{(k+1)}_{t-1} + (f(h^{(k)}_{t-1}, x_t) - A_t h^{(k)}_{t-1}),
    A_t ≈ J_t = ∂f/∂h (h^{(k)}_{t-1}, x_t),

which ``jax.lax.associative_scan`` solves in O(log T) depth (``rnnlab.affine``).  That is
DEER (Lim et al., ICLR 2024, machine-discovery/deer ``deer/deer_iter.py``):

  ``"newton"``        ``A_t = J_t``, the full ``[D, D]``: memory O(T·B·D²), work O(T·B·D³)
                      per iteration (the associative scan composes D x D matrices);
  ``"quasi_newton"``  ``A_t`` = each unit's block of ``J_t``: ``diag(J_t)`` when the carry is
                      one array (quasi-DEER, Gonzalez et al., NeurIPS 2024, lindermanlab/elk),
                      the F x F block of a unit's fields otherwise (the LSTM's ``(h, c)``: the
                      2x2 blocks of ParaRNN's LSTM, apple/ml-pararnn): O(T·B·D·F) memory and
                      work.  For a cell whose recurrence is diagonal (IndRNN, ``rnnlab.pararnn``'s
                      ParaGRU and ParaLSTM) that block structure IS the Jacobian: quasi-Newton is
                      exact Newton, the same iterates and iteration counts.

The Jacobians come from the cell's structure when it gives one (``rnnlab.cells.JacobianCell``,
every built-in cell: the diagonal in O(G) elementwise passes, the full J as the recurrent
matrices' rows scaled); a three-method cell gets ``jax.jacfwd`` of its step, D forward-mode
passes per iteration (in chunks of rows for the quasi path, so that the full Jacobians never
exist all at once).

Options (``NewtonOptions``):
  ``damping = k``  every ``A_t`` scaled by ``1 - k`` (lindermanlab/predictability_enables_parallelization
                   ``src/deer.py``);
  ``clip``         quasi only: the coefficients clipped to ``[-1, 1]`` (the same code's ``clip=True``);
  ``method="elk"`` Levenberg-Marquardt (ELK, Gonzalez et al. 2024): each iteration is the linear
                   recurrence with unit process noise, observed through the current iterate with
                   noise ``trust`` (their ``sigmasq``, lambda = 1/sigmasq), solved by a parallel
                   Kalman filter (``jax.lax.associative_scan`` over Särkkä & García-Fernández's
                   elements; elementwise for diagonal coefficients, small matrices otherwise).
                   As in lindermanlab/elk ``elk/algs/elk.py`` the new iterate is the *filtered*
                   mean (the paper's smoother would use the later observations too).  Defaults:
                   their ``fig4.py``, ``sigmasq = 1e6`` for ELK and ``1e2`` for quasi-ELK.
None of these moves the fixed point: ``h = f(h_prev)`` solves every variant.

Stopping (``criterion``): ``"residual"``, ``max_{t,i} |h_t - f(h_{t-1}, x_t)|`` (absolute;
``default_tol`` 1e-12 in float64, 1e-6 in float32), or ``"merit"``, the predictability code's
``½ · mean_t ‖h_t - f(h_{t-1}, x_t)‖²`` (default 1e-10 in float64, their ``tol``).  Both are
measured on the iterate before the next update; the predictability code counts one more
iteration than we do (its loop computes the next iterate before testing the previous one).
The cap ``max_iter`` defaults to T: exact Newton (and any quasi variant, DEER or damped)
fixes step k at iteration k at the latest, so T iterations reproduce the sequential scan in exact
arithmetic and more can only repeat rounding.  DEER's safeguard (``clip_ytnext``): an iterate's
entries are clipped to ±1e8 and a NaN restarted at 0.

Convergence is decided per sequence, as DEER ``jax.vmap``s its solver over the batch: each
sequence stops at its own tolerance (a batched ``lax.while_loop`` runs until the last one stops,
so the time is the slowest sequence's), and ``NewtonInfo`` holds one count, criterion and status
per sequence: converged, not converged within ``max_iter`` (slow), diverged (the criterion not
finite, or the iterate at the ±1e8 clip), or a non-finite ``initial_guess``.  Not converging
raises ``NewtonError`` in one line (outside ``jax.jit``; inside, from a host callback, whose
``jax.errors.JaxRuntimeError`` carries the line: ``failure_line`` recovers it), unless
``fallback=True`` asks for the sequential result instead.

The initial guess is zeros by default: DEER's and elk's, and the start of the trajectory when
the initial carry is zero.  ``initial_guess`` takes any trajectory (a warm start, e.g. the
previous training step's); the predictability code's experiments draw U(-1, 1)
(experiments/newton_figure2.py does).

Gradients by the implicit function theorem, never through the iterations: with adjoint
``λ_t = g_t + J_{t+1}^T λ_{t+1}`` (``g_t = ∂L/∂h_t``, ``λ_T = g_T``), one linear recurrence
backward in time solved by the same associative scan at the converged trajectory (with the
exact Jacobians: full ones, or the unit blocks where those are the whole Jacobian), the gradient
of anything ``f`` reads (params, ``x_t``, the perturbation, ``h_0``) is one VJP of ``f`` at all
steps at once with cotangent ``λ_t``.  Forward-mode differentiation (``jax.jvp``) is not defined
here (a custom VJP): the ``autodiff`` path is the one for it.

Every step is ``rnnlab.scan``'s (the cell's own step, the same length mask and hidden
perturbation as the sequential paths; a three-method cell is enough), so a padded step is the
identity (``J = I``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells, scan
from rnnlab.affine import apply_coefficient, solve_affine
from rnnlab.validation import InputError, is_concrete

NEWTON_PATHS = ("newton", "quasi_newton")
METHODS = ("deer", "elk")
CRITERIA = ("residual", "merit")
ELK_TRUST = {"newton": 1e6, "quasi_newton": 1e2}  # lindermanlab/elk experiments/elk_exps_figs_4_7_8/fig4.py
MAX_ITER = 2**31 - 1  # the int32 counter's range
# rows of J per chunk when the quasi path reads diag(J) off jax.jacfwd: ~2^24 numbers at once
_DIAGONAL_CHUNK_ELEMENTS = 1 << 24
_CLIP = 1e8  # DEER's bound on an iterate's entries

# NewtonInfo.status
CONVERGED, NOT_CONVERGED, DIVERGED, BAD_GUESS = 0, 1, 2, 3


def default_tol(dtype, criterion: str = "residual") -> float:
    """The tolerance for a carry of ``dtype``: residual 1e-12 (float64), 1e-6 (float32), 1e-2
    (16-bit); merit 1e-10 (float64, the predictability code's), 1e-8 (float32), 1e-2."""
    size = jnp.dtype(dtype).itemsize
    if criterion == "merit":
        return {8: 1e-10, 4: 1e-8}.get(size, 1e-2)
    return {8: 1e-12, 4: 1e-6}.get(size, 1e-2)


def tolerance(options, dtype) -> float:
    """What the criterion must reach: ``options.tol``, or the dtype's default.  Absolute: a
    tolerance relative to ``|h|`` would call a diverged trajectory converged."""
    return default_tol(dtype, options.criterion) if options.tol is None else options.tol


def _real(name, value, *, low=None, low_open=True, high=None, high_open=True, what=""):
    """A real number (Python or NumPy scalar, not a bool) as a Python float, within the bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number{what}, got {value!r}")
    value = float(value)
    ok = math.isfinite(value)
    if low is not None:
        ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        raise ValueError(f"{name} must be {what.strip(' ()') or 'in range'}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class NewtonOptions:
    """How the ``newton`` and ``quasi_newton`` paths iterate (module docstring).

    Attributes:
      tol: the criterion's value to reach; None: ``default_tol`` of the carry's dtype.
      max_iter: the most linear solves per sequence; None: T (exact for exact Newton).
      damping: ``k`` in ``[0, 1)``: each ``A_t`` scaled by ``1 - k``.
      fallback: when a sequence misses ``tol``, return the sequential (``fused``) result instead
        of raising (under ``jax.jit`` both are compiled and the cheaper is never chosen for you).
      method: ``"deer"`` (Newton) or ``"elk"`` (Levenberg-Marquardt by a parallel Kalman filter).
      trust: ELK's ``sigmasq`` (a positive finite number; larger trusts the linearisation more, DEER
        is its limit ``method="deer"``);
        None: 1e6 (``newton``) or 1e2 (``quasi_newton``), the values of elk's Fig. 4 experiment (its library
        default is 1e8).  Only with ``method="elk"``.
      clip: clip the quasi path's coefficients to ``[-1, 1]`` (the predictability code's ``clip``).
      criterion: ``"residual"`` (max |r|) or ``"merit"`` (½ mean_t ‖r_t‖²).
    NumPy scalars are accepted (``tol=np.float32(1e-4)``) and stored as Python numbers.
    """

    tol: float | None = None
    max_iter: int | None = None
    damping: float = 0.0
    fallback: bool = False
    method: str = "deer"
    trust: float | None = None
    clip: bool = False
    criterion: str = "residual"

    def __post_init__(self):
        store = functools.partial(object.__setattr__, self)
        if self.tol is not None:
            store(
                "tol", _real("tol", self.tol, low=0.0, what=" (a positive finite number, or None: the dtype's default)")
            )
        if self.max_iter is not None:
            k = self.max_iter
            if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or not 1 <= int(k) <= MAX_ITER:
                raise ValueError(
                    f"max_iter must be an int in 1..{MAX_ITER} (the iteration counter is int32), or None: T; got {k!r}"
                )
            store("max_iter", int(k))
        store("damping", _real("damping", self.damping, low=0.0, low_open=False, high=1.0,
                               what=" (in [0, 1): each Jacobian is scaled by 1 - damping)"))  # fmt: skip
        for name in ("fallback", "clip"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
            store(name, bool(getattr(self, name)))
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {self.method!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {', '.join(map(repr, CRITERIA))}, got {self.criterion!r}")
        if self.trust is not None:
            if self.method != "elk":
                raise ValueError(f"trust is ELK's sigmasq: it applies to method='elk', not method={self.method!r}")
            store("trust", _real("trust", self.trust, low=0.0, what=" (ELK's sigmasq: a positive finite number)"))


def check_options(path: str, options: NewtonOptions) -> None:
    """Options that cannot apply to ``path``: one line."""
    if options.clip and path != "quasi_newton":
        raise ValueError(
            f"clip applies to path='quasi_newton' (the predictability code clips diagonal Jacobians), not path={path!r}"
        )


class NewtonInfo(NamedTuple):
    """What the iteration did, per sequence (``[B]``; more leading axes under a sweep's vmap):
    ``iterations`` (linear solves), ``residual`` (the stopping criterion's final value: max |r|,
    or the merit) and ``status`` (``CONVERGED``, ``NOT_CONVERGED`` within ``max_iter``,
    ``DIVERGED``: the criterion not finite or an iterate at the ±1e8 clip, ``BAD_GUESS``: a
    non-finite ``initial_guess``)."""

    iterations: jax.Array
    residual: jax.Array
    status: jax.Array

    @property
    def converged(self) -> jax.Array:
        return self.status == CONVERGED

    @property
    def diverged(self) -> jax.Array:
        return self.status == DIVERGED


STATUS_NAMES = {CONVERGED: "converged", NOT_CONVERGED: "not converged", DIVERGED: "diverged", BAD_GUESS: "bad guess"}


def outcome(info: NewtonInfo, index: int = 0) -> dict:
    """Sequence ``index``'s ``{"iterations", "status", "residual"}``, as a results file records a
    solve (concrete ``info``; the status in words, ``STATUS_NAMES``)."""
    status = STATUS_NAMES[int(info.status[index])]
    return {"iterations": int(info.iterations[index]), "status": status, "residual": float(info.residual[index])}


def solve_bytes(length: int, batch: int, width: int, inputs: int, itemsize: int = 4) -> int:
    """The least a Newton solve holds: for ``batch`` sequences of ``length`` steps the inputs, the
    states and the Jacobians of the flattened carry (``width`` D), :math:`T B (I + D + D^2)`
    numbers of ``itemsize`` bytes (a config's ``memory_needs``)."""
    return int(length) * int(batch) * (inputs + width + width * width) * itemsize


def flatten_carry(carry) -> jax.Array:
    """A carry's fields ``[..., H]`` side by side: ``[..., D]`` (the LSTM's ``[h | c]``)."""
    return jnp.concatenate(jax.tree.leaves(carry), axis=-1)


def unflatten_carry(treedef, h_d: jax.Array):
    """The inverse of ``flatten_carry`` for a carry of structure ``treedef``."""
    return jax.tree.unflatten(treedef, jnp.split(h_d, treedef.num_leaves, axis=-1))


# --- the linearised step ------------------------------------------------------------------------
# Coefficient structures: "full" A [..., D, D]; "diagonal" A [..., D] (one carry field); "blocks"
# A [..., H, F, F] acting on the state viewed unit by unit, [..., H, F] (``_units``).


def _units(v, fields):
    """``[..., F*H] -> [..., H, F]``."""
    return jnp.swapaxes(v.reshape(v.shape[:-1] + (fields, -1)), -1, -2)


def _flat(v):
    """``[..., H, F] -> [..., F*H]``."""
    return jnp.swapaxes(v, -1, -2).reshape(v.shape[:-2] + (-1,))


def _identity(structure, shape_nd, fields, dtype):
    D = shape_nd[-1]
    if structure == "diagonal":
        return jnp.ones(shape_nd, dtype)
    if structure == "blocks":
        return jnp.broadcast_to(jnp.eye(fields, dtype=dtype), shape_nd[:-1] + (D // fields, fields, fields))
    return jnp.broadcast_to(jnp.eye(D, dtype=dtype), shape_nd + (D,))


def _from_full(j, structure, fields):
    """A full ``[..., D, D]`` Jacobian in ``structure``."""
    if structure == "full":
        return j
    if structure == "diagonal":
        return jnp.diagonal(j, axis1=-2, axis2=-1)
    H = j.shape[-1] // fields
    j = j.reshape(j.shape[:-2] + (fields, H, fields, H))
    return jnp.moveaxis(jnp.diagonal(j, axis1=-3, axis2=-1), -1, -3)  # [..., F, F, H] -> [..., H, F, F]


def _apply(a, v, structure, fields):
    """``A v`` for ``v [..., D]``."""
    if structure == "blocks":
        return _flat(apply_coefficient(a, _units(v, fields), diagonal=False))
    return apply_coefficient(a, v, diagonal=structure == "diagonal")


def _solve(a, b, structure, fields):
    """``h_t = A_t h_{t-1} + b_t`` from ``h_{-1} = 0`` along axis 0."""
    if structure == "blocks":
        return _flat(solve_affine(a, _units(b, fields), diagonal=False))
    return solve_affine(a, b, diagonal=structure == "diagonal")


class _Step:
    """A cell's step over independent rows (``[N, ...]``): the sequential paths' step
    (``rnnlab.scan.stepper`` and ``finish``) on a flattened carry, and its linearisation."""

    def __init__(self, cell, params, treedef):
        self.cell, self.params, self.treedef = cell, params, treedef
        self.fields = treedef.num_leaves
        self._step = scan.stepper(cell, params)

    def __call__(self, h_nd, x_ni, valid_n=None, eps_nh=None):
        """``(h [N, D], y [N, H])``."""
        carry = unflatten_carry(self.treedef, h_nd)
        new, y = scan.finish(self.cell, carry, *self._step(carry, x_ni), valid_n, eps_nh)
        return flatten_carry(new), y

    def linearise(self, structure, h_nd, x_ni, valid_n=None, eps_nh=None):
        """``(f(h) [N, D], A [N, ...] in structure, structure)``; ``structure="exact"`` is the
        cheapest exact one: the unit blocks where they are the whole Jacobian, else full."""
        if cells.has_jacobian(self.cell):
            carry = unflatten_carry(self.treedef, h_nd)
            new, y, jac = self.cell.step_jacobian(self.params, carry, x_ni)
            if structure == "exact":
                structure = ("diagonal" if self.fields == 1 else "blocks") if jac.is_blocks else "full"
            new, _ = scan.finish(self.cell, carry, new, y, valid_n, eps_nh)  # eps: a shift, J unchanged
            a = getattr(jac, structure)()
            if valid_n is not None:  # a padded step keeps the carry: J = I
                identity = _identity(structure, h_nd.shape, self.fields, a.dtype)
                a = jnp.where(valid_n.reshape(valid_n.shape + (1,) * (a.ndim - 1)), a, identity)
            return flatten_carry(new), a, structure
        structure = "full" if structure == "exact" else structure
        return self(h_nd, x_ni, valid_n, eps_nh)[0], self.jacfwd(structure, h_nd, x_ni, valid_n, eps_nh), structure

    def jacfwd(self, structure, h_nd, x_ni, valid_n=None, eps_nh=None):
        """The generic Jacobian: ``jax.jacfwd`` of one row (D forward-mode passes), in chunks of
        rows for the block structures so that the full Jacobians never exist all at once."""

        def one_row(h_d, x_i, valid, eps_h):  # a batch of one, so the step's masks and broadcasts apply as they are
            expand = lambda a: None if a is None else a[None]
            return self(h_d[None], x_i[None], expand(valid), expand(eps_h))[0][0]

        jac_row = jax.jacfwd(one_row)
        args = (h_nd, x_ni, valid_n, eps_nh)
        present = [a is not None for a in args]
        rows = tuple(a for a in args if a is not None)

        def of(row):
            it = iter(row)
            return _from_full(jac_row(*[next(it) if p else None for p in present]), structure, self.fields)

        if structure == "full":
            return jax.vmap(of)(rows)
        D = h_nd.shape[-1]
        chunk = max(1, min(h_nd.shape[0], _DIAGONAL_CHUNK_ELEMENTS // (D * D)))
        return jax.lax.map(of, rows, batch_size=chunk)


def _set_first(a, value):
    """``a`` with its first step (axis 0) replaced by ``value``: a select, not ``.at[0].set`` (a
    scatter has no unambiguous sharding under a sweep's mesh)."""
    first = (jnp.arange(a.shape[0]) == 0).reshape((-1,) + (1,) * (a.ndim - 1))
    return jnp.where(first, value, a)


def _previous(h0, h):
    """``h_{t-1}`` for every t along axis 0: ``[h_0, h_1, ..., h_{T-1}]``."""
    return jnp.concatenate([h0[None], h[:-1]], axis=0)


# --- ELK: the parallel Kalman filter --------------------------------------------------------------


def _solve_small(m, rhs):
    """``m^-1 rhs`` for small ``[..., F, F]`` blocks by Gauss-Jordan elimination, unrolled, without
    pivoting: the filter's ``I + C J`` has eigenvalues >= 1 (C and J are covariances).  Plain
    arithmetic instead of LAPACK calls on millions of tiny matrices."""
    n = m.shape[-1]
    m, rhs = m + jnp.zeros_like(rhs[..., :1, :1]), rhs + jnp.zeros_like(m[..., :, :1])
    for k in range(n):
        pivot = m[..., k : k + 1, k : k + 1]
        row_m, row_r = m[..., k : k + 1, :] / pivot, rhs[..., k : k + 1, :] / pivot
        factor = m[..., :, k : k + 1]
        m = jnp.where(jnp.arange(n)[:, None] == k, row_m, m - factor * row_m)
        rhs = jnp.where(jnp.arange(n)[:, None] == k, row_r, rhs - factor * row_r)
    return rhs


def _kalman_filter(a, b, y, sigmasq, structure, fields):
    """ELK's update: the filtered means of ``s_t = A_t s_{t-1} + b_t + N(0, I)`` (t >= 1),
    ``s_0 ~ N(b_0, I)``, observed as ``y_t = s_t + N(0, sigmasq I)``, by the associative scan
    of Särkkä & García-Fernández's filtering elements (dynamax ``parallel_inference``;
    lindermanlab/elk ``parallel_kalman_scalar.py`` for the elementwise case, ``A_0`` unused)."""
    k = 1.0 / (1.0 + sigmasq)  # the gain: prior covariance I, emission noise sigmasq I
    if structure == "diagonal":
        b_t = b + k * (y - b)
        elems = (
            _set_first((1.0 - k) * a, 0.0),
            b_t,
            jnp.full_like(b, 1.0 - k),
            _set_first(a * a * k, 1.0),
            _set_first(a * k * (y - b), 0.0),
        )

        def combine(e1, e2):
            a1, b1, c1, j1, eta1 = e1
            a2, b2, c2, j2, eta2 = e2
            denom = c1 * j2 + 1.0
            return (
                a1 * a2 / denom,
                a2 * (c1 * eta2 + b1) / denom + b2,
                c1 * a2 * a2 / denom + c2,
                j2 * a1 * a1 / denom + j1,
                a1 * (eta2 - j2 * b1) / denom + eta1,
            )

        return jax.lax.associative_scan(combine, elems, axis=0)[1]
    if structure == "blocks":
        a, b, y = a, _units(b, fields), _units(y, fields)
    identity = jnp.eye(b.shape[-1], dtype=b.dtype)
    eye = jnp.broadcast_to(identity, a.shape)
    a_t = jnp.swapaxes(a, -1, -2)
    mv = lambda m, v: jnp.einsum("...ij,...j->...i", m, v)
    elems = (
        _set_first((1.0 - k) * a, 0.0),
        b + k * (y - b),
        (1.0 - k) * eye,
        _set_first(k * (a_t @ a), eye),
        _set_first(k * mv(a_t, y - b), 0.0),
    )

    solve = _solve_small if structure == "blocks" else jnp.linalg.solve

    def combine(e1, e2):
        a1, b1, c1, j1, eta1 = e1
        a2, b2, c2, j2, eta2 = e2
        # A2 (I + C1 J2)^-1 and A1^T (I + J2 C1)^-1, by solves with the transposes
        left = jnp.swapaxes(solve(jnp.swapaxes(identity + c1 @ j2, -1, -2), jnp.swapaxes(a2, -1, -2)), -1, -2)
        right = jnp.swapaxes(solve(jnp.swapaxes(identity + j2 @ c1, -1, -2), a1), -1, -2)
        return (
            left @ a1,
            mv(left, b1 + mv(c1, eta2)) + b2,
            left @ c1 @ jnp.swapaxes(a2, -1, -2) + c2,
            right @ j2 @ a1 + j1,
            mv(right, eta2 - mv(j2, b1)) + eta1,
        )

    means = jax.lax.associative_scan(combine, elems, axis=0)[1]
    return _flat(means) if structure == "blocks" else means


# --- the iteration, one sequence at a time -------------------------------------------------------


def _criterion(options, r_tbd):
    """Per sequence ``[B]``: max |r| or ½ mean_t ‖r_t‖²; inf where anything is not finite (XLA's
    max may skip NaNs)."""
    if options.criterion == "residual":
        value = jnp.max(jnp.abs(r_tbd), axis=(0, 2))
    else:
        value = 0.5 * jnp.sum(r_tbd**2, axis=(0, 2)) / r_tbd.shape[0]
    return jnp.where(jnp.all(jnp.isfinite(r_tbd), axis=(0, 2)), value, jnp.inf)


def _iterate(cell, structure, options, trust, params, seq, guess_tbd):
    """The iterations, every sequence to its own tolerance: ``(iterations [B], h [T, B, D],
    criterion [B], status [B])`` by one ``lax.while_loop`` over the batch, in which a sequence
    that has stopped keeps its iterate and its count (what ``jax.vmap`` of DEER's per-sequence
    loop does, with the arrays kept time-major so that the associative scans run along axis 0)."""
    step = _Step(cell, params, jax.tree.structure(seq.carry0))
    T, B, D = guess_tbd.shape
    fields = step.fields
    h0_bd = flatten_carry(seq.carry0)
    x_n, mask_n, eps_n = _rows(seq.x_tbi), _rows(seq.mask_tb), _rows(seq.eps_tbh)
    cap = T if options.max_iter is None else options.max_iter
    tol = tolerance(options, h0_bd.dtype)

    def linearise(h_tbd):
        f_n, a_n, _ = step.linearise(structure, _rows(_previous(h0_bd, h_tbd)), x_n, mask_n, eps_n)
        f_tbd, a = f_n.reshape(T, B, D), a_n.reshape((T, B) + a_n.shape[1:])
        a = (1.0 - options.damping) * a if options.damping else a
        a = jnp.clip(a, -1.0, 1.0) if options.clip else a
        return f_tbd, a, _criterion(options, h_tbd - f_tbd)

    def update(h_tbd, f_tbd, a):
        h_prev = _previous(h0_bd, h_tbd)
        # b_t = f(h_{t-1}) - A_t h_{t-1}; at t = 0 the start is exact, so the solve gives f(h_0) there
        b_tbd = f_tbd - _set_first(_apply(a, h_prev, structure, fields), 0.0)
        if options.method == "elk":
            new = _kalman_filter(a, b_tbd, h_tbd, trust, structure, fields)
        else:
            new = _solve(a, b_tbd, structure, fields)
        # DEER's safeguard (deer/deer_iter.py, clip_ytnext): a linearisation that expands where the
        # trajectory does not (at h = 0, say) overflows over long T; clip and restart such states
        return jnp.where(jnp.isnan(new), 0.0, jnp.clip(new, -_CLIP, _CLIP))

    def active(k, crit):
        return (k < cap) & (crit > tol) & jnp.isfinite(crit)

    def keep_going(state):
        k, _, _, _, crit = state
        return jnp.any(active(k, crit))

    def body(state):
        k, h, f, a, crit = state
        going = active(k, crit)
        h = jnp.where(going[None, :, None], update(h, f, a), h)  # a stopped sequence keeps its iterate
        return (k + going.astype(k.dtype), h, *linearise(h))

    f0, a0, crit0 = linearise(guess_tbd)
    # the counter takes the criterion's batching: a bare int32 starts unbatched inside a sweep's
    # vmap and breaks under the sweep mesh (explicit sharding of the carry)
    state = (jnp.zeros_like(crit0, jnp.int32), guess_tbd, f0, a0, crit0)
    k, h, _, _, crit = jax.lax.while_loop(keep_going, body, state)
    status = jnp.where(
        crit <= tol,
        CONVERGED,
        jnp.where(
            ~jnp.all(jnp.isfinite(guess_tbd), axis=(0, 2)),
            BAD_GUESS,
            jnp.where(~jnp.isfinite(crit) | jnp.any(jnp.abs(h) >= _CLIP, axis=(0, 2)), DIVERGED, NOT_CONVERGED),
        ),
    )
    return k, h, crit, status.astype(jnp.int8)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _trajectory(cell, structure, options, trust, params, seq, guess_tbd):
    return _iterate(cell, structure, options, trust, params, seq, guess_tbd)


def _trajectory_fwd(cell, structure, options, trust, params, seq, guess_tbd):
    out = _iterate(cell, structure, options, trust, params, seq, guess_tbd)
    return out, (params, seq, out[1])


def _rows(a):
    """``[T, B, ...] -> [T*B, ...]`` (None stays None)."""
    return None if a is None else a.reshape((-1,) + a.shape[2:])


def _trajectory_bwd(cell, structure, options, trust, saved, cotangents):
    """The implicit function theorem: one transposed linear recurrence, then one VJP of ``f``."""
    params, seq, h_tbd = saved
    g_tbd = cotangents[1]  # iterations, criterion and status carry no gradient
    treedef = jax.tree.structure(seq.carry0)
    step = _Step(cell, params, treedef)
    T, B, D = h_tbd.shape
    h_prev = _previous(flatten_carry(seq.carry0), h_tbd)
    # the exact Jacobians: the unit blocks where they are the whole Jacobian (diagonal cells), else full
    _, a, exact = step.linearise("exact", _rows(h_prev), _rows(seq.x_tbi), _rows(seq.mask_tb), _rows(seq.eps_tbh))
    a = a.reshape((T, B) + a.shape[1:])
    at_rev = jnp.flip(a if exact == "diagonal" else jnp.swapaxes(a, -1, -2), axis=0)  # J_{T-1-s}^T at s
    # lambda_t = g_t + J_{t+1}^T lambda_{t+1}, lambda_{T-1} = g_{T-1}: a forward recurrence in reversed time
    a_rev = jnp.concatenate([jnp.zeros_like(at_rev[:1]), at_rev[:-1]])
    lam_tbd = jnp.flip(_solve(a_rev, jnp.flip(g_tbd, axis=0), exact, step.fields), axis=0)

    def step_all(params, x_tbi, h_prev, eps_tbh):
        values = _Step(cell, params, treedef)(_rows(h_prev), _rows(x_tbi), _rows(seq.mask_tb), _rows(eps_tbh))[0]
        return values.reshape(h_prev.shape)

    _, vjp = jax.vjp(step_all, params, seq.x_tbi, h_prev, seq.eps_tbh)
    d_params, d_x, d_h_prev, d_eps = vjp(lam_tbd)
    d_seq = scan.SequenceInputs(d_x, unflatten_carry(treedef, d_h_prev[0]), None, d_eps)
    return d_params, d_seq, jnp.zeros_like(h_tbd)


_trajectory.defvjp(_trajectory_fwd, _trajectory_bwd)


def check_initial_guess(initial_guess, carry0, shape_tb) -> jax.Array:
    """``initial_guess`` (a carry whose leaves are ``[T, B, H]``) flattened to ``[T, B, D]`` in the
    carry's dtype; a wrong structure, shape or dtype (complex, integer) is a one-line error, and
    so are non-finite values when they are concrete (under ``jit``: ``NewtonInfo``'s ``BAD_GUESS``)."""
    expected = jax.tree.structure(carry0)
    if jax.tree.structure(initial_guess) != expected:
        raise InputError(
            f"initial_guess must be a carry like the initial one ({expected}), got {jax.tree.structure(initial_guess)}"
        )
    for leaf, c in zip(jax.tree.leaves(initial_guess), jax.tree.leaves(carry0)):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise InputError(f"initial_guess must be real floating point like the carry ({c.dtype}), got {dtype}")
        want = tuple(shape_tb) + (c.shape[-1],)
        if tuple(jnp.shape(leaf)) != want:
            raise InputError(f"initial_guess leaves must have shape [T, B, H] = {want}, got {tuple(jnp.shape(leaf))}")
        if is_concrete(leaf) and not bool(np.all(np.isfinite(np.asarray(leaf)))):
            raise InputError("initial_guess must be finite: it contains NaN or inf")
    return flatten_carry(jax.tree.map(lambda g, c: jnp.asarray(g).astype(c.dtype), initial_guess, carry0))


def recurrence(cell, params, seq: scan.SequenceInputs, *, quasi=False, newton_options=None, initial_guess=None):
    """``(final carry, y [T, B, H], NewtonInfo)`` by Newton's method over the sequence (module
    docstring); never raises on non-convergence (``rnnlab.unroll.recurrence`` does).

    ``initial_guess``: the initial trajectory, a carry whose leaves are ``[T, B, H]`` (a warm
    start); None starts from zeros."""
    options = NewtonOptions() if newton_options is None else newton_options
    path = "quasi_newton" if quasi else "newton"
    check_options(path, options)
    x_tbi, carry0 = seq.x_tbi, seq.carry0
    h0_bd = flatten_carry(carry0)
    T, B = x_tbi.shape[:2]
    treedef = jax.tree.structure(carry0)
    fields = treedef.num_leaves
    structure = ("diagonal" if fields == 1 else "blocks") if quasi else "full"
    if initial_guess is None:
        guess_tbd = jnp.zeros((T, B, h0_bd.shape[-1]), h0_bd.dtype)
    else:
        guess_tbd = check_initial_guess(initial_guess, carry0, (T, B))
    trust = None
    if options.method == "elk":
        trust = ELK_TRUST[path] if options.trust is None else options.trust
    iterations, h_tbd, residual, status = _trajectory(cell, structure, options, trust, params, seq, guess_tbd)
    info = NewtonInfo(iterations, residual, status)
    # the outputs from the converged trajectory, by the same step: y_t as the sequential paths make it
    step = _Step(cell, params, treedef)
    y_n = step(_rows(_previous(h0_bd, h_tbd)), _rows(x_tbi), _rows(seq.mask_tb), _rows(seq.eps_tbh))[1]
    final = unflatten_carry(treedef, h_tbd[-1])
    return final, y_n.reshape(T, B, -1), info


# --- failures: one line, inside jit too ----------------------------------------------------------


class NewtonError(InputError):
    """A Newton path did not converge (or diverged); the message is one line naming the fix."""


def failure_message(path, info: NewtonInfo, options, tol=None) -> str | None:
    """One line saying what did not converge and the fix; None when every sequence converged.
    ``tol``: the tolerance used (default: ``tolerance`` of the residual's dtype)."""
    status = np.asarray(info.status).ravel()
    if np.all(status == CONVERGED):
        return None
    iterations, residual = np.asarray(info.iterations).ravel(), np.asarray(info.residual, dtype=float).ravel()
    n = status.size
    tol = tolerance(options, np.asarray(info.residual).dtype) if tol is None else tol
    cap = "T" if options.max_iter is None else options.max_iter
    if np.any(status == BAD_GUESS):
        return (
            f"path={path!r}: initial_guess is not finite (NaN or inf) for {int(np.sum(status == BAD_GUESS))} of {n} "
            "sequences; give a finite trajectory, or None for zeros"
        )
    stabler = (
        "a smaller trust or damping=..." if options.method == "elk" else "NewtonOptions(method='elk', damping=...)"
    )
    fixes = f"use path='fused', or {stabler}, or NewtonOptions(fallback=True) for the sequential result"
    diverged = status == DIVERGED
    if np.any(diverged):
        k = int(np.max(iterations[diverged]))
        return (
            f"path={path!r} diverged on {int(np.sum(diverged))} of {n} sequences: residual "
            f"{float(np.max(residual[diverged])):.3g} (not finite, or an iterate at the ±1e8 clip) after {k} "
            f"iterations (max_iter={cap}); the dynamics may be chaotic (lambda_1 >= 0): {fixes}"
        )
    slow = status == NOT_CONVERGED
    return (
        f"path={path!r} did not reach the tolerance on {int(np.sum(slow))} of {n} sequences: residual "
        f"{float(np.max(residual[slow])):.3g} after {int(np.max(iterations[slow]))} iterations "
        f"(max_iter={cap}, {options.criterion} tol={tol:g}); convergence is slow near lambda_1 = 0 and absent "
        f"above: raise max_iter (T is exact), or {fixes}"
    )


def raise_unless_converged(path, options, info: NewtonInfo, tol=None) -> None:
    """``NewtonError`` with ``failure_message`` unless every sequence converged (concrete ``info``:
    outside ``jit``, or after a jitted call that returned it)."""
    message = failure_message(path, info, options, tol)
    if message is not None:
        raise NewtonError(message)


def _raise_from_callback(path, options, tol, *info):
    # the tolerance comes from the trace: the callback's thread may not have float64 enabled
    raise_unless_converged(path, options, NewtonInfo(*info), tol)


def failure_line(error: BaseException) -> str | None:
    """The one line of a Newton failure: a ``NewtonError``'s message, or the one a
    ``jax.errors.JaxRuntimeError`` carries from inside ``jit``; None for any other error."""
    if isinstance(error, NewtonError):
        return str(error)
    marker = f"{NewtonError.__name__}: "
    lines = [line for line in str(error).splitlines() if line.startswith(marker)]
    return lines[-1][len(marker) :] if lines else None


class _NewtonErrorsLogged(logging.Filter):
    """JAX logs a failing debug callback's traceback before raising it; ours is one line already."""

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, NewtonError)


for _logger in ("jax._src.debugging", "jax._src.callback"):
    logging.getLogger(_logger).addFilter(_NewtonErrorsLogged())


def settle(path, options, result, info: NewtonInfo, sequential):
    """``result`` if Newton converged; else the ``sequential()`` result with ``options.fallback``,
    or a ``NewtonError`` (under ``jax.jit``, raised from a host callback: the runtime error
    carries the line, ``failure_line`` recovers it)."""
    if options.fallback:
        return jax.lax.cond(jnp.all(info.converged), lambda: result, sequential)
    tol = tolerance(options, info.residual.dtype)
    if all(map(is_concrete, info)):
        raise_unless_converged(path, options, info, tol)
        return result
    try:
        jax.debug.callback(functools.partial(_raise_from_callback, path, options, tol), *info)
    except Exception as e:  # noqa: BLE001
        # inside a vmap sharded over devices (a sweep) JAX cannot unroll the callback over the
        # sharded axis; the poisoned outputs below still keep a failure from passing silently
        if "sharded" not in str(e):
            raise
    # a trajectory that did not converge is never returned as if it had: NaN, as a diverged run
    poison = lambda a: jnp.where(jnp.all(info.converged), a, jnp.nan) if jnp.issubdtype(a.dtype, jnp.floating) else a
    return jax.tree.map(poison, result)
