"""Newton over the sequence against the sequential scan, on this machine.

Two tables (float32, inputs ~ N(0, 1) of width 2, batch 16, cells at init: DEER's demo,
machine-discovery/deer ``deer/demo.py``, whose H = 2 GRU at T = 10k is the 68x of its README):

``iteration``: ONE Newton iteration (the linearisation at a trajectory and the associative solve
  of the linear recurrence, per sequence as the paths run it) against ONE sequential forward
  pass (``path="fused"``), with the Jacobians from the cell's structure (``after``:
  ``rnnlab.cells.JacobianCell``) and from ``jax.jacfwd`` of the step (``before``: what every cell
  got until the structure existed, and what a three-method cell still gets).  ``quasi``: each
  unit's block (the GRU's diagonal, the LSTM's 2x2 (h, c) blocks); ``newton``: the full D x D.
  GRU and LSTM, H = 64/128/256, T = 1k/10k.

``solve``: the whole forward evaluation of one layer to the default tolerance (``"newton"``,
  ``"quasi_newton"``) against ``"fused"``, with the iterations it took; GRU, LSTM and ParaRNN's
  ParaGRU, small H (DEER's demo case among them).

Medians of ``--repeats`` interleaved runs after a warm-up.  A case whose Jacobians would exceed
``--max-jacobian-gib`` (``T*B*D^2`` numbers for Newton), or whose forward-mode work (``D`` Jacobian-
vector products of a step per row, ``T*B*D*G*H^2``) exceeds ``--max-jacfwd-work``, is recorded as
skipped, with the reason.

    python benchmarks/bench_newton.py --out benchmarks/results_newton_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp

from rnnlab import RNN, GRUCell, LSTMCell, newton
from rnnlab.cells import StepOnly
from rnnlab.pararnn import ParaGRUCell

sys.path.insert(0, os.path.dirname(__file__))
from bench_layers import median_times  # noqa: E402

CELLS = {"gru": (GRUCell, 1, 3), "lstm": (LSTMCell, 2, 4), "paragru": (lambda H: ParaGRUCell(H, num_heads=1), 1, 3)}


def one_iteration(cell, structure):
    """``(params, x_tbi, h_tbd) -> new h``: one linearisation and one solve, as the paths run them
    (time-major, every sequence of the batch at once)."""

    def run(params, x_tbi, h_tbd):
        T, B, D = h_tbd.shape
        carry0 = cell.initial_carry((B,), x_tbi.dtype)
        step = newton._Step(cell, params, jax.tree.structure(carry0))
        h_prev = newton._previous(newton.flatten_carry(carry0), h_tbd)
        f, a, _ = step.linearise(structure, newton._rows(h_prev), newton._rows(x_tbi))
        f, a = f.reshape(T, B, D), a.reshape((T, B) + a.shape[1:])
        b = (f - newton._apply(a, h_prev, structure, step.fields)).at[0].set(f[0])
        return newton._solve(a, b, structure, step.fields)

    return jax.jit(run)


def iteration_table(args, write):
    rows = []
    for name in args.cells:
        make, fields, gates = CELLS[name]
        for H in args.hidden:
            for T in args.lengths:
                D, B = fields * H, args.batch
                row = {"table": "iteration", "cell": name, "H": H, "T": T, "B": B}
                x = jax.random.normal(jax.random.key(1), (B, T, args.input_size))
                x_tbi = jnp.swapaxes(x, 0, 1)
                cell = make(H)
                params = RNN(cell).init(jax.random.key(0), args.input_size)["l0"]["fwd"]
                h = 0.1 * jax.random.normal(jax.random.key(2), (T, B, D))
                sequential = jax.jit(lambda p, x, cell=cell: RNN(cell, path="fused").apply({"l0": {"fwd": p}}, x)[0])
                programs = {"sequential": lambda: jax.block_until_ready(sequential(params, x))}
                quasi = "diagonal" if fields == 1 else "blocks"
                for label, structure in (("quasi", quasi), ("newton", "full")):
                    gib = T * B * D * (D if structure == "full" else fields) * 4 / 2**30
                    row[f"{label}_jacobian_gib"] = gib
                    for when, c in (("after", cell), ("before", StepOnly(cell))):
                        key = f"{label}_{when}"
                        work = T * B * D * gates * H * H
                        if gib > args.max_jacobian_gib:
                            row[f"{key}_skipped"] = (
                                f"Jacobians {gib:.1f} GiB > --max-jacobian-gib {args.max_jacobian_gib}"
                            )
                            continue
                        if when == "before" and work > args.max_jacfwd_work:
                            row[f"{key}_skipped"] = f"jacfwd work T*B*D*G*H^2 = {work:.1e} > --max-jacfwd-work"
                            continue
                        fn = one_iteration(c, structure)
                        programs[key] = lambda fn=fn: jax.block_until_ready(fn(params, x_tbi, h))
                record(row, programs, args.repeats, rows, write)
    return rows


def record(row, programs, repeats, rows, write):
    """Median times of ``programs`` (one of them ``"sequential"``) and each one's ratio to it, into
    ``row``; the row appended to ``rows``, printed and the file rewritten (a stopped run keeps it)."""
    med = median_times(programs, repeats)
    row |= {f"{k}_s": v for k, v in med.items()}
    row |= {f"{k}_over_sequential": v / med["sequential"] for k, v in med.items() if k != "sequential"}
    rows.append(row)
    print(json.dumps(row), flush=True)
    write(rows)


def solve_table(args, write, rows):
    for name in args.solve_cells:
        make, fields, _ = CELLS[name]
        for H in args.solve_hidden:
            for T in args.solve_lengths:
                row = {"table": "solve", "cell": name, "H": H, "T": T, "B": args.batch}
                x = jax.random.normal(jax.random.key(1), (args.batch, T, args.input_size))
                params = RNN(make(H)).init(jax.random.key(0), args.input_size)
                programs = {}
                for path in ("fused" if name != "paragru" else "autodiff", "newton", "quasi_newton"):
                    D = fields * H
                    if path == "newton" and T * args.batch * D * D * 4 / 2**30 > args.max_jacobian_gib:
                        row["newton_skipped"] = "Jacobians > --max-jacobian-gib"
                        continue
                    layer = RNN(make(H), path=path)
                    info = path in newton.NEWTON_PATHS
                    run = jax.jit(lambda p, x, layer=layer, info=info: layer.apply(p, x, return_info=info))
                    out = jax.block_until_ready(run(params, x))
                    if info:
                        row[f"{path}_iterations"] = int(jnp.max(out[2][0].iterations))
                    programs["sequential" if path in ("fused", "autodiff") else path] = lambda run=run: (
                        jax.block_until_ready(run(params, x))
                    )
                record(row, programs, args.repeats, rows, write)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["gru", "lstm"], choices=["gru", "lstm"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--solve-cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    parser.add_argument("--solve-lengths", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--solve-hidden", type=int, nargs="+", default=[2, 16])
    parser.add_argument("--input-size", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-jacobian-gib", type=float, default=2.0)
    parser.add_argument("--max-jacfwd-work", type=float, default=3e12)
    parser.add_argument("--skip-iteration", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    def write(rows):
        if args.out:
            meta = {"jax": jax.__version__, "device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
                    "dtype": "float32", "load_average_at_write": os.getloadavg(), "batch": args.batch, "input_size": args.input_size, "repeats": args.repeats}  # fmt: skip
            with open(args.out, "w") as f:
                json.dump({"meta": meta, "rows": rows}, f, indent=1)

    rows = [] if args.skip_iteration else iteration_table(args, write)
    solve_table(args, write, rows)


if __name__ == "__main__":
    main()
