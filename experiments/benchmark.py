"""One fair benchmark for long-range memory: every task and every model under one protocol.

The question: given the same data budget (sequences seen) and the same number of parameters,
which recurrent models learn to remember, and how quickly?  A comparison answers it only if
every model gets the same care: its hidden size matched to the parameter target (±10%), its
learning rate chosen on a validation set from a grid that grows past an edge where the best rate
sits, up to --lr-grow points (a rate still at an edge is flagged), clipping tried on and off
(unless --clip fixes it), >= 3 seeds, the test metric at the validation-selected step and at the
last, and the steps to the memoryless reference (fitted on training data) and to "solved".
``rnnlab.protocol`` holds these rules, ``rnnlab.tasks`` the tasks, ``rnnlab.zoo`` the models: a
cell registered with ``zoo.register`` takes part by name.

Tasks (``name:key=value,...``): ``adding:T=``, ``copy:T=`` (T: the delay), ``selective_copy:T=``
(Gu & Dao 2023 section 4.1, scaled down from T = 4096 and 16 tokens to T and 8 tokens),
``mqar:T=,pairs=`` (zoology's associative recall, small), ``mnist1d``, ``mnist1d:shuffled=1``,
``pixel_mnist``, ``psmnist`` (``data_dir=`` local files, else the Hugging Face Hub).

    python experiments/benchmark.py                          # the defaults: every family, 10k parameters, 16k sequences
    python experiments/benchmark.py --tasks copy:T=200 selective_copy:T=200 mnist1d --models lstm gru lru \\
        --params 20k --budget 64k
    python experiments/benchmark.py --quick                  # CI: two small tasks, three models

The committed leaderboard (docs/benchmark.md, docs/results/benchmark.json's ``command``) is
smaller than the defaults:

    python experiments/benchmark.py --tasks copy:T=50 selective_copy:T=50 adding:T=100 mnist1d \\
        mnist1d:shuffled=1 --params 10k --budget 3200 --batch-size 16 --lr-min 2e-3 --lr-max 2e-2 \\
        --lr-grow 1 --clip norm:1 --eval-every 40 --checkpoint-every 40 --out runs/benchmark

Writes results.json (results_partial.json after every pair), leaderboard.md and one figure of
learning curves per task to --out; ``--resume`` continues a stopped run.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from rnnlab import parallel, protocol, tasks, zoo
from rnnlab.experiment import (
    ConfigError,
    PerModelConfig,
    RunDir,
    cli,
    model_path,
    option,
    parse_config,
    refuse_unused,
    setup,
    write_json,
)
from rnnlab.experiment.models import cell_options
from rnnlab.validation import InputError

FAMILIES = ("rnn", "irnn", "lstm", "lstm_chrono", "gru", "exprnn", "indrnn", "cornn", "lru", "mingru", "minlstm")


@dataclasses.dataclass
class Config(PerModelConfig):
    out: str = "runs/benchmark"
    # copy and selective copy at T = 100, adding at T = 200, MNIST-1D in both orders
    tasks: tuple[str, ...] = ("copy:T=100", "selective_copy:T=100", "adding:T=200", "mnist1d", "mnist1d:shuffled=1")
    models: tuple[str, ...] = FAMILIES  # any name in rnnlab.zoo.MODELS, yours included
    params: str = "10k"  # the parameter target (k, M suffixes); each model's H is matched to it
    budget: str = "16k"  # sequences seen per run, the same for every model
    batch_size: int = option(32, ge=1)
    seeds: int = option(3, ge=3)
    lr_min: float = option(1e-3, gt=0.0)
    lr_max: float = option(1e-2, gt=0.0)
    lr_points: int = option(3, ge=1)
    lr_grow: int = option(2, ge=0)  # the most points the grid grows by past an edge
    clip: str = "sweep"  # sweep (off and global norm 1, an axis), off, or norm:X
    eval_every: int = option(0, ge=0)  # validation every k steps; 0: a tenth of the run
    checkpoint_every: int = option(100, ge=0)

    def apply_quick(self):
        self.tasks, self.models = ("copy:T=10,validation_size=64,test_size=64", "mnist1d"), ("lstm", "gru", "lru")
        self.params, self.budget, self.lr_points, self.lr_grow, self.eval_every = "1k", "640", 2, 0, 5

    def check(self):
        super().check()
        refuse_unused(self, {"steps": (False, "--budget sets the steps (budget / batch size)")})
        if self.clip != "sweep" and self.clip != "off" and not self.clip.startswith("norm:"):
            raise ConfigError(f"--clip is sweep, off or norm:X, got {self.clip!r}")

    def clip_norms(self) -> tuple[float, ...]:
        if self.clip == "sweep":
            return (0.0, 1.0)
        if self.clip == "off":
            return (0.0,)
        try:
            value = float(self.clip.partition(":")[2])
        except ValueError:
            value = -1.0
        if not value > 0:
            raise InputError(f"--clip norm:X needs X > 0, got {self.clip!r}")
        return (value,)


def plan(cfg: Config):
    """Everything the run will do, checked before its folder is touched: the protocol, the
    tasks and every (task, model)'s matched hidden size.  Each refusal is one line."""
    unknown = [m for m in cfg.models if m not in zoo.MODELS]
    if unknown:
        raise InputError(
            f"unknown model {unknown[0]!r}; choose from rnnlab.zoo.MODELS: {', '.join(zoo.MODELS)} "
            "(a cell of your own: zoo.register it in the script that runs this one, docs/extending.md)"
        )
    settings = protocol.Protocol(
        budget=protocol.parse_count(cfg.budget, "--budget"),
        batch_size=cfg.batch_size,
        params=protocol.parse_count(cfg.params, "--params"),
        seeds=cfg.seeds,
        lr_min=cfg.lr_min,
        lr_max=cfg.lr_max,
        lr_points=cfg.lr_points,
        lr_grow=cfg.lr_grow,
        clip_norms=cfg.clip_norms(),
        eval_every=cfg.eval_every,
        seed=cfg.seed,
    )
    chosen = [tasks.parse(spec) for spec in cfg.tasks]
    specs = {}
    for task in chosen:
        task.batch_size_check(cfg.batch_size)
        for name in cfg.models:
            options, path = cell_options(cfg, name), model_path(cfg, name)
            count = lambda H: protocol.count_params(task, protocol.spec_of(name, H, options, path))
            try:
                hidden, _ = protocol.match_hidden(count, settings.params)
            except InputError as e:
                raise InputError(f"{name} on {task.spec}: {e}") from None
            specs[task.spec, name] = protocol.spec_of(name, hidden, options, path)
            protocol.count_params(task, specs[task.spec, name], check_apply=True)
    return settings, chosen, specs


def describe(pair: dict, task: tasks.Task) -> str:
    """One pair's line on the console."""
    fmt = lambda s: f"{s['median']:.3g} [{s['q25']:.3g}, {s['q75']:.3g}]"
    steps = lambda seeds: ", ".join("—" if s is None else str(s) for s in seeds)  # per seed; —: never
    edge = {None: "", "one": " (one rate: not tuned)"}.get(pair["lr_edge"], f" (at the {pair['lr_edge']} edge)")
    return (
        f"H={pair['hidden']} ({pair['parameters']} params), lr {pair['learning_rate']:.2g}{edge}, clip "
        f"{pair['clip_norm']:g}: test {task.metric} {fmt(pair['test_selected'])} at the selected step, "
        f"{fmt(pair['test_final'])} at the last; steps to the memoryless reference per seed "
        f"{steps(pair['steps_to_memoryless'])}, to solved {steps(pair['steps_to_solved'])}"
    )


def main(argv=None):
    typed = sys.argv[1:] if argv is None else list(argv)
    cfg = setup(parse_config(Config, typed, __doc__))
    settings, chosen, specs = plan(cfg)  # every refusal comes before the run folder is touched
    run = RunDir(cfg)
    partial_path = run.path / "results_partial.json"
    done = {}
    if cfg.resume and partial_path.exists():  # pairs a stopped run finished: kept as they are
        done = protocol.read_json(partial_path)["pairs"]
    results = {
        "command": " ".join(["python", "experiments/benchmark.py", *(a for a in typed if a != "--resume")]),
        "protocol": settings.as_dict(),
        "tasks": {task.spec: protocol.task_summary(task) for task in chosen},
        "models": {m: {"label": zoo.label(m, t_max="T"), "description": zoo.MODELS[m].description} for m in cfg.models},
        "pairs": {task.spec: {} for task in chosen},
    }
    started = time.perf_counter()
    with parallel.CompileStats() as compile_stats:
        for task in chosen:  # a task at a time: a finished column compares every model
            for name in cfg.models:
                pair = done.get(task.spec, {}).get(name)
                if pair is None:
                    pair = protocol.run_pair(run, cfg, settings, task, specs[task.spec, name])
                results["pairs"][task.spec][name] = pair
                if run.writes:
                    write_json(partial_path, results)
                    if not cfg.quiet:
                        print(f"{task.spec} {name}: {describe(pair, task)}", flush=True)
    results["wall_time_s"] = time.perf_counter() - started  # this session's
    results["totals"] = protocol.totals(results)
    return run.finish(results, compile_stats, lambda: save_outputs(cfg, run, results))


def save_outputs(cfg: Config, run: RunDir, results: dict) -> None:
    """leaderboard.md and the learning curves of every task."""
    (run.path / "leaderboard.md").write_text(protocol.render(results))
    for task in results["pairs"]:
        run.save_figure(protocol.curves_figure(results, task), f"curves_{protocol.slug(task)}")
    if not cfg.quiet:
        print(f"wrote {run.path}/results.json, leaderboard.md and the curves")


if __name__ == "__main__":
    cli(main)
