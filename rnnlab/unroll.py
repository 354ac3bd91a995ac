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
                     Both take ``newton_options=NewtonOptions(...)`` (tolerance, ``max_iter``, damping,
                     sequential fallback) and an ``initial_guess``; not converging is an error
                     naming the residual, unless the fallback was asked for;
  ``"sequential"``   linear cells' default (``rnnlab.linear``): every step's coefficients at
                     once, then ``jax.lax.scan`` over the affine maps;
  ``"associative"``  linear cells: ``jax.lax.associative_scan``, parallel over time.

A cell lists the paths it supports (``cell.paths``; a three-method cell runs
``rnnlab.cells.STEP_PATHS``, a ``FusedCell`` also ``fused``); any other pair is refused in one
line naming both, and so are ``fused`` for a cell without the projections (naming what is
missing), ``scan_unroll`` where no ``lax.scan`` runs (the associative and Newton paths) and
Newton's options on any other path.  Every path takes every input (lengths, initial carry,
``hidden_perturbation``), bundled as one ``rnnlab.scan.SequenceInputs``.

``unroll`` checks its arguments and resolves the path once, then ``run`` lays the sequence out
(time-major, padding zeroed, each valid prefix reversed for ``reverse``) and calls the dispatch.
``rnnlab.layers.RNN`` checks a whole stack once and calls ``run`` per layer and direction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import cells, fused, linear, newton, scan, validation
from rnnlab.cells import Cell
from rnnlab.scan import SequenceInputs

PATHS = ("fused", "autodiff", "remat", "newton", "quasi_newton", "sequential", "associative")


def resolve_path(cell: Cell, path: str | None, scan_unroll: int = 1, newton_options=None) -> str:
    """The path ``cell`` runs with: ``path``, or its default when ``None``; a path the cell
    does not support, ``fused`` for a cell without the projections, ``scan_unroll`` on a path
    without ``lax.scan``, or Newton's options off the Newton paths, is a ``ValueError``."""
    supported = cells.paths(cell)
    if path is None:
        path = supported[0]
    if path not in PATHS:
        raise ValueError(
            f"path must be one of {', '.join(map(repr, PATHS))} (or None: the cell's default), got {path!r}"
        )
    if path == "fused" and not cells.is_fused(cell) and not isinstance(cell, linear.LinearCellBase):
        missing = ", ".join(cells.missing_fused_methods(cell))
        raise ValueError(
            f"path='fused' needs the cell's projections and their VJPs (rnnlab.cells.FusedCell); "
            f"{cells.name_of(cell)} lacks {missing}: subclass rnnlab.cells.CellBase or DenseCell, "
            f"or run one of {', '.join(map(repr, supported))}"
        )
    if path not in supported:
        raise ValueError(
            f"path={path!r} does not apply to {cells.name_of(cell)}: it runs {', '.join(map(repr, supported))}"
        )
    if not isinstance(scan_unroll, int) or isinstance(scan_unroll, bool) or scan_unroll < 1:
        raise ValueError(f"scan_unroll must be a positive int, got {scan_unroll!r}")
    if path in ("associative",) + newton.NEWTON_PATHS and scan_unroll != 1:
        raise ValueError(f"scan_unroll={scan_unroll} does not apply to path={path!r} (no lax.scan runs)")
    if newton_options is not None:
        if path not in newton.NEWTON_PATHS:
            raise ValueError(f"newton_options apply to paths {newton.NEWTON_PATHS}, not path={path!r}")
        if not isinstance(newton_options, newton.NewtonOptions):
            raise TypeError(
                f"newton_options must be a rnnlab.newton.NewtonOptions, got {type(newton_options).__name__}"
            )
    return path


def recurrence(
    cell: Cell,
    params,
    seq: SequenceInputs,
    *,
    path: str,
    scan_unroll=1,
    newton_options=None,
    initial_guess=None,
    return_info=False,
):
    """``(final carry, y [T, B, H])`` of ``seq`` by ``path`` (resolved by ``resolve_path``): the one
    dispatch.  On the Newton paths, ``initial_guess`` (a carry of ``[T, B, H]`` leaves) starts the
    iteration and ``return_info`` appends its ``rnnlab.newton.NewtonInfo``."""
    match path:
        case "fused":
            return fused.recurrence(cell, params, seq, scan_unroll=scan_unroll)
        case "autodiff":
            return scan.scan(cell, params, seq, scan_unroll=scan_unroll)
        case "remat":
            return scan.scan(cell, params, seq, scan_unroll=scan_unroll, remat=True)
        case "sequential":
            return linear.recurrence(cell, params, seq, scan_unroll=scan_unroll)
        case "associative":
            return linear.recurrence(cell, params, seq, associative=True)
        case "newton" | "quasi_newton":
            options = newton.NewtonOptions() if newton_options is None else newton_options
            *result, info = newton.recurrence(
                cell, params, seq, quasi=path == "quasi_newton", newton_options=options, initial_guess=initial_guess
            )
            # the sequential result when the options ask for it: fused where the cell has it
            sequential = lambda: recurrence(cell, params, seq, path="fused" if cells.is_fused(cell) else "autodiff")
            result = newton.settle(path, options, tuple(result), info, sequential)
            return (*result, info) if return_info else result
        case _:  # pragma: no cover - resolve_path admits only the cases above
            raise ValueError(f"unresolved path {path!r}")


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


def check_params(cell: Cell, params, input_size: int | None = None) -> int | None:
    """Params must match the cell's layout; returns the input size they expect (None when the
    cell cannot say: then ``input_size``, the inputs' width, is the one checked)."""
    expected_input = cells.input_size_of(cell, params)
    width = expected_input if expected_input is not None else input_size
    if width is not None:
        validation.check_tree_shapes(f"{cells.name_of(cell)} params", params, cells.param_specs(cell, width))
    return expected_input


def check_step(cell: Cell, params, carry0, x_bi) -> None:
    """The cell's step, traced once (``jax.eval_shape``), must return a carry shaped like the one it
    took and an output ``[B, H]``: one line naming the cell otherwise (JAX's scan would report a
    type mismatch deep inside)."""
    try:
        new_carry, y = jax.eval_shape(cell.step, params, carry0, x_bi)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{cells.name_of(cell)}.step(params, carry, x) failed on a carry {_shapes(carry0)}: {e}"
        ) from e
    shapes = lambda tree: [tuple(leaf.shape) for leaf in jax.tree.leaves(tree)]  # dtypes may promote (bf16 inputs)
    if jax.tree.structure(new_carry) != jax.tree.structure(carry0) or shapes(new_carry) != shapes(carry0):
        raise ValueError(
            f"{cells.name_of(cell)}.step must return a carry shaped like the one it took: "
            f"took {_shapes(carry0)}, returned {_shapes(new_carry)}"
        )
    want_y = (x_bi.shape[0], cells.hidden_size(cell))
    if not hasattr(y, "shape") or tuple(y.shape) != want_y:
        raise ValueError(f"{cells.name_of(cell)}.step must return an output y of shape {want_y}, got {_shapes(y)}")


def _shapes(tree) -> str:
    leaves = jax.tree.leaves(tree)
    shapes = [f"{tuple(leaf.shape)} {leaf.dtype}" for leaf in leaves]
    return shapes[0] if len(shapes) == 1 else f"{type(tree).__name__}({', '.join(shapes)})"


def check_perturbation(eps, shape_tbh, time_major):
    """``eps`` checked: in the outputs' layout (``[T, B, H]`` if ``time_major``, else ``[B, T, H]``)."""
    eps = jnp.asarray(eps)
    want = shape_tbh if time_major else (shape_tbh[1], shape_tbh[0], shape_tbh[2])
    if eps.shape != want:
        raise ValueError(f"hidden_perturbation must have the outputs' shape {want}, got {tuple(eps.shape)}")
    return eps


def prepare(cell, params, x, lengths, initial_carry, time_major):
    """Checked inputs of one cell's scan: ``(x, lengths [B] or None, initial carry)``, the carry
    zeros by default, in the inputs' dtype."""
    input_size = check_params(cell, params, jnp.shape(x)[-1] if jnp.ndim(x) == 3 else None)
    x = validation.check_sequence(x, time_major=time_major, input_size=input_size)
    param_dtypes = {p.dtype for p in jax.tree.leaves(params)}
    if param_dtypes != {x.dtype}:
        names = ", ".join(sorted(str(d) for d in param_dtypes))
        raise TypeError(
            f"inputs are {x.dtype} and params {names}: unroll computes in one dtype; cast one of them, "
            "or use rnnlab.RNN(cell, dtype=...), which casts both (and keeps a half-precision carry in float32)"
        )
    num_steps, batch_size = x.shape[:2] if time_major else x.shape[1::-1]
    lengths_b = validation.check_lengths(lengths, batch_size, num_steps)
    expected = jax.eval_shape(lambda: cells.initial_carry(cell, (batch_size,), x.dtype))
    if initial_carry is None:
        initial_carry = cells.initial_carry(cell, (batch_size,), x.dtype)
    else:
        validation.check_tree_shapes("initial_carry", initial_carry, expected)
    check_step(cell, params, expected, jax.ShapeDtypeStruct((batch_size, x.shape[-1]), x.dtype))
    return x, lengths_b, initial_carry


def sequence_inputs(x, carry0, lengths_b=None, eps=None, *, time_major=False, reverse=False):
    """``SequenceInputs`` of checked arrays: time-major, padded inputs zeroed (so that non-finite
    padding cannot leak into gradients), and with ``reverse`` each valid prefix reversed."""
    to_tb = lambda a: None if a is None else jnp.swapaxes(a, 0, 1)
    x_tbi, eps_tbh = (x, eps) if time_major else (to_tb(x), to_tb(eps))
    mask_tb = None
    if lengths_b is not None:
        mask_tb = jnp.arange(x_tbi.shape[0])[:, None] < lengths_b[None, :]
        x_tbi = jnp.where(mask_tb[..., None], x_tbi, 0)
    if reverse:
        flip = lambda a: None if a is None else reverse_valid_prefix(a, lengths_b)
        x_tbi, eps_tbh = flip(x_tbi), flip(eps_tbh)
    return SequenceInputs(x_tbi, carry0, mask_tb, eps_tbh)


def run(
    cell: Cell,
    params,
    x,
    carry0,
    lengths_b=None,
    hidden_perturbation=None,
    *,
    path: str,
    reverse=False,
    time_major=False,
    scan_unroll=1,
    newton_options=None,
    initial_guess=None,
    return_info=False,
):
    """``unroll`` of inputs already checked and a path already resolved: the layout and the
    dispatch, nothing checked twice (``rnnlab.layers.RNN`` calls it per layer and direction)."""
    seq = sequence_inputs(x, carry0, lengths_b, hidden_perturbation, time_major=time_major, reverse=reverse)
    guess_tbh = initial_guess
    if initial_guess is not None:
        guess_tbh = initial_guess if time_major else jax.tree.map(lambda g: jnp.swapaxes(g, 0, 1), initial_guess)
        if reverse:
            guess_tbh = jax.tree.map(lambda g: reverse_valid_prefix(g, lengths_b), guess_tbh)
    final_carry, y_tbh, *info = recurrence(
        cell,
        params,
        seq,
        path=path,
        scan_unroll=scan_unroll,
        newton_options=newton_options,
        initial_guess=guess_tbh,
        return_info=return_info,
    )
    if reverse:
        y_tbh = reverse_valid_prefix(y_tbh, lengths_b)
    return ((y_tbh if time_major else jnp.swapaxes(y_tbh, 0, 1)), final_carry, *info)


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
    newton_options: newton.NewtonOptions | None = None,
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
      newton_options: ``rnnlab.newton.NewtonOptions`` for the ``newton``/``quasi_newton`` paths.
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
    path = resolve_path(cell, path, scan_unroll, newton_options)
    if (initial_guess is not None or return_info) and path not in newton.NEWTON_PATHS:
        given = "initial_guess" if initial_guess is not None else "return_info"
        raise ValueError(f"{given} applies to paths {newton.NEWTON_PATHS}, not path={path!r}")
    x, lengths_b, carry0 = prepare(cell, params, x, lengths, initial_carry, time_major)
    shape_tbh = (x.shape[:2] if time_major else x.shape[1::-1]) + (cells.hidden_size(cell),)
    eps = None
    if hidden_perturbation is not None:
        eps = check_perturbation(hidden_perturbation, shape_tbh, time_major)
    if initial_guess is not None:
        # laid out like the outputs: x's first two axes, then H
        expected = jax.tree.map(lambda c: jax.ShapeDtypeStruct(x.shape[:2] + (shape_tbh[-1],), c.dtype), carry0)
        validation.check_tree_shapes("initial_guess", initial_guess, expected)
    return run(
        cell,
        params,
        x,
        carry0,
        lengths_b,
        eps,
        path=path,
        reverse=reverse,
        time_major=time_major,
        scan_unroll=scan_unroll,
        newton_options=newton_options,
        initial_guess=initial_guess,
        return_info=return_info,
    )
