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

import functools

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


BACKWARDS = ("autodiff", "fused")


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
    backward: str = "autodiff",
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
      backward: ``"autodiff"`` (default) is JAX's own derivative of the scan.
        ``"fused"`` uses a custom VJP whose reverse scan carries only the
        state gradients, the recurrent weight gradient then being one matmul
        over all steps; on a 2-core CPU it was faster for LSTM and Elman and
        slower for GRU (benchmarks/README.md), so it is opt-in.  With
        ``remat`` or ``hidden_perturbation`` the autodiff path is used.

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
    w_hh_t = params["w_hh"].T  # [H, G*H]: transposed once, outside the loop
    b_hh = params.get("b_hh")

    mask_tb = None
    if lengths_b is not None:
        mask_tb = jnp.arange(num_steps)[:, None] < lengths_b[None, :]
        # Zero padded inputs so that non-finite padding cannot leak into gradients.
        xp_tbg = jnp.where(mask_tb[..., None], xp_tbg, 0)
    eps_tbh = None
    if hidden_perturbation is not None:
        eps_tbh = _check_perturbation(hidden_perturbation, (num_steps, batch_size, cell.hidden_size), time_major)
        if reverse:
            eps_tbh = reverse_valid_prefix(eps_tbh, lengths_b)

    if backward not in BACKWARDS:
        raise ValueError(f"backward must be 'fused' or 'autodiff', got {backward!r}")
    if backward == "fused" and eps_tbh is None and not remat:
        final_carry, y_tbh = _fused_recurrence(cell, unroll, w_hh_t, b_hh, xp_tbg, initial_carry, mask_tb)
    else:
        final_carry, y_tbh = _autodiff_recurrence(
            cell, w_hh_t, b_hh, xp_tbg, initial_carry, mask_tb, eps_tbh, unroll, remat
        )

    if reverse:
        y_tbh = reverse_valid_prefix(y_tbh, lengths_b)
    return (y_tbh if time_major else jnp.swapaxes(y_tbh, 0, 1)), final_carry


# -- the recurrence: forward scan and its two derivatives ---------------------

def _cell_update(cell, carry, xp_bg, hp_bg, valid_b=None, eps_bh=None):
    """One step given both projections, with the hidden perturbation and the length mask."""
    new_carry, y_bh = cell.step_from_projections(carry, xp_bg, hp_bg)
    if eps_bh is not None:
        y_bh = cell.carry_hidden(new_carry) + eps_bh
        new_carry = cell.replace_hidden(new_carry, y_bh)
    if valid_b is not None:
        keep = lambda new, old: jnp.where(valid_b[:, None], new, old)
        new_carry, y_bh = jax.tree.map(keep, new_carry, carry), jnp.where(valid_b[:, None], y_bh, 0)
    return new_carry, y_bh


def _project(w_hh_t, b_hh, h_bh):
    """``hp = h W_hh^T + b_hh`` with ``W_hh^T`` already transposed."""
    hp = h_bh @ w_hh_t
    return hp if b_hh is None else hp + b_hh


def _autodiff_recurrence(cell, w_hh_t, b_hh, xp_tbg, carry0, mask_tb, eps_tbh, unroll, remat):
    def step(carry, inputs):
        xp_bg, valid_b, eps_bh = inputs
        hp_bg = _project(w_hh_t, b_hh, cell.carry_hidden(carry))
        return _cell_update(cell, carry, xp_bg, hp_bg, valid_b, eps_bh)

    if remat:
        step = jax.checkpoint(step)
    return jax.lax.scan(step, carry0, (xp_tbg, mask_tb, eps_tbh), unroll=unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_recurrence(cell, unroll, w_hh_t, b_hh, xp_tbg, carry0, mask_tb):
    return _fused_forward(cell, unroll, w_hh_t, b_hh, xp_tbg, carry0, mask_tb)[0]


def _fused_forward(cell, unroll, w_hh_t, b_hh, xp_tbg, carry0, mask_tb):
    def step(carry, inputs):
        xp_bg, valid_b = inputs
        hp_bg = _project(w_hh_t, b_hh, cell.carry_hidden(carry))
        new_carry, y_bh = _cell_update(cell, carry, xp_bg, hp_bg, valid_b)
        return new_carry, (y_bh, hp_bg, carry)

    final, (y_tbh, hp_tbg, carries_t) = jax.lax.scan(step, carry0, (xp_tbg, mask_tb), unroll=unroll)
    return (final, y_tbh), (w_hh_t, b_hh, xp_tbg, hp_tbg, carries_t, mask_tb)


def _fused_backward(cell, unroll, residuals, cotangents):
    """Reverse scan over the state gradients only; then the weight gradients as one
    matmul over all steps: ``dW_hh^T = sum_t h_{t-1}^T dhp_t``, ``db_hh = sum_t dhp_t``."""
    w_hh_t, b_hh, xp_tbg, hp_tbg, carries_t, mask_tb = residuals
    d_final, dy_tbh = cotangents
    w_hh = w_hh_t.T  # [G*H, H], outside the loop

    def step(d_carry, inputs):
        xp_bg, hp_bg, carry_prev, valid_b, dy_bh = inputs
        update = lambda xp, hp, carry: _cell_update(cell, carry, xp, hp, valid_b)
        _, vjp = jax.vjp(update, xp_bg, hp_bg, carry_prev)
        dxp_bg, dhp_bg, d_prev = vjp((d_carry, dy_bh))
        # hp = h_prev W_hh^T + b: the recurrent path back into h_prev
        d_prev = cell.replace_hidden(d_prev, cell.carry_hidden(d_prev) + dhp_bg @ w_hh)
        return d_prev, (dxp_bg, dhp_bg)

    d_carry0, (dxp_tbg, dhp_tbg) = jax.lax.scan(
        step, d_final, (xp_tbg, hp_tbg, carries_t, mask_tb, dy_tbh), reverse=True, unroll=unroll
    )
    h_prev_tbh = cell.carry_hidden(carries_t)
    d_w_hh_t = jnp.einsum("tbh,tbg->hg", h_prev_tbh, dhp_tbg)
    d_b_hh = None if b_hh is None else jnp.sum(dhp_tbg, axis=(0, 1))
    return d_w_hh_t, d_b_hh, dxp_tbg, d_carry0, None


_fused_recurrence.defvjp(_fused_forward, _fused_backward)
