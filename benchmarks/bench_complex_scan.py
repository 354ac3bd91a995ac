"""The LRU's associative scan over its complex state, three ways: as (re, im) pairs of real
arrays, as native complex numbers, and (for scale) a real scan of the same size; plus the
sequential scan over pairs.  Forward+backward of ``sum(h)``, T steps, batch 16, H = 256;
compile time and one timed run each (after a warm run).

    python benchmarks/bench_complex_scan.py --lengths 1024 4096 16384
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp


def as_pairs(are, aim, bre, bim):
    def compose(e, l):
        (a1r, a1i, b1r, b1i), (a2r, a2i, b2r, b2i) = e, l
        return (a2r * a1r - a2i * a1i, a2r * a1i + a2i * a1r, a2r * b1r - a2i * b1i + b2r, a2r * b1i + a2i * b1r + b2i)

    out = jax.lax.associative_scan(compose, (are, aim, bre, bim))
    return jnp.sum(out[2]) + jnp.sum(out[3])


def as_complex(are, aim, bre, bim):
    a, b = jax.lax.complex(are, aim), jax.lax.complex(bre, bim)
    out = jax.lax.associative_scan(lambda e, l: (l[0] * e[0], l[0] * e[1] + l[1]), (a, b))
    return jnp.sum(out[1].real) + jnp.sum(out[1].imag)


def real_only(are, aim, bre, bim):
    out = jax.lax.associative_scan(lambda e, l: (l[0] * e[0], l[0] * e[1] + l[1]), (are, bre))
    return jnp.sum(out[1])


def sequential_pairs(are, aim, bre, bim):
    def step(h, ab):
        (ar, ai, br, bi), (hr, hi) = ab, h
        h = (ar * hr - ai * hi + br, ar * hi + ai * hr + bi)
        return h, h

    zeros = jnp.zeros(are.shape[1:])
    _, out = jax.lax.scan(step, (zeros, zeros), (are, aim, bre, bim))
    return jnp.sum(out[0]) + jnp.sum(out[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for T in args.lengths:
        arrays = [0.5 * jax.random.normal(k, (T, 16, 256)) for k in jax.random.split(jax.random.key(0), 4)]
        for name, fn in [
            ("pairs", as_pairs),
            ("complex", as_complex),
            ("real", real_only),
            ("sequential", sequential_pairs),
        ]:
            grad = jax.jit(jax.grad(fn, argnums=(0, 1, 2, 3)))
            start = time.perf_counter()
            compiled = grad.lower(*arrays).compile()
            compile_s = time.perf_counter() - start
            jax.block_until_ready(compiled(*arrays))
            start = time.perf_counter()
            jax.block_until_ready(compiled(*arrays))
            rows.append({"T": T, "scan": name, "compile_s": compile_s, "run_s": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": {"jax": jax.__version__, "device": str(jax.devices()[0])}, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
