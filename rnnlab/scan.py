"""The scan of a sequential cell: one step inside ``jax.lax.scan``, and the scan of such steps.

    project = cell.projector(params)                             # loop invariants computed once
    carry, y_bh = update(cell, carry, project(x_bi, carry), elem, valid_b, eps_bh)
    final, y_tbh = scan(cell, params, x_tbi, carry0, mask_tb)    # every step, in order

``update`` is the cell's gate arithmetic (``cell.gates``) plus the two things a scan adds
around it: the hidden perturbation ``eps`` (``h_t <- h_t + eps_t``, carried forward, for the
gradient diagnostics) and the length mask (a padded step keeps the carry, and its output is
exactly zero).  ``scan`` (differentiated by JAX: the ``autodiff`` and ``remat`` paths) and
``rnnlab.fused`` (a custom VJP) both run these, and ``cell.step`` is the same projections and
gates, so there is one implementation of a step.

Both projections are computed inside the loop: on XLA's CPU backend that vectorised better
than one ``[T, B, G*H]`` matmul hoisted out of it (benchmarks/README.md, "Projections inside
the loop").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def update(cell, carry, proj, elem, valid_b=None, eps_bh=None):
    """One step given its projections ``proj`` (``cell.projections``) and the cell's
    ``elementwise_params`` ``elem``: ``(new carry, y [B, H])``, with the hidden perturbation
    added to ``h_t`` and padded steps (``valid_b`` false) masked."""
    new_carry, y_bh = cell.gates(carry, proj, elem)
    if eps_bh is not None:
        y_bh = cell.carry_hidden(new_carry) + eps_bh
        new_carry = cell.replace_hidden(new_carry, y_bh)
    if valid_b is not None:
        keep = lambda new, old: jnp.where(valid_b[:, None], new, old)
        new_carry, y_bh = jax.tree.map(keep, new_carry, carry), jnp.where(valid_b[:, None], y_bh, 0)
    return new_carry, y_bh


def scan(cell, params, x_tbi, carry0, mask_tb=None, eps_tbh=None, *, scan_unroll=1, remat=False, save=False):
    """Every step with ``jax.lax.scan``: ``(final carry, y [T, B, H])``.

    ``remat`` recomputes each step in the backward pass (``jax.checkpoint``).  With ``save`` the
    outputs are ``(y, proj, carry_prev)`` per step: what the fused backward needs (``rnnlab.fused``)."""
    project, elem = cell.projector(params), cell.elementwise_params(params)  # built once, outside the loop

    def step(carry, inputs):
        x_bi, valid_b, eps_bh = inputs
        proj = project(x_bi, carry)
        new_carry, y_bh = update(cell, carry, proj, elem, valid_b, eps_bh)
        return new_carry, ((y_bh, proj, carry) if save else y_bh)

    body = jax.checkpoint(step) if remat else step
    return jax.lax.scan(body, carry0, (x_tbi, mask_tb, eps_tbh), unroll=scan_unroll)
