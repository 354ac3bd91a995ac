"""A bidirectional layer's two directions in one scan (experimental: not measured faster anywhere).

    outputs, final = apply_one_scan(layer, params, x, lengths)   # == layer.apply(params, x, lengths)

Each scan step does one batched ``[2, B, H] x [2, H, G*H]`` matmul instead of
two scans of T tiny steps: the lever where each step is latency-bound (a GPU,
not measured: no GPU was lent).  On a 2-core CPU it measured slower than one
scan per direction (benchmarks/README.md), so ``RNN`` never uses it by itself.
Equal, values and gradients, to ``RNN.apply`` (tests/test_experimental.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import cells, validation
from rnnlab.cells import Cell
from rnnlab.layers import RNN
from rnnlab.scan import SequenceInputs
from rnnlab.unroll import check_perturbation, prepare, recurrence, resolve_path, reverse_valid_prefix, sequence_inputs


def unroll_both_directions(
    cell: Cell,
    params_d,
    x,
    *,
    lengths=None,
    initial_carry_d=None,
    time_major: bool = False,
    scan_unroll: int = 1,
    hidden_perturbation_d=None,
    path: str | None = None,
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
    path = resolve_path(cell, path, scan_unroll)
    x, lengths_b, carry0 = prepare(cell, first, x, lengths, None, time_major)
    x_tbi, _, mask_tb, _ = sequence_inputs(x, carry0, lengths_b, time_major=time_major)
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
        eps = [check_perturbation(e, x_tbi.shape[:2] + (cells.hidden_size(cell),), time_major) for e in eps]
        eps = eps if time_major else [jnp.swapaxes(e, 0, 1) for e in eps]
        eps_dtbh = jnp.stack([eps[0], reverse_valid_prefix(eps[1], lengths_b)])

    def one_direction(params, x_tbi, carry0, eps_tbh):
        seq = SequenceInputs(x_tbi, carry0, mask_tb, eps_tbh)
        return recurrence(cell, params, seq, path=path, scan_unroll=scan_unroll)

    in_axes = (0, 0, 0, None if eps_dtbh is None else 0)
    final_d, y_dtbh = jax.vmap(one_direction, in_axes=in_axes)(params_d, x_dtbi, initial_carry_d, eps_dtbh)
    y_dtbh = jnp.stack([y_dtbh[0], reverse_valid_prefix(y_dtbh[1], lengths_b)])
    return (y_dtbh if time_major else jnp.swapaxes(y_dtbh, 1, 2)), final_d


def apply_one_scan(
    layer: RNN, params, x, lengths=None, initial_carry=None, *, dropout_key=None, hidden_perturbation=None
):
    """``layer.apply`` (same arguments, results and dropout masks) with each bidirectional
    layer's two directions in one scan (``unroll_both_directions``)."""
    if not layer.bidirectional:
        raise ValueError(
            "apply_one_scan runs a bidirectional layer's two directions together: "
            "this layer is unidirectional (use layer.apply)"
        )
    x, lengths = layer.check_inputs(params, x, lengths, initial_carry, hidden_perturbation)
    scales = layer.dropout_scales(dropout_key, x.shape[:-1] + (layer.output_size,), x.dtype)
    pair = lambda tree, k: None if tree is None else jax.tree.map(lambda a: a[k : k + 2], tree)
    finals = []
    for l in range(layer.num_layers):
        if l > 0 and scales is not None:
            x = x * scales[l - 1]
        params_d = jax.tree.map(lambda f, b: jnp.stack([f, b]), params[f"l{l}"]["fwd"], params[f"l{l}"]["bwd"])
        y_d, final_d = unroll_both_directions(
            layer.cell,
            params_d,
            x,
            lengths=lengths,
            initial_carry_d=pair(initial_carry, 2 * l),
            time_major=not layer.batch_first,
            scan_unroll=layer.scan_unroll,
            hidden_perturbation_d=pair(hidden_perturbation, 2 * l),
            path=layer.path,
        )
        x = jnp.concatenate([y_d[0], y_d[1]], axis=-1)
        finals += [jax.tree.map(lambda a: a[d], final_d) for d in range(2)]
    return x, jax.tree.map(lambda *leaves: jnp.stack(leaves), *finals)
