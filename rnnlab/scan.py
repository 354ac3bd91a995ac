"""Unroll a cell over time with ``jax.lax.scan``.

    outputs, final_carry = unroll(cell, params, x_bti, lengths=lengths_b)

The input projection ``x W_ih^T + b_ih`` for every step is one matmul before
the scan; only ``h W_hh^T`` and the gate arithmetic run inside the loop, so
compile time does not grow with T.

Variable lengths (``lengths[b]`` valid steps of sequence b, the rest padding):
  * padded outputs are exactly zero and padded inputs have no influence
    (not even on gradients),
  * the final carry is the one after step ``lengths[b] - 1``,
  * ``reverse=True`` reverses only each sequence's valid prefix, so the
    backward direction of a bidirectional layer starts at the last real step,
  * lengths outside ``1..T`` are an error, never garbage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import validation
from rnnlab.cells import Cell


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


def _check_perturbation(eps, shape_tbh, time_major):
    eps = jnp.asarray(eps)
    want = shape_tbh if time_major else (shape_tbh[1], shape_tbh[0], shape_tbh[2])
    if eps.shape != want:
        raise ValueError(f"hidden_perturbation must have the outputs' shape {want}, got {tuple(eps.shape)}")
    return eps if time_major else jnp.swapaxes(eps, 0, 1)


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
    remat: bool = False,
    hidden_perturbation=None,
):
    """Run ``cell`` over a sequence.

    Args:
      x: ``[B, T, I]`` (``[T, B, I]`` if ``time_major``), floating point.
      lengths: optional ints ``[B]`` in ``1..T``; ``None`` means all T steps.
      initial_carry: the cell's carry for batch ``(B,)``; zeros by default.
      reverse: process each sequence's valid prefix from its last step back.
      unroll: steps per scan iteration (``jax.lax.scan``'s ``unroll``).
      remat: rematerialise each step in the backward pass (memory O(T*H)
        instead of O(T*G*H) activations, at the price of recomputation).
      hidden_perturbation: optional ``eps`` shaped like the outputs, added to
        the hidden state after each step (``h_t <- h_t + eps_t``, carried
        forward).  Its gradient at ``eps = 0`` is ``dL/dh_t`` for every t in
        one backward pass (``rnnlab.diagnostics``).  In the input's time
        order, like the outputs.

    Returns:
      ``(outputs, final_carry)``: outputs ``[B, T, H]`` (or ``[T, B, H]``),
      zero at padding, in the input's time order; the carry after each
      sequence's last valid step.
    """
    input_size = check_params(cell, params)
    x = validation.check_sequence(x, time_major=time_major, input_size=input_size)
    x_tbi = x if time_major else jnp.swapaxes(x, 0, 1)
    num_steps, batch_size = x_tbi.shape[:2]
    lengths_b = validation.check_lengths(lengths, batch_size, num_steps)
    if initial_carry is None:
        initial_carry = cell.initial_carry((batch_size,), x.dtype)
    else:
        expected = jax.eval_shape(lambda: cell.initial_carry((batch_size,), x.dtype))
        validation.check_tree_shapes("initial_carry", initial_carry, expected)

    if reverse:
        x_tbi = reverse_valid_prefix(x_tbi, lengths_b)
    xp_tbg = cell.project_inputs(params, x_tbi)  # one matmul for all steps

    eps_tbh = None
    if hidden_perturbation is None:
        def cell_step(carry, xp_bg, eps_bh):
            return cell.step_projected(params, carry, xp_bg)
    else:
        eps_tbh = _check_perturbation(hidden_perturbation, (num_steps, batch_size, cell.hidden_size), time_major)
        if reverse:
            eps_tbh = reverse_valid_prefix(eps_tbh, lengths_b)

        def cell_step(carry, xp_bg, eps_bh):
            carry, _ = cell.step_projected(params, carry, xp_bg)
            h_bh = cell.carry_hidden(carry) + eps_bh
            return cell.replace_hidden(carry, h_bh), h_bh

    if lengths_b is None:
        def step(carry, inputs):
            xp_bg, eps_bh = inputs
            return cell_step(carry, xp_bg, eps_bh)

        scanned = (xp_tbg, eps_tbh)
    else:
        mask_tb = jnp.arange(num_steps)[:, None] < lengths_b[None, :]
        # Zero padded inputs so that non-finite padding cannot leak into gradients.
        xp_tbg = jnp.where(mask_tb[..., None], xp_tbg, 0)

        def step(carry, inputs):
            xp_bg, eps_bh, valid_b = inputs
            new_carry, y_bh = cell_step(carry, xp_bg, eps_bh)
            keep = lambda new, old: jnp.where(valid_b[:, None], new, old)
            return jax.tree.map(keep, new_carry, carry), jnp.where(valid_b[:, None], y_bh, 0)

        scanned = (xp_tbg, eps_tbh, mask_tb)

    if remat:
        step = jax.checkpoint(step)
    final_carry, y_tbh = jax.lax.scan(step, initial_carry, scanned, unroll=unroll)

    if reverse:
        y_tbh = reverse_valid_prefix(y_tbh, lengths_b)
    return (y_tbh if time_major else jnp.swapaxes(y_tbh, 0, 1)), final_carry
