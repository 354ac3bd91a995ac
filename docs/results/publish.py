"""Copy a run's results.json into docs/results/, the numbers the README and
docs/reproductions.md quote (tests/test_docs_numbers.py checks them against it).

    python experiments/vanishing_gradients.py --out runs/vanishing_gradients
    python docs/results/publish.py runs/vanishing_gradients docs/results/vanishing_gradients.json

What a clock measures (compile statistics, run time) is dropped, so the file changes
only when the numbers do; so are the per-step curves (``--drop``: the figures show them,
and they are most of the file's size).  The run's config goes in beside the results, so
the file says how to make it again.
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=pathlib.Path, help="the run's --out folder")
    parser.add_argument("dest", type=pathlib.Path, help="the file under docs/results/")
    parser.add_argument("--drop", nargs="*", default=[], help="results keys to leave out (large per-step curves)")
    args = parser.parse_args(argv)
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
