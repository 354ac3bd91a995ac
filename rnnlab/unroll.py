"""Unroll a cell over time: the reference semantics, and THE dispatch of execution paths.

    outputs, final_carry = unroll(cell, params, x_bti, lengths=lengths_b, path="fused")

Variable lengths (``lengths[b]`` valid steps of sequence b, the rest padding):
  * padded outputs are exactly zero and padded inputs have no influence
    (not even on gradients),
  * the final carry is the one after step ``lengths[b] - 1``,
  * ``reverse=True`` reverses only each sequence's valid prefix, so the
    backward direction of a bidirectional layer starts at the last real step,
  * lengths outside ``1..T`` are an error, never garbage.

How the recurrence is computed is one option, ``path``, resolved in one ``match``
(``recurrence``); ``None`` is the cell's default, its ``paths[0]``:

  ``"fused"``        sequential cells' default: ``jax.lax.scan`` and a custom VJP whose weight
                     gradients are single matmuls over all steps (``rnnlab.fused``);
  ``"autodiff"``     JAX's derivative of the same scan (``rnnlab.scan``): the reference, and the
                     path for forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``);
  ``"remat"``        JAX's derivative with each step recomputed in the backward pass
                     (``jax.checkpoint``): activations O(T*H) instead of O(T*G*H);
  ``"newton"``       sequential cells: Newton's method over the whole sequence (DEER), each
                     iteration a linear recurrence solved by ``jax.lax.associative_scan``,
                     gradients by the implicit function theorem (``rnnlab.newton``);
  ``"quasi_newton"`` the same with diagonal Jacobians (quasi-DEER): O(T*B*H) memory.
                     Both take ``newton=NewtonOptions(...)`` (tolerance, ``max_iter``, damping,
                     sequential fallback) and an ``initial_guess``; not converging is an error
                     naming the residual, unless the fallback was asked for;
  ``"sequential"``   linear cells' default (``rnnlab.linear``): every step's coefficients at
                     once, then ``jax.lax.scan`` over the affine maps;
  ``"associative"``  linear cells: ``jax.lax.associative_scan``, parallel over time.

A cell lists the paths it supports (``cell.paths``); any other pair is refused in one line
naming both, and so are ``scan_unroll`` where no ``lax.scan`` runs (the associative and Newton
paths) and Newton's options on any other path.
Every path takes every input (lengths, initial carry, ``hidden_perturbation``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import fused, linear, newton, scan, validation
from rnnlab.cells import SequentialCell
from rnnlab.linear import LinearCell

Cell = SequentialCell | LinearCell
PATHS = ("fused", "autodiff", "remat", "newton", "quasi_newton", "sequential", "associative")


def resolve_path(cell: Cell, path: str | None, scan_unroll: int = 1, newton_options=None) -> str:
    """The path ``cell`` runs with: ``path``, or its default when ``None``; a path the cell
    does not support, ``scan_unroll`` on a path without ``lax.scan``, or Newton's options
    off the Newton paths, is a ``ValueError``."""
    if path is None:
        path = cell.paths[0]
    if path not in PATHS:
        raise ValueError(
            f"path must be one of {', '.join(map(repr, PATHS))} (or None: the cell's default), got {path!r}"
        )
    if path not in cell.paths:
        raise ValueError(
            f"path={path!r} does not apply to {type(cell).__name__}: it runs {', '.join(map(repr, cell.paths))}"
        )
    if not isinstance(scan_unroll, int) or isinstance(scan_unroll, bool) or scan_unroll < 1:
        raise ValueError(f"scan_unroll must be a positive int, got {scan_unroll!r}")
    if path in ("associative",) + newton.NEWTON_PATHS and scan_unroll != 1:
        raise ValueError(f"scan_unroll={scan_unroll} does not apply to path={path!r} (no lax.scan runs)")
    if newton_options is not None:
        if path not in newton.NEWTON_PATHS:
            raise ValueError(f"newton options apply to paths {newton.NEWTON_PATHS}, not path={path!r}")
        if not isinstance(newton_options, newton.NewtonOptions):
            raise TypeError(f"newton must be a rnnlab.newton.NewtonOptions, got {type(newton_options).__name__}")
    return path


def recurrence(
    cell: Cell,
    params,
    x_tbi,
    carry0,
    mask_tb=None,
    eps_tbh=None,
    *,
    path=None,
    scan_unroll=1,
    newton_options=None,
    guess=None,
    return_info=False,
):
    """``(final carry, y [T, B, H])`` of the prepared inputs, by ``path``: the one dispatch.

    On the Newton paths, ``guess`` (a carry of ``[T, B, H]`` leaves) starts the iteration and
    ``return_info`` appends its ``rnnlab.newton.NewtonInfo``."""
    path = resolve_path(cell, path, scan_unroll, newton_options)
    if (guess is not None or return_info) and path not in newton.NEWTON_PATHS:
        given = "initial_guess" if guess is not None else "return_info"
        raise ValueError(f"{given} applies to paths {newton.NEWTON_PATHS}, not path={path!r}")
    match path:
        case "fused":
            return fused.recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh, scan_unroll=scan_unroll)
        case "autodiff":
            return scan.scan(cell, params, x_tbi, carry0, mask_tb, eps_tbh, scan_unroll=scan_unroll)
        case "remat":
            return scan.scan(cell, params, x_tbi, carry0, mask_tb, eps_tbh, scan_unroll=scan_unroll, remat=True)
        case "sequential":
            return linear.recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh, scan_unroll=scan_unroll)
        case "associative":
            return linear.recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh, associative=True)
        case "newton" | "quasi_newton":
            options = newton.NewtonOptions() if newton_options is None else newton_options
            *result, info = newton.recurrence(
                cell,
                params,
                x_tbi,
                carry0,
                mask_tb,
                eps_tbh,
                quasi=path == "quasi_newton",
                options=options,
                guess=guess,
            )
            sequential = lambda: fused.recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh)
            result = newton.settle(path, options, tuple(result), info, sequential)
            return (*result, info) if return_info else result


def reverse_valid_prefix(x_tb, lengths_b=None):
    """Reverse each sequence's first ``lengths[b]`` steps along axis 0, leaving padding in place.

    ``x_tb...[t, b] -> x_tb...[lengths[b] - 1 - t, b]`` for ``t < lengths[b]``.
    It is its own inverse.  Without lengths it is ``jnp.flip`` along time.
    """
    if lengths_b is None:
        return jnp.flip(x_tb, axis=0)
    t_t1 = jnp.arange(x_tb.shape[0])[:, None]
    idx_tb = jnp.where(t_t1 < lengths_b[None, :], lengths_b[None, :] - 1 - t_t1, t_t1)
    idx_tb = idx_tb.reshape(idx_tb.shape + (1,) * (x_tb.ndim - 2))
    return jnp.take_along_axis(x_tb, idx_tb, axis=0)


def check_params(cell: Cell, params) -> int:
    """Params must match the cell's layout; returns the input size they expect."""
    input_size = cell.input_size_of(params)
    validation.check_tree_shapes(f"{type(cell).__name__} params", params, cell.param_specs(input_size))
    return input_size


def check_perturbation(eps, shape_tbh, time_major):
    """``eps`` in the outputs' layout -> ``[T, B, H]``."""
    eps = jnp.asarray(eps)
    want = shape_tbh if time_major else (shape_tbh[1], shape_tbh[0], shape_tbh[2])
    if eps.shape != want:
        raise ValueError(f"hidden_perturbation must have the outputs' shape {want}, got {tuple(eps.shape)}")
    return eps if time_major else jnp.swapaxes(eps, 0, 1)


def prepare(cell, params, x, lengths, initial_carry, time_major):
    """Checked inputs of a scan: ``(x [T, B, I] with padding zeroed, lengths [B] or None,
    valid-step mask [T, B] or None, initial carry)``."""
    input_size = check_params(cell, params)
    x = validation.check_sequence(x, time_major=time_major, input_size=input_size)
    param_dtypes = {p.dtype for p in jax.tree.leaves(params)}
    if param_dtypes != {x.dtype}:
        names = ", ".join(sorted(str(d) for d in param_dtypes))
        raise TypeError(
            f"inputs are {x.dtype} and params {names}: unroll computes in one dtype; cast one of them, "
            "or use rnnlab.RNN(cell, dtype=...), which casts both (and keeps a half-precision carry in float32)"
        )
    x_tbi = x if time_major else jnp.swapaxes(x, 0, 1)
    num_steps, batch_size = x_tbi.shape[:2]
    lengths_b = validation.check_lengths(lengths, batch_size, num_steps)
    if initial_carry is None:
        initial_carry = cell.initial_carry((batch_size,), x.dtype)
    else:
        expected = jax.eval_shape(lambda: cell.initial_carry((batch_size,), x.dtype))
        validation.check_tree_shapes("initial_carry", initial_carry, expected)
    mask_tb = None
    if lengths_b is not None:
        mask_tb = jnp.arange(num_steps)[:, None] < lengths_b[None, :]
        # Zero padded inputs so that non-finite padding cannot leak into gradients.
        x_tbi = jnp.where(mask_tb[..., None], x_tbi, 0)
    return x_tbi, lengths_b, mask_tb, initial_carry


def unroll(
    cell: Cell,
    params,
    x,
    *,
    lengths=None,
    initial_carry=None,
    reverse: bool = False,
    time_major: bool = False,
    scan_unroll: int = 1,
    hidden_perturbation=None,
    path: str | None = None,
    newton: newton.NewtonOptions | None = None,
    initial_guess=None,
    return_info: bool = False,
):
    """Run ``cell`` over a sequence.

    Args:
      x: ``[B, T, I]`` (``[T, B, I]`` if ``time_major``), floating point.
      lengths: optional ints ``[B]`` in ``1..T``; ``None`` means all T steps.
      initial_carry: the cell's carry for batch ``(B,)``; zeros by default.
      reverse: process each sequence's valid prefix from its last step back.
      scan_unroll: steps per scan iteration (``jax.lax.scan``'s ``unroll``).
      hidden_perturbation: optional ``eps`` shaped like the outputs, added to
        the hidden state after each step (``h_t <- h_t + eps_t``, carried
        forward).  Its gradient at ``eps = 0`` is ``dL/dh_t`` for every t in
        one backward pass (``rnnlab.diagnostics``).  In the input's time
        order, like the outputs.
      path: the execution path (module docstring); ``None`` is the cell's default.
        Speeds: benchmarks/README.md.
      newton: ``rnnlab.newton.NewtonOptions`` for the ``newton``/``quasi_newton`` paths.
      initial_guess: those paths' starting trajectory (a warm start), a carry whose leaves
        are laid out like the outputs (``[B, T, H]``, or ``[T, B, H]``); zeros by default.
      return_info: on those paths, also return their ``rnnlab.newton.NewtonInfo``
        (iterations, final residual, converged).

    Returns:
      ``(outputs, final_carry)``: outputs ``[B, T, H]`` (or ``[T, B, H]``),
      zero at padding, in the input's time order; the carry after each
      sequence's last valid step.  ``(outputs, final_carry, info)`` with ``return_info``.

    >>> import jax, jax.numpy as jnp
    >>> from rnnlab import LSTMCell
    >>> cell = LSTMCell(4)
    >>> params = cell.init(jax.random.key(0), input_size=2)
    >>> x = jax.random.normal(jax.random.key(1), (3, 6, 2))
    >>> outputs, final = unroll(cell, params, x, lengths=jnp.array([6, 2, 4]))
    >>> bool(jnp.all(final.h[1] == outputs[1, 1]))   # the carry at each sequence's last valid step
    True
    """
    resolve_path(cell, path, scan_unroll, newton)
    x_tbi, lengths_b, mask_tb, carry0 = prepare(cell, params, x, lengths, initial_carry, time_major)
    eps_tbh = guess_tbh = None
    if hidden_perturbation is not None:
        eps_tbh = check_perturbation(hidden_perturbation, x_tbi.shape[:2] + (cell.hidden_size,), time_major)
    if initial_guess is not None:
        # laid out like the outputs: x's first two axes, then H
        expected = jax.tree.map(lambda c: jax.ShapeDtypeStruct(jnp.shape(x)[:2] + (cell.hidden_size,), c.dtype), carry0)
        validation.check_tree_shapes("initial_guess", initial_guess, expected)
        guess_tbh = initial_guess if time_major else jax.tree.map(lambda g: jnp.swapaxes(g, 0, 1), initial_guess)
    if reverse:
        flip = lambda a: None if a is None else jax.tree.map(lambda v: reverse_valid_prefix(v, lengths_b), a)
        x_tbi, eps_tbh, guess_tbh = flip(x_tbi), flip(eps_tbh), flip(guess_tbh)
    final_carry, y_tbh, *info = recurrence(
        cell,
        params,
        x_tbi,
        carry0,
        mask_tb,
        eps_tbh,
        path=path,
        scan_unroll=scan_unroll,
        newton_options=newton,
        guess=guess_tbh,
        return_info=return_info,
    )
    if reverse:
        y_tbh = reverse_valid_prefix(y_tbh, lengths_b)
    return ((y_tbh if time_major else jnp.swapaxes(y_tbh, 0, 1)), final_carry, *info)
