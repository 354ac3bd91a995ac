"""Tokens per second of the text-generation train step with its batch split over 1, 2, 4 devices.

The step is the one ``experiments/text_generation.py`` runs (``LanguageModel``: Embed ->
GRU -> Dense, Adam, clipping), built the same way: ``Sweep(seeds, data=n)``, one
program, every batch made per device by ``put_batch``.  Each device count runs in
its own process (``JAX_NUM_CPU_DEVICES=n`` on CPU; on a GPU machine the first n
GPUs); the device counts interleave over --repeats rounds and the table gives
median tokens/s.  On fake CPU devices the n "devices" share the same cores, so
this shows that the program is data parallel (the compiled step holds an
all-reduce of the gradients) and costs little extra, not a speed-up.

    python benchmarks/bench_data_parallel.py --out benchmarks/results_data_parallel_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

WORKER = "--worker"


def worker(args) -> dict:
    """In a process with ``args.devices`` devices: median seconds per step after warm-up."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from rnnlab import RNN, parallel
    from rnnlab import sweep as sweeps
    from rnnlab.data import random_windows
    from rnnlab.linen import LanguageModel
    from rnnlab.train import OptimConfig, init_state, make_optimizer, make_train_step
    from rnnlab.zoo import make_cell

    vocab = 96
    ids = np.random.default_rng(0).integers(0, vocab, 200_000).astype(np.int32)
    model = LanguageModel(vocab, 64, RNN(make_cell("gru", args.hidden)))
    opt = make_optimizer(OptimConfig("adam", 2e-3, clip_norm=1.0), 1000)

    def loss_fn(params, batch, key):
        logits, _ = model.apply(params, batch["inputs"])
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])), {}

    devices = jax.devices()[: args.use]  # on a GPU machine: the first n GPUs
    sweep = sweeps.Sweep([{"seed": 0}], mesh=parallel.sweep_mesh(devices, data=len(devices)))
    params = model.init(jax.random.key(0), jnp.zeros((1, args.seq_len), jnp.int32))
    state = sweep.put(jax.tree.map(lambda a: np.asarray(a)[None], init_state(opt, params, jax.random.key(1))))
    step = sweep.program(make_train_step(loss_fn, opt))
    batch = lambda i: sweep.put_batch(
        lambda ex: jax.tree.map(lambda a: a[None], random_windows(ids, args.batch, args.seq_len, (0, i), ex)),
        args.batch,
    )
    with jax.set_mesh(sweep.mesh):
        hlo = jax.jit(jax.vmap(make_train_step(loss_fn, opt))).lower(state, batch(0)).compile().as_text()
    times = []
    for i in range(args.warmup + args.steps):
        b = batch(i)
        start = time.perf_counter()
        state, metrics = step(state, b)
        jax.block_until_ready(metrics["loss"])
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    return {
        "devices": len(devices),
        "platform": devices[0].platform,
        "seconds_per_step": seconds,
        "tokens_per_s": args.batch * args.seq_len / seconds,
        "all_reduce_in_step": "all-reduce" in hlo,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="")
    parser.add_argument(WORKER, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--use", type=int, default=1, help=argparse.SUPPRESS)  # the worker's device count
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import numpy as np

    runs: dict[int, list[dict]] = {n: [] for n in args.devices}
    flags = [
        f"--{k.replace('_', '-')}={v}"
        for k, v in vars(args).items()
        if k in ("batch", "seq_len", "hidden", "steps", "warmup")
    ]
    for _ in range(args.repeats):  # device counts interleaved: drift on a shared machine hits all alike
        for n in args.devices:
            env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(n))  # CPU; elsewhere the first n devices
            out = subprocess.run(
                [sys.executable, __file__, WORKER, f"--use={n}", *flags],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            )
            runs[n].append(json.loads(out.stdout.splitlines()[-1]))
    rows = []
    for rs in runs.values():
        rows.append(
            {
                "devices": rs[0]["devices"],
                "platform": rs[0]["platform"],
                "tokens_per_s_median": float(np.median([r["tokens_per_s"] for r in rs])),
                "tokens_per_s_runs": [round(r["tokens_per_s"]) for r in rs],
                "all_reduce_in_step": rs[0]["all_reduce_in_step"],
            }
        )
    base = rows[0]["tokens_per_s_median"]
    for r in rows:
        r["ratio_to_first"] = r["tokens_per_s_median"] / base
        print(
            f"{r['devices']} {r['platform']} device(s): {r['tokens_per_s_median']:9.0f} tokens/s "
            f"({r['ratio_to_first']:.2f}x), all-reduce in step: {r['all_reduce_in_step']}"
        )
    result = {
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "worker")},
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()},
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
