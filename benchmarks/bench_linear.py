"""Linear recurrences, sequential against associative (parallel over time), and against the LSTM.

Forward+backward (loss = sum of outputs; gradients w.r.t. params and input) of one layer,
batch 16, H = 256, at T = 1k, 4k and 16k: the LRU (its block) with ``path="sequential"``
and ``"associative"``, and rnnlab's LSTM (default path).  The contenders are interleaved in
every repeat; medians.  Then the compile time of the LRU's associative forward+backward at
the longest T (the LRU carries its complex state as real pairs: complex associative scans
compile far slower, jax-ml/jax#18221).

    python benchmarks/bench_linear.py --out benchmarks/results_linear_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp

from rnnlab import RNN, LSTMCell
from rnnlab.linear import LRUBlock

sys.path.insert(0, os.path.dirname(__file__))
from bench_layers import median_times  # noqa: E402


def program(layer, x):
    params = layer.init(jax.random.key(0), x.shape[-1])
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x)[0]), argnums=(0, 1)))
    return grad, params


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    H = args.hidden
    contenders = {
        "lru_sequential": RNN(LRUBlock(H), path="sequential"),
        "lru_associative": RNN(LRUBlock(H), path="associative"),
        "lstm": RNN(LSTMCell(H)),
    }
    rows = []
    for T in args.lengths:
        x = jax.random.normal(jax.random.key(1), (args.batch, T, H))
        programs, compile_s = {}, {}
        for name, layer in contenders.items():
            grad, params = program(layer, x)
            start = time.perf_counter()
            compiled = grad.lower(params, x).compile()
            compile_s[name] = time.perf_counter() - start
            programs[name] = lambda compiled=compiled, params=params: jax.block_until_ready(compiled(params, x))
        med = median_times(programs, args.repeats)  # interleaved, after a warm-up: noise hits all alike
        row = {"T": T, **{f"{n}_s": m for n, m in med.items()}, **{f"{n}_compile_s": c for n, c in compile_s.items()}}
        row["sequential_over_associative"] = med["lru_sequential"] / med["lru_associative"]
        row["lstm_over_lru_associative"] = med["lstm"] / med["lru_associative"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        meta = {"jax": jax.__version__, "device": str(jax.devices()[0]), "batch": args.batch, "hidden": H}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
