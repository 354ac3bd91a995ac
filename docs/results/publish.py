"""Copy a run's results.json into docs/results/, the numbers the README and
docs/reproductions.md quote (tests/test_docs_numbers.py checks them against it).

    python experiments/vanishing_gradients.py --out runs/vanishing_gradients
    python docs/results/publish.py runs/vanishing_gradients docs/results/vanishing_gradients.json

What a clock measures (compile statistics, run time) is dropped, so the file changes
only when the numbers do; so are the per-step curves (``--drop``: the figures show them,
and they are most of the file's size).  The run's config goes in beside the results, so
the file says how to make it again.

    python docs/results/publish.py --refresh-references docs/results/benchmark.json

recomputes, in place and without training, a benchmark file's memoryless references as
``rnnlab.tasks`` fits them now and each pair's steps to them from its stored validation
curves (``rnnlab.protocol.refresh_references``; the file records the rule and what it replaced).
"""

from __future__ import annotations

import argparse
import json
import pathlib

CLOCK = ("compile", "runtime_s")


def published(run: pathlib.Path, drop: tuple[str, ...] = ()) -> dict:
    results = json.loads((run / "results.json").read_text())
    config = json.loads((run / "config.json").read_text())
    config.pop("out", None)
    kept = {k: v for k, v in results.items() if k not in CLOCK + tuple(drop)}
    return {**kept, "config": config}


def refresh_references(path: pathlib.Path) -> None:
    """Rewrite the benchmark results file ``path`` with its references refreshed."""
    from rnnlab import protocol

    results = protocol.refresh_references(json.loads(path.read_text()))
    path.write_text(json.dumps(results, indent=1) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=pathlib.Path, nargs="?", help="the run's --out folder")
    parser.add_argument("dest", type=pathlib.Path, nargs="?", help="the file under docs/results/")
    parser.add_argument("--drop", nargs="*", default=[], help="results keys to leave out (large per-step curves)")
    parser.add_argument(
        "--refresh-references",
        type=pathlib.Path,
        metavar="FILE",
        help="a committed benchmark file: recompute its memoryless references and steps to them, no training",
    )
    args = parser.parse_args(argv)
    if args.refresh_references is not None:
        if args.run is not None or args.dest is not None or args.drop:
            parser.error("--refresh-references FILE takes no run folder, destination or --drop")
        path = args.refresh_references
        try:
            results = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            parser.error(f"{path} is not a readable JSON file ({e})")
        if not all(key in results for key in ("tasks", "pairs")):
            parser.error(f"{path} is not a benchmark results file (no tasks and pairs)")
        refresh_references(path)
        print(f"refreshed the memoryless references of {path}")
        return
    if args.run is None or args.dest is None:
        parser.error("give the run's folder and the destination file (or --refresh-references FILE)")
    for name in ("results.json", "config.json"):
        path = args.run / name
        if not path.is_file():
            parser.error(f"{args.run} holds no {name}: is it a finished run's --out folder?")
        try:
            json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            parser.error(f"{path} is not JSON ({e})")
    if not args.dest.parent.is_dir():
        parser.error(f"the folder of {args.dest} does not exist")
    args.dest.write_text(json.dumps(published(args.run, tuple(args.drop)), indent=1) + "\n")
    print(f"wrote {args.dest}")


if __name__ == "__main__":
    main()
