"""Unroll a cell over time with ``jax.lax.scan``: the reference semantics, and the one dispatch.

    outputs, final_carry = unroll(cell, params, x_bti, lengths=lengths_b)

One ``jax.lax.scan`` step computes ``x_t W_ih^T + h_{t-1} W_hh^T`` and the
cell's gate arithmetic (``rnnlab.steps``), so compile time does not grow with T.

Variable lengths (``lengths[b]`` valid steps of sequence b, the rest padding):
  * padded outputs are exactly zero and padded inputs have no influence
    (not even on gradients),
  * the final carry is the one after step ``lengths[b] - 1``,
  * ``reverse=True`` reverses only each sequence's valid prefix, so the
    backward direction of a bidirectional layer starts at the last real step,
  * lengths outside ``1..T`` are an error, never garbage.

How the gradient is computed is the ``backward`` option, resolved in one place
(``recurrence``):

  ``"fused"``     the default: a custom VJP whose weight gradients are single
                  matmuls over all steps (``rnnlab.fused``);
  ``"autodiff"``  JAX's derivative of the same scan: the reference, and the path
                  for forward mode (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``);
  ``"remat"``     JAX's derivative with each step recomputed in the backward
                  pass (``jax.checkpoint``): activations O(T*H) instead of O(T*G*H).

Every path takes every input (lengths, initial carry, ``hidden_perturbation``).

A linear recurrence (``rnnlab.linear``: LRU, minGRU, minLSTM) has no sequential
gradient to fuse: its projections are computed for all steps at once, and JAX
differentiates its evaluation, ``evaluation="sequential"`` (``jax.lax.scan``) or
``"associative"`` (``jax.lax.associative_scan``, parallel over time).  Only a linear
cell can be evaluated associatively.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import fused, linear, steps, validation
from rnnlab.cells import Cell
from rnnlab.linear import check_evaluation

BACKWARDS = ("fused", "autodiff", "remat")


def check_backward(backward: str) -> str:
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {', '.join(map(repr, BACKWARDS))}, got {backward!r}")
    return backward


def check_evaluation_for(cell, evaluation: str) -> str:
    check_evaluation(evaluation)
    if evaluation == "associative" and not getattr(cell, "linear", False):
        raise ValueError(
            f"evaluation='associative' needs a linear recurrence (LRU, minGRU, minLSTM); "
            f"{type(cell).__name__} is evaluated step by step"
        )
    return evaluation


def recurrence(
    cell: Cell,
    params,
    x_tbi,
    carry0,
    mask_tb=None,
    eps_tbh=None,
    *,
    backward="fused",
    unroll=1,
    evaluation="sequential",
):
    """``(final carry, y [T, B, H])`` of the prepared inputs: a linear cell by its ``evaluation``,
    any other by the gradient path ``backward`` names."""
    check_backward(backward)
    if getattr(cell, "linear", False):
        return linear.recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh, evaluation=evaluation)
    check_evaluation_for(cell, evaluation)
    match backward:
        case "fused":
            return fused.recurrence(cell, unroll, params, x_tbi, carry0, mask_tb, eps_tbh)
        case "autodiff":
            return steps.scan(cell, params, x_tbi, carry0, mask_tb, eps_tbh, unroll=unroll)
        case "remat":
            return steps.scan(cell, params, x_tbi, carry0, mask_tb, eps_tbh, unroll=unroll, remat=True)


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
    try:
        input_size = int(params["w_ih"].shape[1])
    except (KeyError, TypeError, IndexError, AttributeError):
        raise ValueError(f"params must be a dict with 'w_ih' [G*H, I] for {type(cell).__name__}") from None
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
    unroll: int = 1,
    hidden_perturbation=None,
    backward: str = "fused",
    evaluation: str = "sequential",
):
    """Run ``cell`` over a sequence.

    Args:
      x: ``[B, T, I]`` (``[T, B, I]`` if ``time_major``), floating point.
      lengths: optional ints ``[B]`` in ``1..T``; ``None`` means all T steps.
      initial_carry: the cell's carry for batch ``(B,)``; zeros by default.
      reverse: process each sequence's valid prefix from its last step back.
      unroll: steps per scan iteration (``jax.lax.scan``'s ``unroll``).
      hidden_perturbation: optional ``eps`` shaped like the outputs, added to
        the hidden state after each step (``h_t <- h_t + eps_t``, carried
        forward).  Its gradient at ``eps = 0`` is ``dL/dh_t`` for every t in
        one backward pass (``rnnlab.diagnostics``).  In the input's time
        order, like the outputs.
      backward: ``"fused"`` (default), ``"autodiff"`` or ``"remat"``: how the
        gradient is computed (module docstring).  Speeds: benchmarks/README.md.
      evaluation: ``"sequential"`` (default) or ``"associative"`` (linear cells only).

    Returns:
      ``(outputs, final_carry)``: outputs ``[B, T, H]`` (or ``[T, B, H]``),
      zero at padding, in the input's time order; the carry after each
      sequence's last valid step.
    """
    check_backward(backward)
    check_evaluation_for(cell, evaluation)
    x_tbi, lengths_b, mask_tb, carry0 = prepare(cell, params, x, lengths, initial_carry, time_major)
    eps_tbh = None
    if hidden_perturbation is not None:
        eps_tbh = check_perturbation(hidden_perturbation, x_tbi.shape[:2] + (cell.hidden_size,), time_major)
    if reverse:
        x_tbi = reverse_valid_prefix(x_tbi, lengths_b)
        eps_tbh = None if eps_tbh is None else reverse_valid_prefix(eps_tbh, lengths_b)
    final_carry, y_tbh = recurrence(
        cell, params, x_tbi, carry0, mask_tb, eps_tbh, backward=backward, unroll=unroll, evaluation=evaluation
    )
    if reverse:
        y_tbh = reverse_valid_prefix(y_tbh, lengths_b)
    return (y_tbh if time_major else jnp.swapaxes(y_tbh, 0, 1)), final_carry
