"""Side by side in one process: the working tree's rnnlab against an earlier commit's, on the
hot path (one layer's forward, and forward+backward of the default path).

The earlier version is exported from git (``git archive REF rnnlab``) into a temporary folder
and imported as ``rnnlab_before`` (its imports rewritten), so both run in the same process,
interleaved in every repeat (``bench_layers.median_times``): the machine's noise hits both.

    python benchmarks/bench_versions.py --ref 345fbb9 --cells lstm --out benchmarks/results_versions_cpu.json

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
import tarfile
import tempfile

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
from bench_layers import SHAPES, median_times  # noqa: E402

ROOT = pathlib.Path(__file__).parents[1]


def import_version(ref: str, folder: pathlib.Path):
    """``rnnlab`` as of git ``ref``, imported as the package ``rnnlab_before``."""
    archive = subprocess.run(["git", "archive", ref, "rnnlab"], cwd=ROOT, capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(folder, filter="data")
    package = folder / "rnnlab_before"
    (folder / "rnnlab").rename(package)
    for path in package.rglob("*.py"):
        text = re.sub(r"\b(from|import) rnnlab\b", r"\1 rnnlab_before", path.read_text())
        path.write_text(text)
    sys.path.insert(0, str(folder))
    return importlib.import_module("rnnlab_before"), importlib.import_module("rnnlab_before.zoo")


def fns(rnnlab, zoo, cell_name, B, T, I, H):
    layer = rnnlab.RNN(zoo.make_cell(cell_name, H))
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    fwd = jax.jit(lambda p, x: layer.apply(p, x)[0])
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x)[0]), argnums=(0, 1)))
    return (lambda: jax.block_until_ready(fwd(params, x))), (lambda: jax.block_until_ready(grad(params, x)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="the earlier commit (e.g. 345fbb9)")
    parser.add_argument("--cells", nargs="+", default=["lstm"], choices=["lstm", "gru", "rnn"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import rnnlab
    import rnnlab.zoo

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        before, before_zoo = import_version(args.ref, pathlib.Path(tmp))
        for cell_name in args.cells:
            for B, T, I, H in SHAPES:
                (bf, bg), (af, ag) = (
                    fns(before, before_zoo, cell_name, B, T, I, H),
                    fns(rnnlab, rnnlab.zoo, cell_name, B, T, I, H),
                )
                t = median_times({"before_fwd": bf, "after_fwd": af, "before_grad": bg, "after_grad": ag}, args.repeats)
                row = {"cell": cell_name, "shape": [B, T, I, H], **t}
                row["ratio_fwd"], row["ratio_grad"] = (
                    t["after_fwd"] / t["before_fwd"],
                    t["after_grad"] / t["before_grad"],
                )
                rows.append(row)
                print(
                    f"{cell_name} (B, T, I, H) = {(B, T, I, H)}: forward {t['before_fwd'] * 1e3:.1f} -> "
                    f"{t['after_fwd'] * 1e3:.1f} ms ({row['ratio_fwd']:.2f}x), forward+backward "
                    f"{t['before_grad'] * 1e3:.1f} -> {t['after_grad'] * 1e3:.1f} ms ({row['ratio_grad']:.2f}x)",
                    flush=True,
                )
    if args.out:
        meta = {"ref": args.ref, "jax": jax.__version__, "machine": platform.processor() or platform.machine()}
        meta |= {"cpus": os.cpu_count(), "repeats": args.repeats}
        pathlib.Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
