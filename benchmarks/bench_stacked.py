"""Stacked and bidirectional layers at small batch sizes, where each scan step is tiny.

Forward+backward (loss = sum of outputs) of rnnlab with a bidirectional
layer's two directions in one scan, ``[2, B, H] x [2, H, G*H]`` per step
(``rnnlab.experimental.apply_one_scan``), against one scan per direction
(``RNN.apply``, the default everywhere) and ``torch.nn.LSTM/GRU`` with the same
layers and thread count; for unidirectional stacks also the layer wavefront
(``rnnlab.experimental.apply_wavefront``: one scan of T + L - 1 steps), forward+backward with
its fused VJP and with JAX's derivative, and forward only.  Interleaved repeats, medians.  Then compile time of a
bidirectional LSTM's (and a wavefront stack's) forward+backward against the
number of layers and T.

    python benchmarks/bench_stacked.py --out benchmarks/results_stacked_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from bench_layers import median_times, rnnlab_fns, torch_fns  # noqa: E402

from rnnlab import RNN
from rnnlab.experimental import apply_one_scan, apply_wavefront  # noqa: E402
from rnnlab.zoo import make_cell  # noqa: E402

# (B, T, I, H, layers, bidirectional): the small-batch, long-sequence regime
SHAPES = [
    (8, 1000, 2, 128, 1, True),
    (16, 300, 32, 128, 1, True),
    (8, 500, 32, 128, 2, True),
    (16, 300, 32, 128, 2, True),
    (8, 500, 32, 128, 2, False),
    (16, 1000, 32, 128, 3, False),
]


def speed_rows(cells, repeats):
    rows = []
    for cell in cells:
        for B, T, I, H, L, bi in SHAPES:
            one_scan = apply_one_scan if bi else None  # one direction: there is nothing to pair
            fns = {
                "rnnlab": rnnlab_fns(cell, B, T, I, H, one_scan, num_layers=L, bidirectional=bi)[1],
                "per_direction": rnnlab_fns(cell, B, T, I, H, num_layers=L, bidirectional=bi)[1],
                "torch": torch_fns(cell, B, T, I, H, num_layers=L, bidirectional=bi)[1],
            }
            if L > 1 and not bi:
                forward, both = rnnlab_fns(cell, B, T, I, H, apply_wavefront, num_layers=L)
                fns.update(
                    wavefront=both,
                    wavefront_forward=forward,
                    wavefront_autodiff=rnnlab_fns(cell, B, T, I, H, apply_wavefront, num_layers=L, path="autodiff")[1],
                    per_layer_forward=rnnlab_fns(cell, B, T, I, H, num_layers=L)[0],
                )
            times = median_times(fns, repeats)
            row = {
                "cell": cell,
                "B": B,
                "T": T,
                "I": I,
                "H": H,
                "layers": L,
                "bidirectional": bi,
                **{f"{k}_ms": 1e3 * v for k, v in times.items()},
                "rnnlab/torch": times["rnnlab"] / times["torch"],
                "rnnlab/per_direction": times["rnnlab"] / times["per_direction"],
            }
            if "wavefront" in times:
                row["wavefront/per_layer"] = times["wavefront"] / times["per_direction"]
                row["wavefront/per_layer forward"] = times["wavefront_forward"] / times["per_layer_forward"]
            rows.append(row)
            print(
                f"{cell} B={B} T={T} L={L} bi={bi!s:5s} "
                + "  ".join(f"{k} {1e3 * v:8.1f} ms" for k, v in times.items())
                + f"  rnnlab/torch {row['rnnlab/torch']:.2f}  vs per-direction {row['rnnlab/per_direction']:.2f}",
                flush=True,
            )
    return rows


def compile_seconds(layer, apply, B, T, I):
    params = layer.init(jax.random.key(0), I)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(apply(layer, p, x)[0])))
    t0 = time.perf_counter()
    grad.lower(params, jnp.zeros((B, T, I))).compile()
    return time.perf_counter() - t0


def compile_rows(layer_counts, lengths=(100, 1000), B=16, I=32, H=128):
    rows = []
    for T in lengths:
        for L in layer_counts:
            for kind, apply, options in (
                ("bidirectional", apply_one_scan, dict(bidirectional=True)),
                ("wavefront", apply_wavefront, {}),
            ):
                seconds = compile_seconds(RNN(make_cell("lstm", H), num_layers=L, **options), apply, B, T, I)
                rows.append({"layers": L, "T": T, "kind": kind, "compile_s": seconds})
                print(f"LSTM {kind}, {L} layer(s), T={T}: compile {seconds:.2f} s", flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    import torch

    threads = int(os.environ.get("RNNLAB_BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    results = {
        "header": {
            "device": jax.devices()[0].device_kind,
            "cpu_count": os.cpu_count(),
            "torch_threads": threads,
            "jax": jax.__version__,
            "torch": torch.__version__,
        },
        "speed": speed_rows(args.cells, args.repeats),
        "compile": compile_rows(args.layers),
    }
    ratios = [r["rnnlab/torch"] for r in results["speed"]]
    results["summary"] = {
        "rnnlab/torch median": float(np.median(ratios)),
        "rnnlab/torch max": float(np.max(ratios)),
        "rnnlab/per_direction median (bidirectional rows)": float(
            np.median([r["rnnlab/per_direction"] for r in results["speed"] if r["bidirectional"]])
        ),
    }
    print(results["summary"])
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
