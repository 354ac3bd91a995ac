"""Speed and memory of rnnlab's recurrent layers against torch.nn and Flax nnx.RNN.

Times forward and forward+backward of one recurrent layer (input -> outputs,
loss = sum of outputs) for rnnlab, ``torch.nn.LSTM/GRU/RNN`` (same thread
count) and Flax ``nnx.RNN`` (``OptimizedLSTMCell`` / ``GRUCell`` /
``SimpleCell``). The contenders are interleaved within every repeat and the
median is reported, because this machine is shared and noisy. Also: compile
time of rnnlab's forward+backward against T (it must stay flat: one scan, no
Python loop over time) and the compiled program's temporary memory against T,
with and without rematerialisation.

    python benchmarks/bench_layers.py                       # the four shapes, LSTM, ~4 minutes
    python benchmarks/bench_layers.py --cells lstm gru rnn --repeats 7 --out benchmarks/results_cpu.json
    python benchmarks/bench_layers.py --table benchmarks/results_cpu.json   # its markdown table

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import RNN
from rnnlab.zoo import make_cell

SHAPES = [(8, 1000, 2, 128), (32, 200, 64, 256), (64, 100, 128, 512), (128, 50, 32, 128)]  # (B, T, I, H)


def rnnlab_fns(cell_name, B, T, I, H, apply=None, **layer_options):
    """rnnlab's default path (``layer_options`` select others, e.g. ``path="autodiff"``;
    ``apply(layer, params, x)``, e.g. ``rnnlab.experimental.apply_wavefront``, runs another)."""
    layer = RNN(make_cell(cell_name, H), **layer_options)
    run = functools.partial(apply or RNN.apply, layer)
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    fwd = jax.jit(lambda p, x: run(p, x)[0])
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(run(p, x)[0]), argnums=(0, 1)))
    return (lambda: jax.block_until_ready(fwd(params, x))), (lambda: jax.block_until_ready(grad(params, x)))


def flax_fns(cell_name, B, T, I, H):
    from flax import nnx

    cls = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell, "rnn": nnx.SimpleCell}[cell_name]
    model = nnx.RNN(cls(I, H, rngs=nnx.Rngs(0)))
    carry0 = model.cell.initialize_carry((B, I), nnx.Rngs(0))  # zeros, made outside jit
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)  # differentiate the parameters only
    x = jax.random.normal(jax.random.key(1), (B, T, I))

    def apply(state, x):
        return nnx.merge(graphdef, state, rest)(x, initial_carry=carry0)

    fwd = jax.jit(apply)
    grad = jax.jit(jax.grad(lambda s, x: jnp.sum(apply(s, x)), argnums=(0, 1)))
    return (lambda: jax.block_until_ready(fwd(state, x))), (lambda: jax.block_until_ready(grad(state, x)))


def torch_fns(cell_name, B, T, I, H, **module_options):
    import torch

    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell_name]
    module = cls(I, H, batch_first=True, **module_options)  # e.g. num_layers=, bidirectional=
    x = torch.randn(B, T, I, requires_grad=True)

    def fwd():
        with torch.no_grad():
            return module(x)[0]

    def fwd_bwd():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x)[0].sum().backward()

    return fwd, fwd_bwd


def median_times(contenders: dict, repeats: int) -> dict:
    """Warm every contender up, then time them interleaved: ``{name: median seconds}``."""
    for fn in contenders.values():
        fn()
        fn()
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(s) for name, s in samples.items()}


def speed_table(cells, repeats):
    rows = []
    for cell_name in cells:
        for B, T, I, H in SHAPES:
            fns = {
                "rnnlab": rnnlab_fns(cell_name, B, T, I, H),
                "rnnlab_autodiff": rnnlab_fns(cell_name, B, T, I, H, path="autodiff"),
                "torch": torch_fns(cell_name, B, T, I, H),
                "flax_nnx": flax_fns(cell_name, B, T, I, H),
            }
            for mode, index in (("fwd", 0), ("fwd+bwd", 1)):
                times = median_times({name: f[index] for name, f in fns.items()}, repeats)
                row = {
                    "cell": cell_name,
                    "B": B,
                    "T": T,
                    "I": I,
                    "H": H,
                    "mode": mode,
                    **{f"{k}_ms": 1e3 * v for k, v in times.items()},
                    "rnnlab/torch": times["rnnlab"] / times["torch"],
                    "rnnlab/flax": times["rnnlab"] / times["flax_nnx"],
                }
                rows.append(row)
                print(
                    f"{cell_name:4s} B={B:3d} T={T:4d} I={I:3d} H={H:3d} {mode:7s} "
                    + "  ".join(f"{k} {1e3 * v:8.2f} ms" for k, v in times.items())
                    + f"   rnnlab/torch {row['rnnlab/torch']:.2f}",
                    flush=True,
                )
    return rows


def compile_and_memory(lengths, B=16, I=32, H=128):
    """Compile time and temporary memory of LSTM forward+backward against T."""
    out = []
    for T in lengths:
        for remat in (False, True):
            layer = RNN(make_cell("lstm", H), path="remat" if remat else "fused")
            params = layer.init(jax.random.key(0), I)
            x = jnp.zeros((B, T, I))
            grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x)[0])))
            t0 = time.perf_counter()
            compiled = grad.lower(params, x).compile()
            seconds = time.perf_counter() - t0
            memory = compiled.memory_analysis()
            temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None
            out.append({"T": T, "remat": remat, "compile_s": seconds, "temp_bytes": temp})
            print(
                f"T={T:6d} remat={remat!s:5s} compile {seconds:6.2f} s   temp memory "
                f"{temp / 2**20 if temp is not None else float('nan'):9.2f} MiB",
                flush=True,
            )
    return out


def markdown_table(results: dict) -> str:
    """The speed rows as a markdown table (ms, medians; ratios within this run)."""
    lines = [
        "| cell | (B, T, I, H) | mode | rnnlab | autodiff | torch | flax nnx | rnnlab/torch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results["speed"]:
        lines.append(
            f"| {r['cell']} | ({r['B']}, {r['T']}, {r['I']}, {r['H']}) | {r['mode']} | {r['rnnlab_ms']:.1f} | "
            f"{r['rnnlab_autodiff_ms']:.1f} | {r['torch_ms']:.1f} | {r['flax_nnx_ms']:.1f} | "
            f"**{r['rnnlab/torch']:.2f}** |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["lstm"], choices=["lstm", "gru", "rnn"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--lengths", nargs="+", type=int, default=[10, 100, 1000, 10000])
    parser.add_argument("--out", default="benchmarks/results.json")
    parser.add_argument("--table", metavar="JSON", help="print the markdown table of an earlier run and exit")
    args = parser.parse_args(argv)
    if args.table:
        with open(args.table) as f:
            print(markdown_table(json.load(f)))
        return

    import torch

    threads = int(os.environ.get("RNNLAB_BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    header = {
        "device": jax.devices()[0].device_kind,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "jax": jax.__version__,
        "torch": torch.__version__,
    }
    print(header)
    results = {
        "header": header,
        "speed": speed_table(args.cells, args.repeats),
        "compile_and_memory": compile_and_memory(args.lengths),
    }
    ratios = [r["rnnlab/torch"] for r in results["speed"] if r["mode"] == "fwd+bwd"]
    results["summary"] = {
        "fwd+bwd rnnlab/torch median": float(np.median(ratios)),
        "fwd+bwd rnnlab/torch max": float(np.max(ratios)),
    }
    print(results["summary"])
    print(markdown_table(results))
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
