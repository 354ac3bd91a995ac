"""The copy task at T = 1000, compared fairly: every model gets the same learning-rate sweep,
steps, batch and data, and the LRU's advantages are ablated one at a time.

The first T = 1000 comparison (``copy_memory.py --models lru lstm``, docs/reproductions.md
section 6) set a 102k-parameter LRU, with a ring of eigenvalues placed at T and a learning rate
found by probing it, against an untuned 40-unit LSTM of 8.7k parameters.  Here:

- ``lstm``: an LSTM of 150 units (98,710 parameters, the LRU's ~100k), forget bias 1;
- ``lstm_chrono``: the same with chrono initialisation, T_max = 3T/2 (Tallec & Ollivier 2018, §5);
- ``lru``: the LRU block of section 6, 128 units, ring ``|λ| in [0.999, 0.9999]``;
- ``lru_H40``: the same at 40 units (the LSTM of the uRNN comparison's width);
- ``lru_ring_0_1``: 128 units with the default ring ``[0, 1]`` (no timescale given);
- ``lru_no_gamma``: 128 units, ring ``[0.999, 0.9999]``, without the γ normalisation
  (Orvieto et al. 2023, §3.3).

Each variant trains at every ``--learning-rate`` x ``--seeds`` as one program
(``copy_memory.py``) and keeps the rate whose median loss on a validation stream is lowest; the
test stream then gives its held-out loss, recall cross-entropy (memoryless ln 8) and recall
accuracy (chance 1/8).  No clipping for any model (Adam; the LRU's recipe of section 6).

    python experiments/copy_memory_fair.py                 # about 35 minutes on 2 CPU cores
    python experiments/copy_memory_fair.py --resume        # continue an interrupted run
    python experiments/copy_memory_fair.py --quick         # T = 10, a minute

Writes ``<out>/<variant>/`` (each variant's own copy_memory run folder), then ``results.json``
(``parameters[variant]``, ``learning_rates``, ``chosen_learning_rate[variant]``, ``final_loss``,
``recall_loss``, ``recall_accuracy``, ``wall_time_s``, each variant's run) and
``learning_curves.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import textwrap

import copy_memory

from rnnlab import plots
from rnnlab.experiment.rundir import metric_curve, write_json
from rnnlab.sweep import grid, rows_where

# variant -> (model of the zoo, hidden units, its --cell-options)
VARIANTS = {
    "lstm": ("lstm", 150, ""),
    "lstm_chrono": ("lstm_chrono", 150, "t_max:{t_max}"),
    "lru": ("lru", 128, "r_min:0.999,r_max:0.9999"),
    "lru_H40": ("lru", 40, "r_min:0.999,r_max:0.9999"),
    "lru_ring_0_1": ("lru", 128, ""),
    "lru_no_gamma": ("lru", 128, "r_min:0.999,r_max:0.9999,gamma_normalization:0"),
}
LABELS = {
    "lstm": "LSTM, forget bias 1",
    "lstm_chrono": "LSTM, chrono init, T_max = 3T/2",
    "lru": "LRU, ring [0.999, 0.9999]",
    "lru_H40": "LRU, ring [0.999, 0.9999]",
    "lru_ring_0_1": "LRU, ring [0, 1]",
    "lru_no_gamma": "LRU, ring [0.999, 0.9999], no γ normalisation",
}
COLORS = {  # the LSTMs in reds, the LRU and its ablations in blues and greys
    "lstm": "tab:red",
    "lstm_chrono": "tab:orange",
    "lru": "black",
    "lru_H40": "tab:blue",
    "lru_ring_0_1": "tab:cyan",
    "lru_no_gamma": "tab:gray",
}
PER_VARIANT = ("final_loss", "recall_loss", "recall_accuracy", "chosen_learning_rate", "learning_rate_sweep")


def variant_argv(variant: str, args, out: pathlib.Path) -> list[str]:
    model, hidden, options = VARIANTS[variant]
    hidden = args.quick_hidden or hidden
    argv = ["--lengths", str(args.length), "--models", model, "--hidden", str(hidden), "--seeds", str(args.seeds)]
    argv += ["--steps", str(args.steps), "--batch-size", str(args.batch_size), "--optimizer", "adam", "--clip", "off"]
    argv += ["--learning-rate", *map(str, args.learning_rate), "--out", str(out / variant)]
    argv += ["--test-size", str(args.test_size), "--log-every", str(args.log_every)]
    options = options.format(t_max=3 * args.length // 2)
    if options:
        argv += ["--cell-options", f"{model}={options}"]
    return argv + (["--resume"] if args.resume else []) + (["--quiet"] if args.quiet else [])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/copy_memory_fair"))
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    parser.add_argument("--test-size", type=int, default=256)
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--quick", action="store_true", help="T = 10, 30 steps, 8 units: a look at the plumbing")
    args = parser.parse_args(argv)
    args.quick_hidden = None
    if args.quick:
        args.length, args.steps, args.test_size, args.log_every, args.quick_hidden = 10, 30, 32, 10, 8
    for name in ("length", "steps", "batch_size", "seeds", "test_size", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    args.out.mkdir(parents=True, exist_ok=True)

    T, merged = str(args.length), {}
    for variant in args.variants:
        copy_memory.main(variant_argv(variant, args, args.out))
        merged[variant] = json.loads((args.out / variant / "results.json").read_text())
    first = next(iter(merged.values()))
    results = {
        "length": args.length,
        "steps": args.steps,
        "seeds": args.seeds,
        "batch_size": args.batch_size,
        "optimizer": "adam",
        "clip": "off",
        "learning_rates": list(args.learning_rate),
        "baseline": first["baseline"][T],
        "recall_baseline": first["recall_baseline"],
        "recall_chance_accuracy": first["recall_chance_accuracy"],
        "variants": {v: {"model": VARIANTS[v][0], "label": LABELS[v]} for v in merged},
        "parameters": {v: r["parameters"][VARIANTS[v][0]] for v, r in merged.items()},
        "hidden": {v: r["hidden"][VARIANTS[v][0]] for v, r in merged.items()},
        "cell_options": {v: r["cell_options"][VARIANTS[v][0]] for v, r in merged.items()},
        **{key: {v: r[key][VARIANTS[v][0]][T] for v, r in merged.items()} for key in PER_VARIANT},
        "wall_time_s": {v: r["wall_time_s"][VARIANTS[v][0]][T] for v, r in merged.items()},
        "gradient_norms": {v: r["gradient_norms"][VARIANTS[v][0]][T] for v, r in merged.items()},
        "devices": first["devices"],
    }
    config = {k: str(v) if isinstance(v, pathlib.Path) else v for k, v in vars(args).items() if k != "quick_hidden"}
    write_json(args.out / "config.json", config)  # how to make the results again (docs/results/publish.py keeps it)
    write_json(args.out / "results.json", results)
    save_figure(args, results)
    print(f"wrote {args.out / 'results.json'}")
    return results


def save_figure(args, results: dict) -> None:
    rows = (
        ("loss", "cross-entropy, nats per step", results["baseline"], "memoryless baseline", "log"),
        ("recall_loss", "recall cross-entropy (10 answer steps)", results["recall_baseline"], "memoryless ln 8", "log"),
        ("recall_accuracy", "recall accuracy", results["recall_chance_accuracy"], "chance 1/8", "linear"),
    )
    fig, axes = plots.panels(len(rows), width=6.2, height=4.6, sharey=False)
    for ax, (key, ylabel, baseline, baseline_label, yscale) in zip(axes, rows):
        curves, colors = {}, {}
        for variant in results["variants"]:
            model = VARIANTS[variant][0]
            lr = results["chosen_learning_rate"][variant]
            steps, values_sn = metric_curve(args.out / variant / "metrics.jsonl", f"{model}/T{args.length}", key)
            points = grid(learning_rate=tuple(args.learning_rate), seed=range(args.seeds))  # copy_memory's rows
            name = (
                f"{results['variants'][variant]['label']} (H={results['hidden'][variant]}, "
                f"{results['parameters'][variant]:,} params, lr {lr:g})"
            )
            curves[name] = steps, values_sn[rows_where(points, learning_rate=lr)]
            colors[name] = COLORS[variant]
        plots.learning_curves(
            curves,
            colors=colors,
            ax=ax,
            baseline=baseline,
            baseline_label=baseline_label,
            ylabel=ylabel,
            title=f"T = {args.length}, training batches",
            yscale=yscale,
        )
        ax.legend(fontsize=6)
    title = (
        f"Copy memory T = {args.length}, every model at its best Adam learning rate of "
        f"{'/'.join(f'{lr:g}' for lr in args.learning_rate)} (validation set), batch {args.batch_size}, "
        f"{args.steps} steps, no clipping, {args.seeds} seed{'s' if args.seeds > 1 else ''} per rate"
    )
    fig.suptitle(textwrap.fill(title, 160), fontsize=9)
    fig.savefig(args.out / "learning_curves.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main() and 0)
