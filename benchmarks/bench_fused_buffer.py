"""Where the fused backward keeps the projections' gradients: written over the saved
projections in the reverse scan's carry, in place (rnnlab before issue 22), against the
projections as the scan's inputs and their gradients as its outputs (rnnlab now).

Times one gradient (loss = sum of the last outputs) of expRNN's layer (H = 190, batch 128),
plain and under ``jax.vmap`` over one seed (every sweep in rnnlab vmaps its train step),
the two variants interleaved in every repeat; medians.

    python benchmarks/bench_fused_buffer.py --lengths 100 400 1000 --out benchmarks/results_fused_buffer_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp

from rnnlab import fused, scan
from rnnlab.zoo import make_layer

sys.path.insert(0, os.path.dirname(__file__))
from bench_layers import median_times  # noqa: E402


def _inplace_backward(cell, unroll, residuals, cotangents):
    """The replaced variant, as it was: the gradient buffer lives in the scan's carry."""
    params, x_tbi, proj_t, carries_t, mask_tb, eps_tbh = residuals
    d_final, dy_tbh = cotangents
    w_hh, elem = params["w_hh"], cell.elementwise_params(params)

    def step(state, inputs):
        d_carry, buf_t, d_elem = state
        t, carry_prev, valid_b, eps_bh, dy_bh = inputs
        proj = tuple(jax.lax.dynamic_index_in_dim(a, t, keepdims=False) for a in buf_t)
        _, vjp = jax.vjp(
            lambda proj, carry, elem, eps: scan.update(cell, carry, proj, elem, valid_b, eps),
            proj,
            carry_prev,
            elem,
            eps_bh,
        )
        d_proj, d_prev, d_elem_t, d_eps_bh = vjp((d_carry, dy_bh))
        d_prev = cell.replace_hidden(d_prev, cell.carry_hidden(d_prev) + d_proj[-1] @ w_hh)
        buf_t = tuple(jax.lax.dynamic_update_index_in_dim(a, d, t, 0) for a, d in zip(buf_t, d_proj))
        return (d_prev, buf_t, jax.tree.map(jnp.add, d_elem, d_elem_t)), d_eps_bh

    (d_carry0, d_proj_t, d_elem), d_eps_tbh = jax.lax.scan(
        step,
        (d_final, proj_t, jax.tree.map(jnp.zeros_like, elem)),
        (jnp.arange(x_tbi.shape[0]), carries_t, mask_tb, eps_tbh, dy_tbh),
        reverse=True,
        unroll=unroll,
    )
    flat = lambda a: a.reshape(-1, a.shape[-1])
    dxp_ng, dhp_ng = flat(d_proj_t[0]), flat(d_proj_t[-1])
    d_params = {"w_ih": dxp_ng.T @ flat(x_tbi), "w_hh": dhp_ng.T @ flat(cell.carry_hidden(carries_t)), **d_elem}
    d_x_tbi = (dxp_ng @ params["w_ih"]).reshape(x_tbi.shape)
    return d_params, d_x_tbi, d_carry0, None, d_eps_tbh


inplace = jax.custom_vjp(fused._fused.fun, nondiff_argnums=(0, 1))
inplace.defvjp(fused._forward, _inplace_backward)


def gradient(layer, variant: str, vmapped: bool):
    def loss(params, x):
        x_tbi = jnp.swapaxes(x, 0, 1)
        cell_params = layer.materialize(params)["l0"]["fwd"]
        run = fused._fused if variant == "outputs" else inplace
        _, y_tbh = run(layer.cell, 1, cell_params, x_tbi, layer.cell.initial_carry((x.shape[0],)), None, None)
        return jnp.sum(y_tbh[-1])

    g = jax.grad(loss)
    return jax.jit(jax.vmap(g) if vmapped else g)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--hidden", type=int, default=190)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    layer = make_layer("exprnn", args.hidden)
    params = layer.init(jax.random.key(0), 10)
    rows = []
    for T in args.lengths:
        x = jax.random.normal(jax.random.key(1), (args.batch, T, 10))
        for vmapped in (False, True):
            p, xs = (jax.tree.map(lambda a: a[None], params), x[None]) if vmapped else (params, x)
            fns = {v: gradient(layer, v, vmapped) for v in ("inplace", "outputs")}
            # interleaved, after a warm-up: the machine's noise hits both alike
            med = median_times(
                {v: lambda fn=fn: jax.block_until_ready(fn(p, xs)) for v, fn in fns.items()}, args.repeats
            )
            row = {"T": T, "vmapped": vmapped, **{f"{v}_s": m for v, m in med.items()}}
            row["inplace_over_outputs"] = med["inplace"] / med["outputs"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        meta = {"jax": jax.__version__, "device": str(jax.devices()[0]), "hidden": args.hidden, "batch": args.batch}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
