"""Unroll a cell over time with ``jax.lax.scan``.

    outputs, final_carry = unroll(cell, params, x_bti, lengths=lengths_b)

One ``jax.lax.scan`` step computes ``x_t W_ih^T + h_{t-1} W_hh^T`` and the
cell's gate arithmetic, so compile time does not grow with T.  By default the
gradient is a custom VJP (``backward="fused"``): the reverse scan carries
only the state gradients, and ``dW_ih``, ``dW_hh``, the biases and ``dx`` are
each one matmul over all T*B rows afterwards; ``backward="autodiff"`` is
JAX's derivative of the same scan, kept as the reference.

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
    backward: str = "fused",
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
      backward: ``"fused"`` (default) is a custom VJP whose reverse scan
        carries only the state gradients and writes each step's gate
        gradients; every weight gradient is then one matmul over all steps.
        ``"autodiff"`` is JAX's own derivative of the same scan: the reference
        it is tested against, and the path for forward-mode differentiation
        (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``), which a custom VJP does
        not support.  With ``remat`` or ``hidden_perturbation`` the autodiff
        path is used.  Speeds: benchmarks/README.md.

    Returns:
      ``(outputs, final_carry)``: outputs ``[B, T, H]`` (or ``[T, B, H]``),
      zero at padding, in the input's time order; the carry after each
      sequence's last valid step.
    """
    x_tbi, lengths_b, mask_tb, initial_carry = _prepare(cell, params, x, lengths, initial_carry, time_major)
    if reverse:
        x_tbi = reverse_valid_prefix(x_tbi, lengths_b)
    eps_tbh = None
    if hidden_perturbation is not None:
        eps_tbh = _check_perturbation(hidden_perturbation, x_tbi.shape[:2] + (cell.hidden_size,), time_major)
        if reverse:
            eps_tbh = reverse_valid_prefix(eps_tbh, lengths_b)
    final_carry, y_tbh = _recurrence(cell, params, x_tbi, initial_carry, mask_tb, eps_tbh, unroll, remat, backward)
    if reverse:
        y_tbh = reverse_valid_prefix(y_tbh, lengths_b)
    return (y_tbh if time_major else jnp.swapaxes(y_tbh, 0, 1)), final_carry


def unroll_both_directions(
    cell: Cell,
    params_d,
    x,
    *,
    lengths=None,
    initial_carry_d=None,
    time_major: bool = False,
    unroll: int = 1,
    remat: bool = False,
    hidden_perturbation_d=None,
    backward: str = "fused",
):
    """Both directions of a bidirectional layer in one scan: ``unroll(..., reverse=False)`` with
    ``params_d[0]`` and ``unroll(..., reverse=True)`` with ``params_d[1]``, computed together.

    Every leaf of ``params_d`` (and of ``initial_carry_d``, ``hidden_perturbation_d``) has a
    leading axis of 2 directions.  The recurrence is ``vmap``-ped over that axis, so each scan
    step does one batched ``[2, B, H] x [2, H, G*H]`` matmul instead of two scans of T tiny
    steps each (the fused backward pass is batched the same way).  Returns
    ``(outputs_d [2, B, T, H], final_d)``, both directions' outputs in the input's time order.
    """
    first = jax.tree.map(lambda a: a[0], params_d)
    x_tbi, lengths_b, mask_tb, carry0 = _prepare(cell, first, x, lengths, None, time_major)
    for name, leaf in jax.tree_util.tree_leaves_with_path(params_d):
        if jnp.shape(leaf)[:1] != (2,):
            raise ValueError(
                f"params_d{jax.tree_util.keystr(name)} needs a leading axis of 2 directions, "
                f"got shape {tuple(jnp.shape(leaf))}"
            )
    if initial_carry_d is None:
        initial_carry_d = jax.tree.map(lambda a: jnp.stack([a, a]), carry0)
    else:
        expected = jax.eval_shape(lambda: jax.tree.map(lambda a: jnp.stack([a, a]), carry0))
        validation.check_tree_shapes("initial_carry_d", initial_carry_d, expected, hint=" ([2, B, H])")
    x_dtbi = jnp.stack([x_tbi, reverse_valid_prefix(x_tbi, lengths_b)])
    eps_dtbh = None
    if hidden_perturbation_d is not None:
        eps = jnp.asarray(hidden_perturbation_d)
        if eps.ndim != 4 or eps.shape[0] != 2:
            raise ValueError(f"hidden_perturbation_d must be [2, ...outputs of one direction], got {tuple(eps.shape)}")
        eps = [_check_perturbation(e, x_tbi.shape[:2] + (cell.hidden_size,), time_major) for e in eps]
        eps_dtbh = jnp.stack([eps[0], reverse_valid_prefix(eps[1], lengths_b)])

    def one_direction(params, x_tbi, carry0, eps_tbh):
        return _recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh, unroll, remat, backward)

    in_axes = (0, 0, 0, None if eps_dtbh is None else 0)
    final_d, y_dtbh = jax.vmap(one_direction, in_axes=in_axes)(params_d, x_dtbi, initial_carry_d, eps_dtbh)
    y_dtbh = jnp.stack([y_dtbh[0], reverse_valid_prefix(y_dtbh[1], lengths_b)])
    return (y_dtbh if time_major else jnp.swapaxes(y_dtbh, 1, 2)), final_d


def unroll_layers(
    cell: Cell,
    params_l,
    x,
    *,
    lengths=None,
    initial_carry_l=None,
    time_major: bool = False,
    unroll: int = 1,
    remat: bool = False,
    input_scale_l=None,
    backward: str = "fused",
):
    """A stack of L unidirectional layers as one scan of ``T + L - 1`` steps: the layer wavefront.

    At wave step ``s`` layer ``l`` processes time step ``t = s - l``; its input is layer
    ``l - 1``'s hidden state from wave step ``s - 1`` (times ``input_scale_l[l - 1]``, the
    dropout between layers).  The L layers' projections are one batched matmul per step,
    ``[L, B, P] x [L, P, G*H]`` and ``[L, B, H] x [L, H, G*H]``, instead of L scans of T
    tiny steps: the lever where each step is latency-bound (a GPU).  Equal, values and
    gradients, to running ``unroll`` layer after layer (tests/test_layers.py).

    A layer is idle (masked, its carry kept, as at padding) outside ``0 <= t < lengths[b]``.
    The first layer's ``W_ih`` is zero-padded to ``P = max(I, H)`` columns so that all
    layers share one shape.  ``backward="fused"`` (default) is a custom VJP like
    ``unroll``'s: the reverse scan carries the L layers' state gradients and sends each
    layer's input gradient to the layer below, one batched matmul each per step; the
    weight gradients are one batched matmul over all steps afterwards.  ``"autodiff"``
    (or ``remat``) is JAX's derivative of the scan.  On a CPU the wavefront is slower
    than layer after layer (its forward pass alone about 2x, benchmarks/README.md).

    Args:
      params_l: a list of L cell params (layer 0 takes ``I`` inputs, the others ``H``).
      initial_carry_l: the carry for batch ``(L, B)``; zeros by default.
      input_scale_l: optional ``[L - 1, ...x's layout with H features]``: multiplies the
        input of layers ``1..L-1`` (inverted dropout masks).
    Returns ``(outputs of the last layer, final_l)``, outputs as ``unroll``'s.
    """
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be 'fused' or 'autodiff', got {backward!r}")
    num_layers, hidden = len(params_l), cell.hidden_size
    for layer, p in enumerate(params_l[1:], start=1):
        if check_params(cell, p) != hidden:
            raise ValueError(f"layer {layer} of a wavefront must take the hidden size {hidden} as input")
    x_tbi, lengths_b, _, _ = _prepare(cell, params_l[0], x, lengths, None, time_major)
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
    if backward == "fused" and not remat:
        final_l, y_sbh = _fused_wavefront(cell, unroll, stacked, initial_carry_l, inputs)
    else:
        final_l, y_sbh = _wave_scan(cell, unroll, stacked, initial_carry_l, inputs, remat=remat)
    y_tbh = y_sbh[num_layers - 1 :]
    return (y_tbh if time_major else jnp.swapaxes(y_tbh, 0, 1)), final_l


def _prepare(cell, params, x, lengths, initial_carry, time_major):
    """Checked inputs of a scan: ``(x [T, B, I] with padding zeroed, lengths [B] or None,
    valid-step mask [T, B] or None, initial carry)``."""
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
    mask_tb = None
    if lengths_b is not None:
        mask_tb = jnp.arange(num_steps)[:, None] < lengths_b[None, :]
        # Zero padded inputs so that non-finite padding cannot leak into gradients.
        x_tbi = jnp.where(mask_tb[..., None], x_tbi, 0)
    return x_tbi, lengths_b, mask_tb, initial_carry


def _recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh, unroll, remat, backward):
    """``(final carry, outputs [T, B, H])`` through the fused custom VJP or JAX's derivative."""
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be 'fused' or 'autodiff', got {backward!r}")
    if backward == "fused" and eps_tbh is None and not remat:
        return _fused_recurrence(cell, unroll, params, x_tbi, carry0, mask_tb)
    return _autodiff_recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh, unroll, remat)


# -- the recurrence: forward scan and its two derivatives ---------------------
#
# Both projections are computed inside the loop.  Hoisting ``x W_ih^T`` out of
# it as one [T, B, G*H] matmul (the textbook layout) made the forward pass
# 1.3-2.2x slower on XLA's CPU backend: the gate arithmetic that slices a
# dynamic slice of that array compiles to scalar, unvectorised code.  The
# backward pass still computes every weight gradient as one matmul over all
# steps (``_fused_backward``).


def _projector(cell: Cell, params):
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


def _cell_update(cell, carry, proj, valid_b=None, eps_bh=None):
    """One step given its projections, with the hidden perturbation and the length mask."""
    xp_bg, hp_bg = (proj[0], 0.0) if cell.sums_projections else proj
    new_carry, y_bh = cell.step_from_projections(carry, xp_bg, hp_bg)
    if eps_bh is not None:
        y_bh = cell.carry_hidden(new_carry) + eps_bh
        new_carry = cell.replace_hidden(new_carry, y_bh)
    if valid_b is not None:
        keep = lambda new, old: jnp.where(valid_b[:, None], new, old)
        new_carry, y_bh = jax.tree.map(keep, new_carry, carry), jnp.where(valid_b[:, None], y_bh, 0)
    return new_carry, y_bh


def _autodiff_recurrence(cell, params, x_tbi, carry0, mask_tb, eps_tbh, unroll, remat):
    """The plain scan; JAX derives its backward pass (the reference for ``_fused_backward``)."""
    project = _projector(cell, params)

    def step(carry, inputs):
        x_bi, valid_b, eps_bh = inputs
        return _cell_update(cell, carry, project(x_bi, cell.carry_hidden(carry)), valid_b, eps_bh)

    if remat:
        step = jax.checkpoint(step)
    return jax.lax.scan(step, carry0, (x_tbi, mask_tb, eps_tbh), unroll=unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_recurrence(cell, unroll, params, x_tbi, carry0, mask_tb):
    # Not differentiated (inference): the plain scan, saving nothing.
    return _autodiff_recurrence(cell, params, x_tbi, carry0, mask_tb, None, unroll, False)


def _fused_forward(cell, unroll, params, x_tbi, carry0, mask_tb):
    """The plain scan, also saving each step's projections and previous carry."""
    project = _projector(cell, params)

    def step(carry, inputs):
        x_bi, valid_b = inputs
        proj = project(x_bi, cell.carry_hidden(carry))
        new_carry, y_bh = _cell_update(cell, carry, proj, valid_b)
        return new_carry, (y_bh, proj, carry)

    final, (y_tbh, proj_t, carries_t) = jax.lax.scan(step, carry0, (x_tbi, mask_tb), unroll=unroll)
    return (final, y_tbh), (params, x_tbi, proj_t, carries_t, mask_tb)


def _fused_backward(cell, unroll, residuals, cotangents):
    """Reverse scan over the state gradients only; then every weight gradient as
    one matmul over all steps: ``dW_hh = sum_t dhp_t^T h_{t-1}``,
    ``dW_ih = sum_t dxp_t^T x_t``, ``dx_t = dxp_t W_ih``, biases by sums
    (``dxp = dhp = dz`` for a cell that sums its projections)."""
    params, x_tbi, proj_t, carries_t, mask_tb = residuals
    d_final, dy_tbh = cotangents
    w_hh = params["w_hh"]

    def step(state, inputs):
        d_carry, buf_t = state
        t, carry_prev, valid_b, dy_bh = inputs
        proj = tuple(jax.lax.dynamic_index_in_dim(a, t, keepdims=False) for a in buf_t)
        _, vjp = jax.vjp(lambda proj, carry: _cell_update(cell, carry, proj, valid_b), proj, carry_prev)
        d_proj, d_prev = vjp((d_carry, dy_bh))
        # hp = h_prev W_hh^T + b: the recurrent path back into h_prev
        d_prev = cell.replace_hidden(d_prev, cell.carry_hidden(d_prev) + d_proj[-1] @ w_hh)
        # Step t's projections are not needed again: their gradients take their
        # place, in place, which saves allocating (and zeroing) a [T, B, G*H] array.
        buf_t = tuple(jax.lax.dynamic_update_index_in_dim(a, d, t, 0) for a, d in zip(buf_t, d_proj))
        return (d_prev, buf_t), None

    steps_t = jnp.arange(x_tbi.shape[0])
    (d_carry0, d_proj_t), _ = jax.lax.scan(
        step, (d_final, proj_t), (steps_t, carries_t, mask_tb, dy_tbh), reverse=True, unroll=unroll
    )
    # As [T*B, ...] matrices: plain 2-D matmuls ran ~25% faster than einsum here.
    flat = lambda a: a.reshape(-1, a.shape[-1])
    dxp_ng, dhp_ng = flat(d_proj_t[0]), flat(d_proj_t[-1])
    d_params = {"w_ih": dxp_ng.T @ flat(x_tbi), "w_hh": dhp_ng.T @ flat(cell.carry_hidden(carries_t))}
    if "b_ih" in params:
        d_params["b_ih"] = jnp.sum(dxp_ng, axis=0)
        d_params["b_hh"] = d_params["b_ih"] if cell.sums_projections else jnp.sum(dhp_ng, axis=0)
    d_x_tbi = (dxp_ng @ params["w_ih"]).reshape(x_tbi.shape)
    return d_params, d_x_tbi, d_carry0, None


_fused_recurrence.defvjp(_fused_forward, _fused_backward)


# -- the layer wavefront: one step of every layer, and its fused derivative ---------


def _wave_inputs(cell, carry_l, x_bp, scale_lbh):
    """Each layer's input at this wave step, ``[L, B, P]``: the sequence for layer 0, the
    hidden state of the layer below after the previous wave step (times its dropout scale)."""
    below_lbh = cell.carry_hidden(carry_l)[:-1] * scale_lbh
    width = x_bp.shape[-1]
    below_lbp = jnp.pad(below_lbh, ((0, 0), (0, 0), (0, width - below_lbh.shape[-1])))
    return jnp.concatenate([x_bp[None], below_lbp])


def _wave_projections(cell, stacked, u_lbp, carry_l):
    return jax.vmap(lambda p, u, h: _projector(cell, p)(u, h))(stacked, u_lbp, cell.carry_hidden(carry_l))


def _wave_update(cell, carry_l, proj_l, valid_lb):
    return jax.vmap(lambda c, p, v: _cell_update(cell, c, p, v))(carry_l, proj_l, valid_lb)


def _wave_scan(cell, unroll, stacked, carry0_l, inputs, *, remat=False, save=False):
    """All wave steps: ``(final carry_l, top layer's outputs [S, B, H])``, and with ``save``
    each step's inputs, projections and previous carry for the fused VJP."""

    def step(carry_l, inputs):
        x_bp, valid_lb, scale_lbh = inputs
        u_lbp = _wave_inputs(cell, carry_l, x_bp, scale_lbh)
        proj_l = _wave_projections(cell, stacked, u_lbp, carry_l)
        new_carry_l, y_lbh = _wave_update(cell, carry_l, proj_l, valid_lb)
        return new_carry_l, ((y_lbh[-1], (u_lbp, proj_l, carry_l)) if save else y_lbh[-1])

    return jax.lax.scan(jax.checkpoint(step) if remat else step, carry0_l, inputs, unroll=unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_wavefront(cell, unroll, stacked, carry0_l, inputs):
    # Not differentiated (inference): the plain scan, saving nothing.
    return _wave_scan(cell, unroll, stacked, carry0_l, inputs)


def _fused_wavefront_forward(cell, unroll, stacked, carry0_l, inputs):
    final_l, (y_sbh, saved) = _wave_scan(cell, unroll, stacked, carry0_l, inputs, save=True)
    return (final_l, y_sbh), (stacked, inputs, saved)


def _fused_wavefront_backward(cell, unroll, residuals, cotangents):
    """Reverse scan over the L layers' state gradients: per step the cells' elementwise VJP,
    ``dh_{t-1} += dhp W_hh`` and, for the layer below, ``dh^{l-1} += (dxp^l W_ih^l) * scale``;
    then ``dW_hh^l = sum dhp^T h_prev``, ``dW_ih^l = sum dxp^T u`` and ``dx = dxp^0 W_ih^0``."""
    stacked, (x_sbp, valid_slb, scale_slbh), (u_slbp, proj_sl, carries_sl) = residuals
    d_final_l, dy_sbh = cotangents
    w_ih_lgp, w_hh_lgh = stacked["w_ih"], stacked["w_hh"]
    hidden = w_hh_lgh.shape[-1]

    def step(state, inputs):
        d_carry_l, buf = state
        s, carry_l, valid_lb, scale_lbh, dy_bh = inputs
        proj_l = tuple(jax.lax.dynamic_index_in_dim(a, s, keepdims=False) for a in buf)
        dy_lbh = jnp.zeros((len(valid_lb),) + dy_bh.shape, dy_bh.dtype).at[-1].set(dy_bh)
        _, vjp = jax.vjp(lambda proj, carry: _wave_update(cell, carry, proj, valid_lb), proj_l, carry_l)
        d_proj, d_prev = vjp((d_carry_l, dy_lbh))
        d_h_lbh = cell.carry_hidden(d_prev) + jnp.einsum("lbg,lgh->lbh", d_proj[-1], w_hh_lgh)
        # layer l's input was layer l-1's hidden state (scaled): its gradient goes down one layer
        d_u_lbh = jnp.einsum("lbg,lgp->lbp", d_proj[0][1:], w_ih_lgp[1:])[..., :hidden] * scale_lbh
        d_h_lbh = d_h_lbh.at[:-1].add(d_u_lbh)
        buf = tuple(jax.lax.dynamic_update_index_in_dim(a, d, s, 0) for a, d in zip(buf, d_proj))
        return (cell.replace_hidden(d_prev, d_h_lbh), buf), None

    steps = jnp.arange(x_sbp.shape[0])
    (d_carry0_l, d_proj_sl), _ = jax.lax.scan(
        step, (d_final_l, proj_sl), (steps, carries_sl, valid_slb, scale_slbh, dy_sbh), reverse=True, unroll=unroll
    )
    dxp_slbg, dhp_slbg = d_proj_sl[0], d_proj_sl[-1]
    d_stacked = {
        "w_ih": jnp.einsum("slbg,slbp->lgp", dxp_slbg, u_slbp),
        "w_hh": jnp.einsum("slbg,slbh->lgh", dhp_slbg, cell.carry_hidden(carries_sl)),
    }
    if "b_ih" in stacked:
        d_stacked["b_ih"] = jnp.sum(dxp_slbg, axis=(0, 2))
        d_stacked["b_hh"] = d_stacked["b_ih"] if cell.sums_projections else jnp.sum(dhp_slbg, axis=(0, 2))
    d_x_sbp = jnp.einsum("sbg,gp->sbp", dxp_slbg[:, 0], w_ih_lgp[0])
    d_inputs = (d_x_sbp, None, jnp.zeros_like(scale_slbh))  # the dropout scales are not differentiated
    return d_stacked, d_carry0_l, d_inputs


_fused_wavefront.defvjp(_fused_wavefront_forward, _fused_wavefront_backward)
