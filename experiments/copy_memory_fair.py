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

import dataclasses
import json
import pathlib
import textwrap

import copy_memory

from rnnlab import plots
from rnnlab.experiment import BaseConfig, ConfigError, RunDir, cli, flag, option, parse_config, setup
from rnnlab.experiment.rundir import metric_curve
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
PER_VARIANT = ("final_loss", "recall_loss", "recall_accuracy", "chosen_learning_rate", "learning_rate_sweep")
# flags every variant's copy_memory run takes as they are (--quiet and --resume are added as given)
PASSED_ON = ("seed", "checkpoint_every", "keep_checkpoints", "compile_cache")


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/copy_memory_fair"
    length: int = option(1000, ge=1)
    steps: int = option(600, ge=1)
    batch_size: int = option(32, ge=1)
    seeds: int = option(1, ge=1)
    learning_rate: tuple[float, ...] = option((1e-3, 3e-3, 1e-2), gt=0.0)
    test_size: int = option(256, ge=1)
    log_every: int = option(20, ge=1)
    variants: tuple[str, ...] = option(tuple(VARIANTS), choices=tuple(VARIANTS))
    hidden: int | None = option(None, ge=2)  # every variant at this width; unset: each its own (150, 128, 40)
    checkpoint_every: int = option(0, ge=0)

    def apply_quick(self):
        """T = 10, 30 steps, 8 units: a look at the plumbing (a typed flag still wins)."""
        self.length, self.steps, self.test_size, self.log_every, self.hidden = 10, 30, 32, 10, 8

    def memory_needs(self):
        widest = self.hidden or max(hidden for _, hidden, _ in (VARIANTS[v] for v in self.variants))
        runs = copy_memory.Config(lengths=(self.length,), learning_rate=self.learning_rate, seeds=self.seeds)
        runs.batch_size, runs.test_size = self.batch_size, self.test_size
        what = f"{len(self.learning_rate) * self.seeds} points at T = {self.length}"
        return [
            (
                ("length", "learning_rate", "seeds", "batch_size", "test_size"),
                what,
                copy_memory.copy_bytes(runs, widest),
            )
        ]

    def check(self):
        super().check()
        if self.num_processes not in (None, 1) or self.coordinator_address:
            raise ConfigError("copy_memory_fair.py runs in one process; run copy_memory.py per variant for more")


def variant_argv(variant: str, cfg: Config, out: pathlib.Path) -> list[str]:
    model, hidden, options = VARIANTS[variant]
    hidden = cfg.hidden or hidden
    argv = ["--lengths", str(cfg.length), "--models", model, "--hidden", str(hidden), "--seeds", str(cfg.seeds)]
    argv += ["--steps", str(cfg.steps), "--batch-size", str(cfg.batch_size), "--optimizer", "adam", "--clip", "off"]
    argv += ["--learning-rate", *map(str, cfg.learning_rate), "--out", str(out / variant)]
    argv += ["--test-size", str(cfg.test_size), "--log-every", str(cfg.log_every)]
    for name in PASSED_ON:
        argv += [flag(name), str(getattr(cfg, name))]
    options = options.format(t_max=3 * cfg.length // 2)
    if options:
        argv += ["--cell-options", f"{model}={options}"]
    return argv + (["--resume"] if cfg.resume else []) + (["--quiet"] if cfg.quiet else [])


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run = RunDir(cfg)  # the lock (a second run into --out is refused naming the holder), config.json, --resume
    out = run.path
    for variant in cfg.variants:  # each its own copy_memory run folder, checked before anything trains
        copy_memory.parse_config(copy_memory.Config, variant_argv(variant, cfg, out))

    T, merged = str(cfg.length), {}
    for variant in cfg.variants:
        copy_memory.main(variant_argv(variant, cfg, out))
        merged[variant] = json.loads((out / variant / "results.json").read_text())
    first = next(iter(merged.values()))
    results = {
        "length": cfg.length,
        "steps": cfg.steps,
        "seeds": cfg.seeds,
        "batch_size": cfg.batch_size,
        "optimizer": "adam",
        "clip": "off",
        "learning_rates": list(cfg.learning_rate),
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
    run.write_results(results)
    save_figure(cfg, run, results)
    if not cfg.quiet:
        print(f"wrote {run.results_path}")
    return results


def save_figure(cfg: Config, run: RunDir, results: dict) -> None:
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
            steps, values_sn = metric_curve(run.path / variant / "metrics.jsonl", f"{model}/T{cfg.length}", key)
            points = grid(learning_rate=cfg.learning_rate, seed=range(cfg.seeds))  # copy_memory's rows
            name = (
                f"{results['variants'][variant]['label']} (H={results['hidden'][variant]}, "
                f"{results['parameters'][variant]:,} params, lr {lr:g})"
            )
            curves[name] = steps, values_sn[rows_where(points, learning_rate=lr)]
            colors[name] = plots.variant_colors({v: VARIANTS[v][0] for v in VARIANTS})[variant]
        plots.learning_curves(
            curves,
            colors=colors,
            ax=ax,
            baseline=baseline,
            baseline_label=baseline_label,
            ylabel=ylabel,
            title=f"T = {cfg.length}, training batches",
            yscale=yscale,
        )
        ax.legend(fontsize=6)
    title = (
        f"Copy memory T = {cfg.length}, every model at its best Adam learning rate of "
        f"{'/'.join(f'{lr:g}' for lr in cfg.learning_rate)} (validation set), batch {cfg.batch_size}, "
        f"{cfg.steps} steps, no clipping, {cfg.seeds} seed{'s' if cfg.seeds > 1 else ''} per rate"
    )
    fig.suptitle(textwrap.fill(title, 160), fontsize=9)
    run.save_figure(fig, "learning_curves", dpi=120)


if __name__ == "__main__":
    cli(main)
