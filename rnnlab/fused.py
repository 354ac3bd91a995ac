"""The fused gradient of a recurrence: a custom VJP that ``rnnlab.scan``'s dispatch picks by default.

    final, y_tbh = recurrence(cell, unroll, params, x_tbi, carry0, mask_tb, eps_tbh)

The forward pass is the plain scan (``rnnlab.steps.scan``), saving each step's
projections and previous carry.  The backward pass is a reverse scan that
carries only the state gradients; each step's projection gradients are then
stacked, and every weight gradient is one matmul over all ``T*B`` rows:

    dW_hh = sum_t dhp_t^T h_{t-1},   dW_ih = sum_t dxp_t^T x_t,   dx_t = dxp_t W_ih,
    db_ih = sum_t dxp_t,             db_hh = sum_t dhp_t,

(``dxp = dhp = dz`` for a cell that sums its projections).  The gradient of a
cell's elementwise params (modReLU's ``b_mod``) is summed over steps in the
reverse scan's carry.  With a hidden
perturbation the reverse scan also writes ``dL/d eps_t``, which is ``dL/dh_t``.
JAX's own derivative of the same scan (``backward="autodiff"``) is the
reference it is tested against (tests/test_paths.py), and the path for
forward-mode differentiation, which a custom VJP does not support.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rnnlab import steps


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def recurrence(cell, unroll, params, x_tbi, carry0, mask_tb, eps_tbh):
    """``(final carry, y [T, B, H])``; ``mask_tb`` and ``eps_tbh`` may be None."""
    # Not differentiated (inference): the plain scan, saving nothing.
    return steps.scan(cell, params, x_tbi, carry0, mask_tb, eps_tbh, unroll=unroll)


def _forward(cell, unroll, params, x_tbi, carry0, mask_tb, eps_tbh):
    final, (y_tbh, proj_t, carries_t) = steps.scan(
        cell, params, x_tbi, carry0, mask_tb, eps_tbh, unroll=unroll, save=True
    )
    return (final, y_tbh), (params, x_tbi, proj_t, carries_t, mask_tb, eps_tbh)


def _backward(cell, unroll, residuals, cotangents):
    """Reverse scan over the state gradients only; then the weight gradients as matmuls."""
    params, x_tbi, proj_t, carries_t, mask_tb, eps_tbh = residuals
    d_final, dy_tbh = cotangents
    w_hh, elem = params["w_hh"], cell.elementwise_params(params)

    def step(state, inputs):
        d_carry, d_elem = state
        proj, carry_prev, valid_b, eps_bh, dy_bh = inputs
        _, vjp = jax.vjp(
            lambda proj, carry, elem, eps: steps.update(cell, carry, proj, elem, valid_b, eps),
            proj,
            carry_prev,
            elem,
            eps_bh,
        )
        d_proj, d_prev, d_elem_t, d_eps_bh = vjp((d_carry, dy_bh))
        # hp = h_prev W_hh^T + b: the recurrent path back into h_prev
        d_prev = cell.replace_hidden(d_prev, cell.carry_hidden(d_prev) + d_proj[-1] @ w_hh)
        return (d_prev, jax.tree.map(jnp.add, d_elem, d_elem_t)), (d_proj, d_eps_bh)

    # The projections go in as the scan's inputs and their gradients come out as its
    # outputs.  (Writing the gradients over the saved projections in the carry, in place,
    # was copied whole at every step under vmap, O(T^2): benchmarks/README.md.)
    (d_carry0, d_elem), (d_proj_t, d_eps_tbh) = jax.lax.scan(
        step,
        (d_final, jax.tree.map(jnp.zeros_like, elem)),
        (proj_t, carries_t, mask_tb, eps_tbh, dy_tbh),
        reverse=True,
        unroll=unroll,
    )
    # As [T*B, ...] matrices: plain 2-D matmuls ran faster than einsum here (benchmarks/README.md).
    flat = lambda a: a.reshape(-1, a.shape[-1])
    dxp_ng, dhp_ng = flat(d_proj_t[0]), flat(d_proj_t[-1])
    d_params = {"w_ih": dxp_ng.T @ flat(x_tbi), "w_hh": dhp_ng.T @ flat(cell.carry_hidden(carries_t)), **d_elem}
    if "b_ih" in params:
        d_params["b_ih"] = jnp.sum(dxp_ng, axis=0)
        d_params["b_hh"] = d_params["b_ih"] if cell.sums_projections else jnp.sum(dhp_ng, axis=0)
    d_x_tbi = (dxp_ng @ params["w_ih"]).reshape(x_tbi.shape)
    return d_params, d_x_tbi, d_carry0, None, d_eps_tbh


recurrence.defvjp(_forward, _backward)
