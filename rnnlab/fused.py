"""The fused gradient of a sequential cell's recurrence: a custom VJP, the ``fused`` path.

    final, y_tbh = recurrence(cell, params, seq, scan_unroll=1)     # seq: rnnlab.scan.SequenceInputs

It needs a ``FusedCell`` (``rnnlab.cells``): the step in the cell's own pieces.  The forward
pass is the plain scan (``rnnlab.scan.scan``), saving each step's projections
and previous carry.  The backward pass is a reverse scan that carries only the state
gradients: per step, the VJP of the cell's gate arithmetic and of its recurrent projection
(``cell.recurrent_vjp``: ``dh_{t-1} += dhp_t W_hh`` for a dense cell, ``u ⊙ dhp_t`` for
IndRNN).  Each step's projection gradients come out stacked, and the weight gradients are
then one VJP of the cell's projections over all ``T*B`` rows at once; for a dense cell

    dW_hh = sum_t dhp_t^T h_{t-1},   dW_ih = sum_t dxp_t^T x_t,   dx_t = dxp_t W_ih,
    db_ih = sum_t dxp_t,             db_hh = sum_t dhp_t,

single matmuls (``dxp = dhp = dz`` for a cell that sums its projections).  The gradient of
a cell's elementwise params (modReLU's ``b_mod``) is summed over steps in the reverse scan's
carry.  With a hidden perturbation the reverse scan also writes ``dL/d eps_t``, which is
``dL/dh_t``.  JAX's own derivative of the same scan (the ``autodiff`` path) is the reference
it is tested against (tests/test_paths.py), and the path for forward-mode differentiation,
which a custom VJP does not support.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rnnlab import scan


def recurrence(cell, params, seq: scan.SequenceInputs, *, scan_unroll=1):
    """``(final carry, y [T, B, H])`` of a ``FusedCell`` over ``seq``."""
    return _fused(cell, scan_unroll, params, seq)


def weight_gradients(cell, params, x_ni, carries_n, d_proj_n):
    """``(d params, d x)`` from the projection gradients of ``N`` rows: ``cell.projection_vjp``
    (single matmuls for a dense cell), computed in the gradients' dtype (float32 when a
    half-precision layer keeps its carry in float32), then cast to each param's own dtype."""
    dtype = d_proj_n[-1].dtype
    up = lambda tree: jax.tree.map(lambda a: a.astype(dtype), tree)
    d_params, d_x_ni = cell.projection_vjp(up(params), up(x_ni), up(carries_n), up(d_proj_n))
    d_params = jax.tree.map(lambda d, p: d.astype(p.dtype), d_params, params)
    return d_params, d_x_ni.astype(x_ni.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused(cell, scan_unroll, params, seq):
    # Not differentiated (inference): the plain scan, saving nothing.
    return scan.scan(cell, params, seq, scan_unroll=scan_unroll)


def _forward(cell, scan_unroll, params, seq):
    final, (y_tbh, proj_t, carries_t) = scan.scan(cell, params, seq, scan_unroll=scan_unroll, save=True)
    return (final, y_tbh), (params, seq.x_tbi, proj_t, carries_t, seq.mask_tb, seq.eps_tbh)


def _backward(cell, scan_unroll, residuals, cotangents):
    """Reverse scan over the state gradients only; then the weight gradients over all rows."""
    params, x_tbi, proj_t, carries_t, mask_tb, eps_tbh = residuals
    d_final, dy_tbh = cotangents
    elem = cell.elementwise_params(params)

    def step(state, inputs):
        d_carry, d_elem = state
        proj, carry_prev, valid_b, eps_bh, dy_bh = inputs
        _, vjp = jax.vjp(
            lambda proj, carry, elem, eps: scan.finish(cell, carry, *cell.gates(carry, proj, elem), valid_b, eps),
            proj,
            carry_prev,
            elem,
            eps_bh,
        )
        d_proj, d_prev, d_elem_t, d_eps_bh = vjp((d_carry, dy_bh))
        # the recurrent projection's path back into the previous carry
        d_prev = cell.recurrent_vjp(params, d_prev, d_proj[-1])
        return (d_prev, jax.tree.map(jnp.add, d_elem, d_elem_t)), (d_proj, d_eps_bh)

    # The projections go in as the scan's inputs and their gradients come out as its
    # outputs.  (Writing the gradients over the saved projections in the carry, in place,
    # was copied whole at every step under vmap, O(T^2): benchmarks/README.md.)
    (d_carry0, d_elem), (d_proj_t, d_eps_tbh) = jax.lax.scan(
        step,
        (d_final, jax.tree.map(jnp.zeros_like, elem)),
        (proj_t, carries_t, mask_tb, eps_tbh, dy_tbh),
        reverse=True,
        unroll=scan_unroll,
    )
    # As [T*B, ...] rows: plain 2-D matmuls ran faster than einsum here (benchmarks/README.md).
    flat = lambda a: a.reshape(-1, a.shape[-1])
    d_params, d_x_n = weight_gradients(
        cell, params, flat(x_tbi), jax.tree.map(flat, carries_t), tuple(map(flat, d_proj_t))
    )
    d_params = d_params | {name: d_params[name] + g for name, g in d_elem.items()}
    return d_params, scan.SequenceInputs(d_x_n.reshape(x_tbi.shape), d_carry0, None, d_eps_tbh)


_fused.defvjp(_forward, _backward)
