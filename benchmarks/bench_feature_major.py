"""The feature-major LSTM recurrence, measured against rnnlab's default (issue 15, item 2).

Issue 6's note left "feature-major" as the most promising lead for the LSTM on
XLA's CPU backend: keep the state as ``[H, B]`` and compute ``W_hh h`` so that
each gate is a contiguous block of rows.  This is that recurrence for the LSTM
with a hand-written fused backward pass (the same structure as
``rnnlab.scan``'s fused VJP), timed forward+backward (loss = sum of squared
outputs, gradients w.r.t. params and input) against ``RNN(LSTMCell(H))``,
interleaved, medians; the gradients are checked against each other first.
It stays a benchmark: it did not win (benchmarks/README.md).

    python benchmarks/bench_feature_major.py --out benchmarks/results_feature_major_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_layers import median_times  # noqa: E402

from rnnlab import RNN  # noqa: E402
from rnnlab.cells import make_cell  # noqa: E402

SHAPES = [(8, 1000, 2, 128), (32, 200, 64, 256), (64, 100, 128, 512), (128, 50, 32, 128)]  # issue 15's table


@jax.custom_vjp
def fm_lstm(p, x_tib):
    return _fwd(p, x_tib)[0]

def _fwd(p, x_tib):
    """Forward, feature-major: ``z = W_ih x_t + W_hh h_{t-1} + b`` as ``[4H, B]``; saves the gates."""
    H = p["w_hh"].shape[1]; B = x_tib.shape[2]
    b = (p["b_ih"] + p["b_hh"])[:, None]
    def step(carry, x_ib):
        h, c = carry
        z = p["w_ih"] @ x_ib + p["w_hh"] @ h + b
        i = jax.nn.sigmoid(z[:H]); f = jax.nn.sigmoid(z[H:2*H]); g = jnp.tanh(z[2*H:3*H]); o = jax.nn.sigmoid(z[3*H:])
        c2 = f * c + i * g; h2 = o * jnp.tanh(c2)
        return (h2, c2), (h2, jnp.concatenate([i, f, g, o]), h, c)
    z0 = jnp.zeros((H, B))
    _, (y, gates, hp, cp) = jax.lax.scan(step, (z0, z0), x_tib)
    return y, (p, x_tib, gates, hp, cp)

def _bwd(res, dy_thb):
    """The LSTM's derivative by hand, feature-major: the reverse scan carries ``(dh, dc)``
    ``[H, B]``; ``dh_{t-1} = W_hh^T dz_t``; weight gradients as one matmul over T*B columns."""
    p, x_tib, gates, hp, cp = res
    H = p["w_hh"].shape[1]
    w_hh_t = p["w_hh"].T
    def step(state, inp):
        dh, dc = state
        dy, gt, c_prev = inp
        i, f, g, o = gt[:H], gt[H:2*H], gt[2*H:3*H], gt[3*H:]
        c = f * c_prev + i * g; tc = jnp.tanh(c)
        dh = dh + dy
        do = dh * tc * o * (1 - o)
        dc = dc + dh * o * (1 - tc * tc)
        di = dc * g * i * (1 - i); df = dc * c_prev * f * (1 - f); dg = dc * i * (1 - g * g)
        dz = jnp.concatenate([di, df, dg, do])
        return (w_hh_t @ dz, dc * f), dz
    z0 = jnp.zeros_like(hp[0])
    _, dz_tgb = jax.lax.scan(step, (z0, z0), (dy_thb, gates, cp), reverse=True)
    T, G, B = dz_tgb.shape
    dz_gn = jnp.transpose(dz_tgb, (1, 0, 2)).reshape(G, T * B)
    flat = lambda a: jnp.transpose(a, (1, 0, 2)).reshape(a.shape[1], -1)
    db = jnp.sum(dz_gn, axis=1)
    dp = {"w_ih": dz_gn @ flat(x_tib).T, "w_hh": dz_gn @ flat(hp).T, "b_ih": db, "b_hh": db}
    dx = (p["w_ih"].T @ dz_gn).reshape(-1, T, B).transpose(1, 0, 2)
    return dp, dx
fm_lstm.defvjp(_fwd, _bwd)

def apply_fm(p, x_bti):
    return jnp.transpose(fm_lstm(p, jnp.transpose(x_bti, (1, 2, 0))), (2, 0, 1))

def row(B, T, I, H, repeats):
    layer = RNN(make_cell("lstm", H))
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    default = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x)[0] ** 2), argnums=(0, 1)))
    feature_major = jax.jit(jax.grad(lambda p, x: jnp.sum(apply_fm(p["l0"]["fwd"], x) ** 2), argnums=(0, 1)))
    want, got = default(params, x), feature_major(params, x)
    error = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)))
    assert error < 1e-4, f"feature-major gradients differ from rnnlab's by {error:.1e}"
    times = median_times({"default": lambda: jax.block_until_ready(default(params, x)),
                          "feature_major": lambda: jax.block_until_ready(feature_major(params, x))}, repeats)
    result = {"B": B, "T": T, "I": I, "H": H, **{f"{k}_ms": 1e3 * v for k, v in times.items()},
              "feature_major/default": times["feature_major"] / times["default"], "max_relative_gradient_error": error}
    print(result, flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows = [row(*shape, args.repeats) for shape in SHAPES]
    results = {"header": {"device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(), "jax": jax.__version__},
               "rows": rows, "median feature_major/default": float(np.median([r["feature_major/default"] for r in rows]))}
    print(results["median feature_major/default"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
