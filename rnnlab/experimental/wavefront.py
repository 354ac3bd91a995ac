"""A unidirectional stack as one scan of ``T + L - 1`` steps: the layer wavefront (experimental).

    outputs, final = apply_wavefront(layer, params, x, lengths)   # == layer.apply(params, x, lengths)

At wave step ``s`` layer ``l`` processes time step ``t = s - l``, so the L
layers' projections are one batched matmul per step instead of L scans of T
tiny steps: the lever where each step is latency-bound (a GPU, not measured:
no GPU was lent).  On a 2-core CPU it measured slower than layer after layer
(benchmarks/README.md), so ``RNN`` never uses it by itself.  A bidirectional
stack cannot be a wavefront: layer l's forward direction at time t needs layer
l-1's backward direction at t, which needs the whole sequence.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rnnlab import validation
from rnnlab.cells import FusedCell
from rnnlab.fused import weight_gradients
from rnnlab.layers import RNN
from rnnlab.scan import finish
from rnnlab.unroll import check_params, prepare, resolve_path, sequence_inputs

WAVE_PATHS = ("fused", "autodiff", "remat")


def apply_wavefront(layer: RNN, params, x, lengths=None, initial_carry=None, *, dropout_key=None):
    """``layer.apply`` (same arguments, results and dropout masks) as one wavefront scan."""
    if layer.bidirectional:
        raise ValueError(
            "a bidirectional stack cannot run as a wavefront (each layer needs the whole "
            "sequence of the one below): use layer.apply"
        )
    path = resolve_path(layer.cell, layer.path, layer.scan_unroll)
    if path not in WAVE_PATHS:
        raise ValueError(
            f"the wavefront runs a cell step by step ({', '.join(WAVE_PATHS)}); {type(layer.cell).__name__} "
            f"runs path={path!r}: use layer.apply"
        )
    if layer.cell.elementwise:
        raise ValueError(
            f"the wavefront does not carry a cell's elementwise params ({', '.join(layer.cell.elementwise)}): "
            "use layer.apply"
        )
    x, lengths = layer.check_inputs(params, x, lengths, initial_carry)
    scales = layer.dropout_scales(dropout_key, x.shape[:-1] + (layer.output_size,), x.dtype)
    return unroll_layers(
        layer.cell,
        [params[f"l{l}"]["fwd"] for l in range(layer.num_layers)],
        x,
        lengths=lengths,
        initial_carry_l=initial_carry,
        time_major=not layer.batch_first,
        scan_unroll=layer.scan_unroll,
        input_scale_l=None if scales is None else jnp.stack(scales),
        path=path,
    )


def unroll_layers(
    cell: FusedCell,
    params_l,
    x,
    *,
    lengths=None,
    initial_carry_l=None,
    time_major: bool = False,
    scan_unroll: int = 1,
    input_scale_l=None,
    path: str = "fused",
):
    """A stack of L unidirectional layers as one scan of ``T + L - 1`` steps: the layer wavefront.

    At wave step ``s`` layer ``l`` processes time step ``t = s - l``; its input is layer
    ``l - 1``'s hidden state from wave step ``s - 1`` (times ``input_scale_l[l - 1]``, the
    dropout between layers).  The L layers' projections are one batched matmul per step,
    ``[L, B, P] x [L, P, G*H]`` and ``[L, B, H] x [L, H, G*H]``, instead of L scans of T
    tiny steps: the lever where each step is latency-bound (a GPU).  Equal, values and
    gradients, to running ``unroll`` layer after layer (tests/test_layers.py).

    A layer is idle (masked, its carry kept, as at padding) outside ``0 <= t < lengths[b]``.
    The first layer's ``w_ih`` is zero-padded to ``P = max(I, H)`` columns so that all
    layers share one shape (so the cell's input matrix must be ``w_ih [rows, I]``, as every
    cell in rnnlab has).  ``path="fused"`` (default) is a custom VJP like ``unroll``'s: the
    reverse scan carries the L layers' state gradients (``cell.recurrent_vjp``) and sends
    each layer's input gradient to the layer below (the VJP of ``cell.project_inputs``),
    batched over layers per step; the weight gradients are one batched VJP over all steps
    afterwards.  ``"autodiff"`` and ``"remat"`` are JAX's derivative of the scan.

    Args:
      params_l: a list of L cell params (layer 0 takes ``I`` inputs, the others ``H``).
      initial_carry_l: the carry for batch ``(L, B)``; zeros by default.
      input_scale_l: optional ``[L - 1, ...x's layout with H features]``: multiplies the
        input of layers ``1..L-1`` (inverted dropout masks).
    Returns ``(outputs of the last layer, final_l)``, outputs as ``unroll``'s.
    """
    if path not in WAVE_PATHS:
        raise ValueError(f"path must be one of {', '.join(map(repr, WAVE_PATHS))} for a wavefront, got {path!r}")
    num_layers, hidden = len(params_l), cell.hidden_size
    for layer, p in enumerate(params_l[1:], start=1):
        if check_params(cell, p) != hidden:
            raise ValueError(f"layer {layer} of a wavefront must take the hidden size {hidden} as input")
    x, lengths_b, _ = prepare(cell, params_l[0], x, lengths, None, time_major)
    x_tbi = sequence_inputs(x, None, lengths_b, time_major=time_major).x_tbi  # time-major, padding zeroed
    num_steps, batch_size, input_size = x_tbi.shape
    carry0 = cell.initial_carry((num_layers, batch_size), x_tbi.dtype)
    if initial_carry_l is None:
        initial_carry_l = carry0
    else:
        validation.check_tree_shapes(
            "initial_carry_l", initial_carry_l, jax.eval_shape(lambda: carry0), hint=" ([L, B, H])"
        )
    width = max(input_size, hidden)
    pad_to = lambda a, axis: jnp.pad(
        a, [(0, width - a.shape[axis]) if i == axis % a.ndim else (0, 0) for i in range(a.ndim)]
    )
    params_l = [{**p, "w_ih": pad_to(p["w_ih"], 1)} for p in params_l]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params_l)
    wave = num_steps + num_layers - 1
    # layer l at wave step s is at time t = s - l: valid_slb[s, l, b] = 0 <= t < lengths[b]
    t_sl = jnp.arange(wave)[:, None] - jnp.arange(num_layers)[None, :]
    limit_b = jnp.full((batch_size,), num_steps) if lengths_b is None else lengths_b
    valid_slb = (t_sl[..., None] >= 0) & (t_sl[..., None] < limit_b)
    x_sbp = jnp.pad(pad_to(x_tbi, 2), ((0, num_layers - 1), (0, 0), (0, 0)))
    if input_scale_l is None:
        scale_slbh = jnp.ones((wave, num_layers - 1, 1, 1), x_tbi.dtype)
    else:
        scale = jnp.asarray(input_scale_l)
        scale_ltbh = scale if time_major else jnp.swapaxes(scale, 1, 2)
        if scale_ltbh.shape != (num_layers - 1, num_steps, batch_size, hidden):
            raise ValueError(
                f"input_scale_l must be [L - 1 = {num_layers - 1}, ...] with the hidden size "
                f"{hidden} as features, got {tuple(scale.shape)}"
            )
        # layer l (1..L-1) reads its time t at wave step t + l
        scale_slbh = jnp.stack(
            [jnp.pad(scale_ltbh[l - 1], ((l, num_layers - 1 - l), (0, 0), (0, 0))) for l in range(1, num_layers)],
            axis=1,
        )

    inputs = (x_sbp, valid_slb, scale_slbh)
    match path:  # the sequential paths of rnnlab.unroll.recurrence
        case "fused":
            final_l, y_sbh = _fused_wavefront(cell, scan_unroll, stacked, initial_carry_l, inputs)
        case "autodiff" | "remat":
            final_l, y_sbh = _wave_scan(cell, scan_unroll, stacked, initial_carry_l, inputs, remat=path == "remat")
    y_tbh = y_sbh[num_layers - 1 :]
    return (y_tbh if time_major else jnp.swapaxes(y_tbh, 0, 1)), final_l


# -- the layer wavefront: one step of every layer, and its fused derivative ---------


def _wave_inputs(cell, carry_l, x_bp, scale_lbh):
    """Each layer's input at this wave step, ``[L, B, P]``: the sequence for layer 0, the
    hidden state of the layer below after the previous wave step (times its dropout scale)."""
    below_lbh = cell.carry_hidden(carry_l)[:-1] * scale_lbh
    width = x_bp.shape[-1]
    below_lbp = jnp.pad(below_lbh, ((0, 0), (0, 0), (0, width - below_lbh.shape[-1])))
    return jnp.concatenate([x_bp[None], below_lbp])


def _wave_projections(cell, stacked, u_lbp, carry_l):
    return jax.vmap(lambda p, u, c: cell.projector(p)(u, c))(stacked, u_lbp, carry_l)


def _wave_update(cell, carry_l, proj_l, valid_lb):
    return jax.vmap(lambda c, p, v: finish(cell, c, *cell.gates(c, p, {}), v))(carry_l, proj_l, valid_lb)


def _wave_scan(cell, scan_unroll, stacked, carry0_l, inputs, *, remat=False, save=False):
    """All wave steps: ``(final carry_l, top layer's outputs [S, B, H])``, and with ``save``
    each step's inputs, projections and previous carry for the fused VJP."""

    def step(carry_l, inputs):
        x_bp, valid_lb, scale_lbh = inputs
        u_lbp = _wave_inputs(cell, carry_l, x_bp, scale_lbh)
        proj_l = _wave_projections(cell, stacked, u_lbp, carry_l)
        new_carry_l, y_lbh = _wave_update(cell, carry_l, proj_l, valid_lb)
        return new_carry_l, ((y_lbh[-1], (u_lbp, proj_l, carry_l)) if save else y_lbh[-1])

    return jax.lax.scan(jax.checkpoint(step) if remat else step, carry0_l, inputs, unroll=scan_unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_wavefront(cell, scan_unroll, stacked, carry0_l, inputs):
    # Not differentiated (inference): the plain scan, saving nothing.
    return _wave_scan(cell, scan_unroll, stacked, carry0_l, inputs)


def _fused_wavefront_forward(cell, scan_unroll, stacked, carry0_l, inputs):
    final_l, (y_sbh, saved) = _wave_scan(cell, scan_unroll, stacked, carry0_l, inputs, save=True)
    return (final_l, y_sbh), (stacked, inputs, saved)


def _fused_wavefront_backward(cell, scan_unroll, residuals, cotangents):
    """Reverse scan over the L layers' state gradients: per step the cells' elementwise VJP,
    the recurrent projection's VJP into the previous carry and, for the layer below, the input
    projection's VJP (times the dropout scale); then every layer's weight gradients as one
    batched VJP of its projections over all steps, and ``dx`` from layer 0's."""
    stacked, (x_sbp, valid_slb, scale_slbh), (u_slbp, proj_sl, carries_sl) = residuals
    d_final_l, dy_sbh = cotangents
    hidden = cell.hidden_size
    input_vjp = lambda p, u, d: jax.vjp(lambda u: cell.project_inputs(p, u), u)[1](d)[0]
    above = jax.tree.map(lambda a: a[1:], stacked)  # layers 1..L-1 read the layer below

    def step(d_carry_l, inputs):
        proj_l, carry_l, u_lbp, valid_lb, scale_lbh, dy_bh = inputs
        dy_lbh = jnp.zeros((len(valid_lb),) + dy_bh.shape, dy_bh.dtype).at[-1].set(dy_bh)
        _, vjp = jax.vjp(lambda proj, carry: _wave_update(cell, carry, proj, valid_lb), proj_l, carry_l)
        d_proj, d_prev = vjp((d_carry_l, dy_lbh))
        d_prev = jax.vmap(cell.recurrent_vjp)(stacked, d_prev, d_proj[-1])
        # layer l's input was layer l-1's hidden state (scaled): its gradient goes down one layer
        d_u_lbh = jax.vmap(input_vjp)(above, u_lbp[1:], d_proj[0][1:])[..., :hidden] * scale_lbh
        d_h_lbh = cell.carry_hidden(d_prev).at[:-1].add(d_u_lbh)
        return cell.replace_hidden(d_prev, d_h_lbh), d_proj

    # projections in as scan inputs, their gradients out as outputs (as rnnlab.fused: O(T) under vmap)
    d_carry0_l, d_proj_sl = jax.lax.scan(
        step, d_final_l, (proj_sl, carries_sl, u_slbp, valid_slb, scale_slbh, dy_sbh), reverse=True, unroll=scan_unroll
    )
    # per layer, all wave steps as rows: [S, L, B, ...] -> [L, S*B, ...]
    rows = lambda a: jnp.moveaxis(a, 1, 0).reshape(a.shape[1], -1, a.shape[-1])
    d_stacked, d_u_lnp = jax.vmap(lambda p, u, c, d: weight_gradients(cell, p, u, c, d))(
        stacked, rows(u_slbp), jax.tree.map(rows, carries_sl), tuple(map(rows, d_proj_sl))
    )
    d_x_sbp = d_u_lnp[0].reshape(x_sbp.shape)
    d_inputs = (d_x_sbp, None, jnp.zeros_like(scale_slbh))  # the dropout scales are not differentiated
    return d_stacked, d_carry0_l, d_inputs


_fused_wavefront.defvjp(_fused_wavefront_forward, _fused_wavefront_backward)
