"""One step of a cell inside a scan, and the plain scan of such steps.

    project = projector(cell, params)                            # (x_t, h_{t-1}) -> projections
    carry, y_bh = update(cell, carry, project(x_bi, h_bh), elem, valid_b, eps_bh)
    final, y_tbh = scan(cell, params, x_tbi, carry0, mask_tb)    # every step, in order

``update`` is the cell's elementwise gate arithmetic plus the two things a
scan adds around it: the hidden perturbation ``eps`` (``h_t <- h_t + eps_t``,
carried forward, for the gradient diagnostics) and the length mask (a padded
step keeps the carry and outputs exactly zero).  ``rnnlab.scan`` (the
reference, differentiated by JAX) and ``rnnlab.fused`` (the custom VJP) both
run these functions, so there is one implementation of a step.

Both projections are computed inside the loop: on XLA's CPU backend that
vectorised better than one ``[T, B, G*H]`` matmul hoisted out of it
(benchmarks/README.md, "Projections inside the loop").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab.cells import Cell


def projector(cell: Cell, params):
    """``(x_t, h_{t-1}) -> proj``, the projections the cell's step needs:
    ``(x W_ih^T + h W_hh^T + b_ih + b_hh,)`` for a cell that only uses their
    sum (``cell.sums_projections``), else ``(x W_ih^T + b_ih, h W_hh^T + b_hh)``."""
    w_ih_t, w_hh_t = params["w_ih"].T, params["w_hh"].T  # transposed once, outside the loop
    b_ih, b_hh = params.get("b_ih"), params.get("b_hh")
    affine = lambda a, w_t, b: a @ w_t if b is None else a @ w_t + b
    if cell.sums_projections:
        b_sum = None if b_ih is None else b_ih + b_hh
        return lambda x_bi, h_bh: (affine(x_bi, w_ih_t, b_sum) + h_bh @ w_hh_t,)
    return lambda x_bi, h_bh: (affine(x_bi, w_ih_t, b_ih), affine(h_bh, w_hh_t, b_hh))


def update(cell: Cell, carry, proj, elem, valid_b=None, eps_bh=None):
    """One step given its projections and the cell's ``elementwise_params`` ``elem``:
    ``(new carry, y [B, H])``, with the hidden perturbation added to ``h_t`` and padded
    steps (``valid_b`` false) masked."""
    xp_bg, hp_bg = (proj[0], 0.0) if cell.sums_projections else proj
    new_carry, y_bh = cell.step_from_projections(carry, xp_bg, hp_bg, elem)
    if eps_bh is not None:
        y_bh = cell.carry_hidden(new_carry) + eps_bh
        new_carry = cell.replace_hidden(new_carry, y_bh)
    if valid_b is not None:
        keep = lambda new, old: jnp.where(valid_b[:, None], new, old)
        new_carry, y_bh = jax.tree.map(keep, new_carry, carry), jnp.where(valid_b[:, None], y_bh, 0)
    return new_carry, y_bh


def scan(cell: Cell, params, x_tbi, carry0, mask_tb=None, eps_tbh=None, *, unroll=1, remat=False, save=False):
    """Every step with ``jax.lax.scan``: ``(final carry, y [T, B, H])``.

    ``remat`` recomputes each step in the backward pass (``jax.checkpoint``).  With
    ``save`` the outputs are ``(y, proj, carry_prev)`` per step: what the fused backward
    pass needs (``rnnlab.fused``)."""
    project, elem = projector(cell, params), cell.elementwise_params(params)

    def step(carry, inputs):
        x_bi, valid_b, eps_bh = inputs
        proj = project(x_bi, cell.carry_hidden(carry))
        new_carry, y_bh = update(cell, carry, proj, elem, valid_b, eps_bh)
        return new_carry, ((y_bh, proj, carry) if save else y_bh)

    return jax.lax.scan(jax.checkpoint(step) if remat else step, carry0, (x_tbi, mask_tb, eps_tbh), unroll=unroll)
