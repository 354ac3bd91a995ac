"""The scan of a cell's steps: the sequence inputs as one bundle, one step inside ``jax.lax.scan``,
and the scan of such steps.

    seq = SequenceInputs(x_tbi, carry0, mask_tb, eps_tbh)        # what every path takes
    step = stepper(cell, params)                                 # (carry, x) -> (carry, y); invariants built once
    carry, y_bh = finish(cell, carry, *step(carry, x_bi), valid_b, eps_bh)
    final, y_tbh = scan(cell, params, seq)                       # every step, in order

``finish`` is what a scan adds around a cell's own step: the hidden perturbation ``eps``
(``h_t <- h_t + eps_t``, carried forward, for the gradient diagnostics) and the length mask (a
padded step keeps the carry, and its output is exactly zero).  ``scan`` (differentiated by JAX:
the ``autodiff`` and ``remat`` paths), ``rnnlab.fused`` (a custom VJP) and ``rnnlab.newton`` all
run it, so there is one implementation of a step.

A three-method cell steps by ``cell.step``.  A ``FusedCell`` steps by its projector and gates,
which is the same arithmetic as its ``step`` with the loop invariants (transposed weights,
summed biases) computed once outside the loop, and both projections inside it: on XLA's CPU
backend that vectorised better than one ``[T, B, G*H]`` matmul hoisted out of it
(benchmarks/README.md, "Projections inside the loop").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import cells


class SequenceInputs(NamedTuple):
    """A sequence as every execution path takes it (time-major, checked, padding zeroed).

    Attributes:
      x_tbi: the inputs ``[T, B, I]``.
      carry0: the carry before step 0, leaves ``[B, H]``.
      mask_tb: valid steps ``[T, B]`` (bool), or None: every step is valid.
      eps_tbh: the hidden perturbation ``[T, B, H]`` added after each step, or None.
    """

    x_tbi: jax.Array
    carry0: Any
    mask_tb: jax.Array | None = None
    eps_tbh: jax.Array | None = None


def stepper(cell, params):
    """``(carry, x) -> (new carry, y)``: the cell's step with its loop invariants built once."""
    if cells.is_fused(cell):
        project, elem = cell.projector(params), cell.elementwise_params(params)
        return lambda carry, x: cell.gates(carry, project(x, carry), elem)
    return lambda carry, x: cell.step(params, carry, x)


def finish(cell, carry, new_carry, y_bh, valid_b=None, eps_bh=None):
    """A step's ``(new carry, y [B, H])`` with the hidden perturbation added to ``h_t`` and padded
    steps (``valid_b`` false) masked: the carry kept, the output zero."""
    if eps_bh is not None:
        y_bh = cells.carry_hidden(cell, new_carry) + eps_bh
        new_carry = cells.replace_hidden(cell, new_carry, y_bh)
    if valid_b is not None:
        keep = lambda new, old: jnp.where(valid_b[:, None], new, old)
        new_carry, y_bh = jax.tree.map(keep, new_carry, carry), jnp.where(valid_b[:, None], y_bh, 0)
    return new_carry, y_bh


def scan(cell, params, seq: SequenceInputs, *, scan_unroll=1, remat=False, save=False):
    """Every step with ``jax.lax.scan``: ``(final carry, y [T, B, H])``.

    ``remat`` recomputes each step in the backward pass (``jax.checkpoint``).  With ``save`` (a
    ``FusedCell``) the outputs are ``(y, proj, carry_prev)`` per step: what the fused backward needs
    (``rnnlab.fused``)."""
    if save:
        project, elem = cell.projector(params), cell.elementwise_params(params)

        def step(carry, inputs):
            x_bi, valid_b, eps_bh = inputs
            proj = project(x_bi, carry)
            new_carry, y_bh = finish(cell, carry, *cell.gates(carry, proj, elem), valid_b, eps_bh)
            return new_carry, (y_bh, proj, carry)

    else:
        cell_step = stepper(cell, params)

        def step(carry, inputs):
            x_bi, valid_b, eps_bh = inputs
            return finish(cell, carry, *cell_step(carry, x_bi), valid_b, eps_bh)

    body = jax.checkpoint(step) if remat else step
    return jax.lax.scan(body, seq.carry0, (seq.x_tbi, seq.mask_tb, seq.eps_tbh), unroll=scan_unroll)
