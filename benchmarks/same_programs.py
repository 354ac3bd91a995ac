"""Whether a refactor changed the compiled programs: the lowered StableHLO of one layer's
forward+backward, the working tree's rnnlab against an earlier commit's (``bench_versions``'
import), per cell and path.  Identical text means identical programs, so no timing can differ
but by noise: the check that holds on a machine too loaded to time.

    python benchmarks/same_programs.py --ref 676c3e7

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import sys
import tempfile

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(__file__))
from bench_versions import import_version  # noqa: E402


def program_text(package, zoo, name: str, path: str | None, backward: bool) -> str:
    """The StableHLO of ``layer.apply`` (``backward``: of ``grad(sum(layer.apply))``) for model ``name``
    on ``path``, locations stripped."""
    cell = zoo.make_cell(name, 16, t_max=20) if zoo.MODELS[name].needs_t_max else zoo.make_cell(name, 16)
    layer = package.RNN(cell) if path is None else package.RNN(cell, path=path)
    params, x = layer.init(jax.random.key(0), 3), jnp.ones((4, 20, 3))
    forward = lambda p, x: layer.apply(p, x)[0]
    fn = jax.jit(jax.grad(lambda p, x: jnp.sum(forward(p, x)), argnums=(0, 1)) if backward else forward)
    return re.sub(r"loc\(.*?\)|#loc\d*|metadata=\{.*?\}", "", fn.lower(params, x).as_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="the earlier commit")
    parser.add_argument("--models", nargs="+", default=["rnn", "lstm", "gru", "indrnn", "cornn"])
    args = parser.parse_args()
    import rnnlab
    import rnnlab.zoo

    with tempfile.TemporaryDirectory() as tmp:
        before, before_zoo = import_version(args.ref, pathlib.Path(tmp))
        for name in args.models:
            for path in (None, "autodiff", "remat"):
                for backward in (False, True):
                    text = lambda package, zoo: program_text(package, zoo, name, path, backward)
                    same = text(before, before_zoo) == text(rnnlab, rnnlab.zoo)
                    what = "forward+backward" if backward else "forward"
                    print(f"{name:7s} {path or 'default':9s} {what:16s} {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
