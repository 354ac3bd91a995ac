"""S sweep points as one compiled program against S separate runs (each its own program).

A point is a learning rate of an LSTM regressor trained on the adding problem
(--steps Adam steps, batch --batch, T --length, H --hidden).  "separate" is what
rnnlab did before sweeps: one jitted train step per point, compiled each time
(the persistent compilation cache is off).  Wall times include compilation;
the compile seconds are JAX's own monitoring events.

    python benchmarks/bench_sweep.py --sizes 1 4 16 64 --out benchmarks/results_sweep_cpu.json
    JAX_NUM_CPU_DEVICES=4 python benchmarks/bench_sweep.py ...   # the same on 4 (fake) devices
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import RNN, parallel
from rnnlab import sweep as sweeps
from rnnlab.data import synthetic
from rnnlab.linen import SequenceRegressor
from rnnlab.train import OptimConfig, make_optimizer
from rnnlab.zoo import make_cell


def run_sweep(points, args) -> None:
    """Train ``points`` as one sweep (one program for the train step)."""
    sweep = sweeps.Sweep(points)
    model = SequenceRegressor(RNN(make_cell("lstm", args.hidden)))
    init = jax.jit(lambda key: model.init(key, jnp.zeros((1, 1, 2))))
    keys = jax.random.split(jax.random.key(0), len(points))
    params = sweeps.init_params(sweep, lambda key, p: init(key), keys)
    opt = make_optimizer(OptimConfig("adam", 1e-3), args.steps)
    state = sweeps.init_states(sweep, opt, params, keys, hyperparameters=("learning_rate",))

    def loss(p, b, key):  # a new function each call: a new program, as separate runs compile
        return jnp.mean((model.apply(p, b["x"])[:, 0] - b["y"]) ** 2), {}

    batches = synthetic.seeded_batches(synthetic.adding_problem, 0, len(points), args.batch, args.length)
    sweeps.train(sweep, state, loss, opt, batches, num_steps=args.steps, progress="none")


def measure(fn) -> tuple[float, dict]:
    with parallel.CompileStats() as stats:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, stats.as_dict()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for S in args.sizes:
        points = [{"learning_rate": float(lr)} for lr in np.geomspace(1e-4, 1e-2, S)]
        one_s, one_c = measure(lambda: run_sweep(points, args))
        sep_s, sep_c = measure(lambda: [run_sweep([p], args) for p in points])
        rows.append(
            {
                "S": S,
                "one_program_s": one_s,
                "one_program_compile": one_c,
                "separate_s": sep_s,
                "separate_compile": sep_c,
                "speedup": sep_s / one_s,
            }
        )
        print(
            f"S={S:3d}  one program {one_s:7.2f} s ({one_c['programs']} programs, {one_c['seconds']:.1f} s compile)"
            f"   separate {sep_s:7.2f} s ({sep_c['programs']} programs, {sep_c['seconds']:.1f} s compile)"
            f"   x{sep_s / one_s:.1f}",
            flush=True,
        )
    if args.out:
        info = {
            "devices": jax.device_count(),
            "backend": jax.default_backend(),
            "jax": jax.__version__,
            "machine": platform.processor() or platform.machine(),
            "args": vars(args),
        }
        with open(args.out, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
