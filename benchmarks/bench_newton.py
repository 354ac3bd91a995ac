"""Newton over the sequence against the sequential scan: forward evaluation of one layer.

GRU and LSTM at init (float32, inputs ~ N(0, 1) of width 2 and batch 16, as DEER's demo,
machine-discovery/deer ``deer/demo.py``, whose H = 2 GRU at T = 10k is the 68x of its README), ``path="fused"`` (the
sequential scan) against ``"newton"`` (full Jacobians) and ``"quasi_newton"`` (diagonal), each
to its default tolerance.  Medians of ``--repeats`` interleaved runs after a warm-up; the
iterations each Newton path took; and the memory the Jacobians need, ``T*B*D^2`` numbers
for Newton (D = H for the GRU, 2H for the LSTM's (h, c)) and ``T*B*D`` for quasi-Newton.
A case whose Newton Jacobians would exceed ``--max-jacobian-gib``, or whose sequential work
``T*B*H^2`` exceeds ``--max-work``, is recorded as skipped, with the reason.

    python benchmarks/bench_newton.py --out benchmarks/results_newton_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax

from rnnlab import RNN, GRUCell, LSTMCell

sys.path.insert(0, os.path.dirname(__file__))
from bench_layers import median_times  # noqa: E402

CELLS = {"gru": (GRUCell, 1), "lstm": (LSTMCell, 2)}  # cell, carry fields (D = fields * H)
PATHS = ("fused", "newton", "quasi_newton")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--hidden", type=int, nargs="+", default=[2, 8, 32, 128, 256])
    parser.add_argument("--input-size", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-jacobian-gib", type=float, default=2.0)
    parser.add_argument("--max-work", type=float, default=3e8, help="skip cases with T*B*H^2 above this")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for name in args.cells:
        make, fields = CELLS[name]
        for H in args.hidden:
            for T in args.lengths:
                D, row = fields * H, {"cell": name, "H": H, "T": T, "B": args.batch}
                row["newton_jacobian_gib"] = T * args.batch * D * D * 4 / 2**30
                row["quasi_jacobian_gib"] = T * args.batch * D * 4 / 2**30
                if T * args.batch * H * H > args.max_work:
                    rows.append(row | {"skipped": f"T*B*H^2 = {T * args.batch * H * H:.1e} > --max-work"})
                    print(json.dumps(rows[-1]), flush=True)
                    write(args, rows)
                    continue
                x = jax.random.normal(jax.random.key(1), (args.batch, T, args.input_size))
                params = RNN(make(H)).init(jax.random.key(0), args.input_size)
                programs = {}
                for path in PATHS:
                    if path == "newton" and row["newton_jacobian_gib"] > args.max_jacobian_gib:
                        row["newton_skipped"] = f"Jacobians {row['newton_jacobian_gib']:.1f} GiB > --max-jacobian-gib"
                        continue
                    layer = RNN(make(H), path=path)
                    info = path != "fused"
                    run = jax.jit(lambda p, x, layer=layer, info=info: layer.apply(p, x, return_info=info))
                    out = jax.block_until_ready(run(params, x))
                    if info:
                        row[f"{path}_iterations"] = int(out[2][0].iterations)
                    programs[path] = lambda run=run: jax.block_until_ready(run(params, x))
                med = median_times(programs, args.repeats)
                row |= {f"{p}_s": m for p, m in med.items()}
                row |= {f"fused_over_{p}": med["fused"] / med[p] for p in med if p != "fused"}
                rows.append(row)
                print(json.dumps(row), flush=True)
                write(args, rows)  # after every case: a long grid keeps what it measured


def write(args, rows):
    if args.out:
        meta = {
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "cpu_count": os.cpu_count(),
            "dtype": "float32",
        }
        meta |= {"batch": args.batch, "input_size": args.input_size, "repeats": args.repeats}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
