r"""Newton's method over the whole sequence: a sequential cell evaluated in parallel over time
(the ``newton`` and ``quasi_newton`` paths).

A sequential cell defines its trajectory implicitly: ``h_t = f(h_{t-1}, x_t)`` for t = 1..T
from a given ``h_0`` (``h`` is the whole carry, the LSTM's ``(h, c)`` as one state of size
D = 2H).  Treat ``h_1..h_T`` as unknowns and linearise ``f`` around the current guess
``h^{(k)}``; what is left is a *linear* recurrence,

    h^{(k+1)}_t = J_t h^{(k+1)}_{t-1} + (f(h^{(k)}_{t-1}, x_t) - J_t h^{(k)}_{t-1}),
    J_t = ∂f/∂h (h^{(k)}_{t-1}, x_t),

which ``jax.lax.associative_scan`` solves in O(log T) depth by composing affine maps.  That is
DEER (Lim et al., ICLR 2024, machine-discovery/deer ``deer/deer_iter.py``):

  ``"newton"``        full Jacobians ``J_t [D, D]`` (``jax.jacfwd`` of the cell's step):
                      memory O(T·B·D²), work O(T·B·D³) per iteration;
  ``"quasi_newton"``  quasi-DEER (Gonzalez et al., NeurIPS 2024, lindermanlab/elk): only
                      ``diag(J_t)``, so the solve and the stored coefficients are O(T·B·D).
                      The diagonal is read off ``jax.jacfwd`` in chunks of rows, so the work
                      is still D forward-mode passes per iteration (elk gets O(D) work from a
                      hand-derived GRU diagonal; a cell could provide one, none does yet).

``damping = k`` scales every Jacobian by ``1 - k`` (the damping of Gonzalez, Kozachkov et al.,
NeurIPS 2025, lindermanlab/predictability_enables_parallelization ``src/deer.py``): a smaller
step where plain Newton overshoots.  Neither the diagonal nor the damping moves the fixed
point: ``h = f(h_prev)`` solves every variant, only the way there changes.

Stopping: the residual ``max_{t,b,i} |h_t - f(h_{t-1}, x_t)|`` at or below ``tol`` (absolute;
``default_tol``: 1e-12 in float64, 1e-6 in float32, where states of size ~10 sit at the
rounding floor: raise ``tol`` for larger ones), or ``max_iter`` linear solves, or a non-finite
residual (divergence).  One
iteration is one linear solve; an exactly linear cell is solved by the first.  Full Newton
reaches the sequential answer in at most T iterations in exact arithmetic (iteration k fixes
step k at the latest), but whether it gets there sooner is the dynamics' business: with the
largest Lyapunov exponent ``λ_1 < 0`` the linearised system is well conditioned and a few
iterations do; near ``λ_1 = 0`` and beyond, they do not (Gonzalez, Kozachkov et al. 2025).

Gradients by the implicit function theorem, never through the iterations: with adjoint
``λ_t = g_t + J_{t+1}^T λ_{t+1}`` (``g_t = ∂L/∂h_t``, ``λ_T = g_T``), one linear recurrence
backward in time solved by the same associative scan at the converged trajectory (with full
Jacobians on both paths: the exact gradient needs them), the gradient of anything ``f`` reads
(params, ``x_t``, the perturbation, ``h_0``) is one VJP of ``f`` at all steps at once with
cotangent ``λ_t``.  Forward-mode differentiation (``jax.jvp``) is not defined here (a custom
VJP): the ``autodiff`` path is the one for it.

Every step is ``rnnlab.scan``'s (the cell's own step, the same length mask and hidden
perturbation as the sequential paths; a three-method cell is enough), so a padded step is the identity (``J = I``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import scan
from rnnlab.affine import apply_coefficient, solve_affine
from rnnlab.validation import check_positive_int, is_concrete

NEWTON_PATHS = ("newton", "quasi_newton")
# rows of J per chunk when the quasi path reads diag(J): bounds its transient memory to ~2^24 numbers
_DIAGONAL_CHUNK_ELEMENTS = 1 << 24
_CLIP = 1e8  # DEER's bound on an iterate's entries


def default_tol(dtype) -> float:
    """The residual tolerance for a carry of ``dtype``: 1e-12 (float64), 1e-6 (float32), 1e-2 (16-bit)."""
    return {8: 1e-12, 4: 1e-6}.get(jnp.dtype(dtype).itemsize, 1e-2)


def tolerance(options, dtype) -> float:
    """What the residual must reach: ``options.tol``, or the dtype's default.  Absolute: a
    tolerance relative to ``|h|`` would call a diverged trajectory converged."""
    return default_tol(dtype) if options.tol is None else options.tol


@dataclasses.dataclass(frozen=True)
class NewtonOptions:
    """How the ``newton`` and ``quasi_newton`` paths iterate.

    Attributes:
      tol: the residual ``max |h_t - f(h_{t-1}, x_t)|`` to reach; None: ``default_tol`` of the carry's dtype.
      max_iter: the most linear solves.
      damping: ``k`` in ``[0, 1)``: each Jacobian scaled by ``1 - k``.
      fallback: when ``tol`` is not reached, return the sequential (``fused``) result instead
        of raising (under ``jax.jit`` both are compiled and the cheaper is never chosen for you).
    """

    tol: float | None = None
    max_iter: int = 100
    damping: float = 0.0
    fallback: bool = False

    def __post_init__(self):
        check_positive_int("max_iter", self.max_iter)
        if self.tol is not None and not (isinstance(self.tol, (int, float)) and 0 < self.tol < float("inf")):
            raise ValueError(f"tol must be a positive finite number (or None: the dtype's default), got {self.tol!r}")
        if not (isinstance(self.damping, (int, float)) and 0 <= self.damping < 1):
            raise ValueError(
                f"damping must lie in [0, 1) (each Jacobian is scaled by 1 - damping), got {self.damping!r}"
            )
        if not isinstance(self.fallback, bool):
            raise ValueError(f"fallback must be a bool, got {self.fallback!r}")


class NewtonInfo(NamedTuple):
    """What the iteration did: ``iterations`` (linear solves), the final ``residual``
    ``max |h_t - f(h_{t-1}, x_t)|`` and whether it is at or below the tolerance."""

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array


def flatten_carry(carry) -> jax.Array:
    """A carry's fields ``[..., H]`` side by side: ``[..., D]`` (the LSTM's ``[h | c]``)."""
    return jnp.concatenate(jax.tree.leaves(carry), axis=-1)


def unflatten_carry(treedef, h_d: jax.Array):
    """The inverse of ``flatten_carry`` for a carry of structure ``treedef``."""
    return jax.tree.unflatten(treedef, jnp.split(h_d, treedef.num_leaves, axis=-1))


def _row_step(cell, params, treedef):
    """``f(h_prev [N, D], x [N, I], valid [N] | None, eps [N, H] | None) -> h [N, D]`` and the outputs,
    for independent rows: the sequential paths' step (``rnnlab.scan.stepper`` and ``finish``)."""
    cell_step = scan.stepper(cell, params)

    def f(h_nd, x_ni, valid_n, eps_nh):
        carry = unflatten_carry(treedef, h_nd)
        new_carry, y_nh = scan.finish(cell, carry, *cell_step(carry, x_ni), valid_n, eps_nh)
        return flatten_carry(new_carry), y_nh

    return f


def _rows(a):
    """``[T, B, ...] -> [T*B, ...]`` (None stays None)."""
    return None if a is None else a.reshape((-1,) + a.shape[2:])


def _previous(h0_bd, h_tbd):
    """``h_{t-1}`` for every t: ``[h_0, h_1, ..., h_{T-1}]``."""
    return jnp.concatenate([h0_bd[None], h_tbd[:-1]], axis=0)


def _step_fns(cell, params, treedef, x_tbi, mask_tb, eps_tbh):
    """``f`` over all T*B rows at once, and its Jacobians (full ``[T, B, D, D]`` or diagonal ``[T, B, D]``)."""
    f = _row_step(cell, params, treedef)
    T, B = x_tbi.shape[:2]
    x_n, valid_n, eps_n = _rows(x_tbi), _rows(mask_tb), _rows(eps_tbh)

    def values(h_prev_tbd):
        return f(_rows(h_prev_tbd), x_n, valid_n, eps_n)[0].reshape(h_prev_tbd.shape)

    def one_row(h_d, x_i, valid, eps_h):  # a batch of one, so the step's masks and broadcasts apply as they are
        expand = lambda a: None if a is None else a[None]
        return f(h_d[None], x_i[None], expand(valid), expand(eps_h))[0][0]

    jac_row = jax.jacfwd(one_row)

    def jacobians(h_prev_tbd, diagonal):
        D = h_prev_tbd.shape[-1]
        args = (_rows(h_prev_tbd), x_n, valid_n, eps_n)
        if not diagonal:
            in_axes = tuple(None if a is None else 0 for a in args)
            return jax.vmap(jac_row, in_axes)(*args).reshape(T, B, D, D)
        present = [a is not None for a in args]

        def diagonal_of(row):
            it = iter(row)
            return jnp.diagonal(jac_row(*[next(it) if p else None for p in present]))

        # chunks of rows, so that the full Jacobians never exist all at once
        chunk = max(1, min(T * B, _DIAGONAL_CHUNK_ELEMENTS // (D * D)))
        rows = tuple(a for a in args if a is not None)
        return jax.lax.map(diagonal_of, rows, batch_size=chunk).reshape(T, B, D)

    return values, jacobians


def _iterate(cell, quasi, options, params, x_tbi, h0_bd, mask_tb, eps_tbh, guess_tbd, treedef):
    """The Newton iterations: ``(iterations, h [T, B, D], residual)``; ``lax.while_loop``."""
    values, jacobians = _step_fns(cell, params, treedef, x_tbi, mask_tb, eps_tbh)

    def residual_of(h_tbd):
        r = jnp.abs(h_tbd - values(_previous(h0_bd, h_tbd)))
        return jnp.where(jnp.all(jnp.isfinite(r)), jnp.max(r), jnp.inf)  # XLA's max may skip NaNs

    def newton_step(h_tbd):
        h_prev = _previous(h0_bd, h_tbd)
        f_tbd, a = values(h_prev), (1.0 - options.damping) * jacobians(h_prev, quasi)
        # b_t = f(h_{t-1}) - A_t h_{t-1}; at t = 0 the start is exact, so the solve gives f(h_0) there
        # (a select, not .at[0].set or a concatenation: those need one sharding of their operands,
        # which a sweep's mesh does not give a value broadcast by vmap)
        first_t = (jnp.arange(f_tbd.shape[0]) == 0).reshape((-1,) + (1,) * (f_tbd.ndim - 1))
        b_tbd = f_tbd - jnp.where(first_t, 0.0, apply_coefficient(a, h_prev, quasi))
        h_tbd = solve_affine(a, b_tbd, quasi)
        # DEER's safeguard (deer/deer_iter.py, clip_ytnext): a linearisation that expands where the
        # trajectory does not (at h = 0, say) overflows over long T; clip and restart such states
        return jnp.where(jnp.isnan(h_tbd), 0.0, jnp.clip(h_tbd, -_CLIP, _CLIP))

    def keep_going(state):
        k, h, res = state
        return (k < options.max_iter) & (res > tolerance(options, h.dtype)) & jnp.isfinite(res)

    def body(state):
        k, h, _ = state
        h = newton_step(h)
        return k + 1, h, residual_of(h)

    res0 = residual_of(guess_tbd)
    # the counter takes the residual's batching: a bare jnp.int32(0) starts unbatched inside a
    # sweep's vmap and breaks under the sweep mesh (explicit sharding of the carry)
    state = (jnp.zeros_like(res0, jnp.int32), guess_tbd, res0)
    return jax.lax.while_loop(keep_going, body, state)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _trajectory(cell, quasi, options, treedef, params, x_tbi, h0_bd, mask_tb, eps_tbh, guess_tbd):
    return _iterate(cell, quasi, options, params, x_tbi, h0_bd, mask_tb, eps_tbh, guess_tbd, treedef)


def _trajectory_fwd(cell, quasi, options, treedef, params, x_tbi, h0_bd, mask_tb, eps_tbh, guess_tbd):
    out = _iterate(cell, quasi, options, params, x_tbi, h0_bd, mask_tb, eps_tbh, guess_tbd, treedef)
    return out, (params, x_tbi, h0_bd, mask_tb, eps_tbh, out[1])


def _trajectory_bwd(cell, quasi, options, treedef, saved, cotangents):
    """The implicit function theorem: one transposed linear recurrence, then one VJP of ``f``."""
    params, x_tbi, h0_bd, mask_tb, eps_tbh, h_tbd = saved
    g_tbd = cotangents[1]  # iterations and residual carry no gradient
    h_prev = _previous(h0_bd, h_tbd)
    _, jacobians = _step_fns(cell, params, treedef, x_tbi, mask_tb, eps_tbh)
    # the exact gradient needs the full Jacobians, on both paths
    jt_rev = jnp.flip(jnp.swapaxes(jacobians(h_prev, False), -1, -2), axis=0)  # J_{T-1-s}^T at s
    # lambda_t = g_t + J_{t+1}^T lambda_{t+1}, lambda_{T-1} = g_{T-1}: a forward recurrence in reversed time
    a_rev = jnp.concatenate([jnp.zeros_like(jt_rev[:1]), jt_rev[:-1]])
    lam_tbd = jnp.flip(solve_affine(a_rev, jnp.flip(g_tbd, axis=0), False), axis=0)

    def step_all(params, x_tbi, h_prev, eps_tbh):
        values, _ = _step_fns(cell, params, treedef, x_tbi, mask_tb, eps_tbh)
        return values(h_prev)

    _, vjp = jax.vjp(step_all, params, x_tbi, h_prev, eps_tbh)
    d_params, d_x, d_h_prev, d_eps = vjp(lam_tbd)
    return d_params, d_x, d_h_prev[0], None, d_eps, jnp.zeros_like(h_tbd)


_trajectory.defvjp(_trajectory_fwd, _trajectory_bwd)


def recurrence(cell, params, seq: scan.SequenceInputs, *, quasi=False, newton_options=None, initial_guess=None):
    """``(final carry, y [T, B, H], NewtonInfo)`` by Newton's method over the sequence (module
    docstring); never raises on non-convergence (``rnnlab.unroll.recurrence`` does).

    ``initial_guess``: the initial trajectory, a carry whose leaves are ``[T, B, H]`` (a warm
    start); None starts from zeros."""
    options = NewtonOptions() if newton_options is None else newton_options
    x_tbi, carry0, mask_tb, eps_tbh = seq
    h0_bd = flatten_carry(carry0)
    T, B = x_tbi.shape[:2]
    if initial_guess is None:
        guess_tbd = jnp.zeros((T, B, h0_bd.shape[-1]), h0_bd.dtype)
    else:
        guess_tbd = flatten_carry(initial_guess).astype(h0_bd.dtype)
    treedef = jax.tree.structure(carry0)
    iterations, h_tbd, residual = _trajectory(
        cell, quasi, options, treedef, params, x_tbi, h0_bd, mask_tb, eps_tbh, guess_tbd
    )
    info = NewtonInfo(iterations, residual, residual <= tolerance(options, h_tbd.dtype))
    # the outputs from the converged trajectory, by the same step: y_t as the sequential paths make it
    f = _row_step(cell, params, treedef)
    y_n = f(_rows(_previous(h0_bd, h_tbd)), _rows(x_tbi), _rows(mask_tb), _rows(eps_tbh))[1]
    final = unflatten_carry(treedef, h_tbd[-1])
    return final, y_n.reshape(T, B, -1), info


def failure_message(path, info: NewtonInfo, options) -> str | None:
    """One line saying what did not converge and the fix; None when it converged."""
    if bool(info.converged):
        return None
    how = "diverged" if not bool(jnp.isfinite(info.residual)) else "did not reach the tolerance"
    return (
        f"path={path!r} {how}: residual {float(info.residual):.3g} after {int(info.iterations)} iterations "
        f"(max_iter={options.max_iter}, tol={default_tol(info.residual.dtype) if options.tol is None else options.tol:g}); the dynamics may be chaotic (lambda_1 >= 0): use "
        "path='fused', or NewtonOptions(max_iter=..., damping=...), or NewtonOptions(fallback=True) for the "
        "sequential result"
    )


def _raise_unless_converged(path, options, iterations, residual, converged):
    message = failure_message(path, NewtonInfo(iterations, residual, converged), options)
    if message is not None:
        raise ValueError(message)


def settle(path, options, result, info: NewtonInfo, sequential):
    """``result`` if Newton converged; else the ``sequential()`` result with ``options.fallback``,
    or a ``ValueError`` (under ``jax.jit``, raised from a callback: the runtime error carries the line)."""
    if options.fallback:
        return jax.lax.cond(jnp.all(info.converged), lambda: result, sequential)
    if all(map(is_concrete, info)):
        _raise_unless_converged(path, options, *info)
        return result
    try:
        jax.debug.callback(functools.partial(_raise_unless_converged, path, options), *info)
    except Exception as e:  # noqa: BLE001
        # inside a vmap sharded over devices (a sweep) JAX cannot unroll the callback over the
        # sharded axis; the poisoned outputs below still keep a failure from passing silently
        if "sharded" not in str(e):
            raise
    # a trajectory that did not converge is never returned as if it had: NaN, as a diverged run
    poison = lambda a: jnp.where(jnp.all(info.converged), a, jnp.nan) if jnp.issubdtype(a.dtype, jnp.floating) else a
    return jax.tree.map(poison, result)
