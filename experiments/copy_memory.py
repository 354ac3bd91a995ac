"""The copying-memory problem (Arjovsky, Shah & Bengio 2016): what vanishing gradients cost
on a task that needs memory, and which remedies pay it back.

Each sequence is 10 symbols from an alphabet of 8, then T-1 blanks, a delimiter and
10 more blanks during which the model must output the 10 symbols (length T+20), fed as
one-hot vectors.  The loss is the cross-entropy in nats averaged over all T+20 steps; a
model that outputs blanks and then guesses the symbols uniformly scores the memoryless
baseline ``10 ln 8 / (T + 20)``.

The default run is the uRNN paper's comparison at T = 100 with its parameter-matched sizes
(tanh RNN 80 units, LSTM 40, clipped elementwise at 1 as its authors clip them) against
expRNN as its authors train it (128 units; modReLU, no biases, RMSprop with alpha 0.99, the
orthogonal generator at a tenth of the learning rate, no clipping).  Any named model of
``rnnlab.zoo`` takes part: lstm_chrono, gru_chrono, irnn, rnn_orthogonal, exprnn_tanh, ...

Seeds of a (model, T) train as one program (``rnnlab.sweep``).  results.json gives the
baseline and each model's held-out loss (median, IQR over seeds); the figures are the
learning curves and, at initialisation and after training, ||dL_recall/dh_t|| for every t:
how much of the gradient of the last 10 steps' loss (recalling the symbols) reaches
each hidden state, back to the symbols at t < 10.

    python experiments/copy_memory.py                    # T = 100: rnn, lstm, exprnn; 6 minutes on 2 CPU cores
    python experiments/copy_memory.py --lengths 100 200 300 500 --models rnn lstm exprnn --batch-size 20 --steps 20000
    # the expRNN paper's T = 1000 (and 2000) run: lezcano/expRNN 1_copying.py -m exprnn --L 1000 --hidden_size 190
    python experiments/copy_memory.py --lengths 1000 --models exprnn --hidden 190 --learning-rate 2e-4 \
        --orthogonal-learning-rate 2e-5 --steps 4000 --seeds 1
"""

from __future__ import annotations

import dataclasses
import functools
import math
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import parallel, plots
from rnnlab.data import synthetic
from rnnlab.diagnostics import hidden_gradient_norms
from rnnlab.experiment import RunDir, cli, option, parse_config, refuse_unused, setup, train_sweep
from rnnlab.experiment.models import PerModelConfig, clip_of, clip_written, model_hidden, model_spec, optimizer_rules
from rnnlab.linen import LanguageModel, constrain_recurrent
from rnnlab.protocol import choose_on_validation
from rnnlab.sweep import Sweep, grid, init_params, rows_where, training_bytes
from rnnlab.tasks import Copy
from rnnlab.train import OPTIMIZERS, OptimConfig, make_optimizer
from rnnlab.zoo import MODELS, label


@dataclasses.dataclass
class Config(PerModelConfig):
    out: str = "runs/copy_memory"
    lengths: tuple[int, ...] = option((100,), ge=1)
    models: tuple[str, ...] = option(("rnn", "lstm", "exprnn"), choices=tuple(MODELS))
    hidden: int = option(128, ge=2)
    # MODEL=H overrides --hidden; the default is the uRNN paper's parameter-matched sizes, and a
    # typed --hidden replaces it (PerModelConfig.apply_explicit: a default never beats what was typed)
    model_hidden: tuple[str, ...] = ("rnn=80", "lstm=40")
    seeds: int = option(3, ge=1)
    batch_size: int = option(128, ge=1)
    steps: int = option(1000, ge=1)
    optimizer: str = option("rmsprop", choices=OPTIMIZERS)
    # a sweep axis: with several values every model trains at each (x seeds, one program) and
    # keeps the one whose median loss on a validation stream is lowest (the same sweep for all)
    learning_rate: tuple[float, ...] = option((1e-3,), gt=0.0)
    # expRNN's orthogonal generators (a_hh) train at their own rate: its authors' README says lr / 10;
    # under a --learning-rate sweep the generators keep this rate's ratio to the first value
    orthogonal_learning_rate: float = option(1e-4, gt=0.0)
    rmsprop_decay: float = option(0.99, ge=0.0, lt=1.0)  # torch's alpha, as in lezcano/expRNN
    clip: str = "off"  # off, norm:X (global norm) or value:X (each entry to ±X)
    # MODEL=RULE overrides --clip; the default clips the tanh RNN and the LSTM as the uRNN authors did
    # (replaced, like --model-hidden's default, by a typed --clip)
    model_clip: tuple[str, ...] = ("rnn=value:1", "lstm=value:1")
    test_size: int = option(256, ge=1)
    log_every: int = option(20, ge=1)
    checkpoint_every: int = option(0, ge=0)

    def apply_quick(self):
        self.lengths, self.hidden, self.steps, self.seeds, self.batch_size = (10,), 32, 200, 2, 32
        self.models, self.test_size, self.log_every = ("rnn", "lstm", "lstm_chrono", "exprnn"), 64, 10
        self.model_hidden = ()

    def memory_needs(self):
        sized = ("lengths", "learning_rate", "seeds", "batch_size", "test_size", "hidden", "model_hidden")
        points = f"{len(self.learning_rate) * self.seeds} points at T = {max(self.lengths)}"
        return [(sized, points, copy_bytes(self, max(model_hidden(self, m) for m in self.models)))]

    def check(self):
        super().check()
        refuse_unused(self, optimizer_rules(self))
        clip_of(self)


def copy_bytes(cfg, hidden: int) -> int:
    """The least one (model, T) of the longest T allocates: learning rates x seeds points on batches
    and held-out batches of T + 20 one-hot steps, and their hidden states."""
    points, task = len(cfg.learning_rate) * cfg.seeds, Copy(T=max(cfg.lengths))
    return training_bytes(points, max(cfg.batch_size, cfg.test_size), task.sequence_length, task.vocab_size, hidden)


def optimizer(cfg: Config, name: str) -> OptimConfig:
    """Model ``name``'s optimiser: its clip rule, expRNN's generators (a_hh) at their own rate, and the
    first learning rate (the sweep's points set their own: TrainState hyperparameters)."""
    extra = {"rmsprop_decay": cfg.rmsprop_decay, "group_learning_rates": (("a_hh", cfg.orthogonal_learning_rate),)}
    return OptimConfig(cfg.optimizer, cfg.learning_rate[0], **extra, **clip_of(cfg, name))


def data_seed(seed: int, T: int):
    """The training stream of (``--seed``, T): ``seed * 1000 + T`` up to T = 1000 (the committed runs'
    streams; one per pair there), the pair itself beyond (where seed 0, T 1500 would be seed 1, T 500's)."""
    return seed * 1000 + T if T <= 1000 else (seed, T)


@functools.cache
def programs(spec, T: int):
    """The task, model, init, metrics (``Copy.batch_metrics``) and gradient profile of one (model, T):
    ``||dL_recall/dh_t||`` for every t, the gradient at 0 of the recall loss with ``eps`` added
    to the hidden states (how much of the recall error reaches each h_t), median over sequences."""
    task = Copy(T=T)
    # one-hot inputs; chrono's T_max: the whole sequence, T + 20 steps
    model = LanguageModel(task.vocab_size, None, spec.layer(t_max=task.sequence_length))
    init = jax.jit(lambda key: model.init(key, jnp.zeros((1, task.sequence_length), jnp.int32)))

    def metrics(p, b, eps_lbth=None):  # eps: added to the hidden states, [layer, B, T + 20, H]
        return Copy.batch_metrics(model.apply(p, b["x"], hidden_perturbation=eps_lbth)[0], b["y"])

    profile = lambda p, b: jnp.median(
        hidden_gradient_norms(lambda eps: metrics(p, b, eps[None])["recall_loss"], b["x"].shape + (spec.hidden,)),
        axis=0,
    )
    return task, model, init, metrics, profile


def run_model(cfg: Config, run: RunDir, name: str, T: int) -> tuple[int, dict]:
    """Train every learning rate x seed of (model, T) in one program, keep the learning rate whose
    median validation loss is lowest, and at it measure the held-out metrics and the gradient
    profiles at initialisation and trained: the parameter count and (model, T)'s results."""
    task, model, init, metrics, profile = programs(model_spec(cfg, name), T)
    sweep = Sweep(grid(learning_rate=cfg.learning_rate, seed=range(cfg.seeds)))
    seed_s, lr_s = sweep.column("seed"), sweep.column("learning_rate")
    keys = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), T), cfg.seeds)[seed_s]
    rows = lambda batch: {k: np.broadcast_to(v, (len(sweep),) + v.shape) for k, v in batch.items()}
    params0 = init_params(sweep, lambda key, p: init(key), keys)

    def loss_fn(params, batch, key):  # trained on the loss per step; the recall metrics are logged
        m = metrics(params, batch)
        return m.pop("loss"), m

    draw = lambda key, batch_size, _: task.draw(key, batch_size)
    started = time.perf_counter()
    state = train_sweep(
        run,
        f"{name}/T{T}",
        cfg,
        sweep,
        params=params0,
        loss_fn=loss_fn,
        optimizer=make_optimizer(optimizer(cfg, name), cfg.steps),
        hyperparameters=("learning_rate",),
        # every learning rate of a seed sees the seed's data stream: paired comparisons
        batch_fn=synthetic.seeded_batches(draw, data_seed(cfg.seed, T), seed_s, cfg.batch_size, T),
        init_keys=keys,
        tolerate_diverged=True,
        constrain=functools.partial(constrain_recurrent, model.layer),
    )
    wall_s = time.perf_counter() - started
    # held-out sets no training batch uses: stream 0 the test set, 1 the validation set that picks
    # the learning rate (the test set never chooses anything)
    held_out = lambda stream: rows(task.draw((cfg.seed, 10**9 + stream, T), cfg.test_size))
    test = held_out(0)
    test_s = sweep.run(metrics, state.params, test)
    valid_s = sweep.run(metrics, state.params, held_out(1)) if len(cfg.learning_rate) > 1 else test_s
    best, per_lr = choose_on_validation(cfg.learning_rate, lr_s, valid_s["loss"], test_s)
    at = np.flatnonzero(lr_s == best["learning_rate"])
    picked, test_at = Sweep([sweep.points[i] for i in at]), {k: v[at] for k, v in test.items()}
    profile_at = lambda params: np.median(picked.run(profile, jax.tree.map(lambda a: a[at], params), test_at), axis=0)
    return int(sum(leaf[0].size for leaf in jax.tree.leaves(params0))), {
        "chosen_learning_rate": best["learning_rate"],
        "final_loss": best["loss"],
        "recall_loss": best["recall_loss"],
        "recall_accuracy": best["recall_accuracy"],
        "learning_rate_sweep": per_lr,
        "wall_time_s": wall_s,
        "gradient_norms": {"init": profile_at(params0).tolist(), "trained": profile_at(state.params).tolist()},
    }


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run = RunDir(cfg)
    results = {
        "lengths": list(cfg.lengths),
        "steps": cfg.steps,
        "seeds": cfg.seeds,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer,
        "learning_rates": list(cfg.learning_rate),
        "hidden": {name: model_hidden(cfg, name) for name in cfg.models},
        "clip": {name: clip_written(cfg, name) for name in cfg.models},
        "cell_options": {name: dict(model_spec(cfg, name).cell_options) for name in cfg.models},
        "path": {name: model_spec(cfg, name).resolved_path() for name in cfg.models},
        "parameters": {},
        "baseline": {str(T): synthetic.copy_memory_baseline(T) for T in cfg.lengths},
        "recall_baseline": math.log(synthetic.COPY_SYMBOLS),  # ln 8: guessing among the symbols
        "recall_chance_accuracy": 1 / synthetic.COPY_SYMBOLS,
    }
    with parallel.CompileStats() as compile_stats:
        for name in cfg.models:
            for T in cfg.lengths:
                results["parameters"][name], out = run_model(cfg, run, name, T)
                for key, value in out.items():
                    results.setdefault(key, {}).setdefault(name, {})[str(T)] = value
                if not cfg.quiet and run.writes:
                    lr = f" at learning rate {out['chosen_learning_rate']:g}" if len(cfg.learning_rate) > 1 else ""
                    loss, accuracy = out["final_loss"]["per_seed"], out["recall_accuracy"]["per_seed"]
                    print(
                        f"{name} T={T}{lr}: held-out loss per seed {', '.join(f'{v:.4g}' for v in loss)} "
                        f"(baseline {results['baseline'][str(T)]:.4f}), recall accuracy "
                        f"{', '.join(f'{v:.3f}' for v in accuracy)}",
                        flush=True,
                    )
    return run.finish(results, compile_stats, lambda: save_figures(cfg, run, results))


def optimizer_words(cfg: Config) -> str:
    """The run's optimiser in a figure title."""
    name = {"rmsprop": f"RMSprop (alpha {cfg.rmsprop_decay:g})", "adam": "Adam"}.get(cfg.optimizer, cfg.optimizer)
    rates = "/".join(f"{lr:g}" for lr in cfg.learning_rate)
    words = f"{name} {rates}" + (" (the best on a validation set, per model)" if len(cfg.learning_rate) > 1 else "")
    if any(MODELS[m].wrap is not None for m in cfg.models):
        words += f", orthogonal generator {cfg.orthogonal_learning_rate:g}"
    return words


def model_words(cfg: Config, name: str) -> str:
    """Model ``name`` in a legend: its label, width, cell options (chrono's T_max: typed, or the
    script's T + 20) and clip rule."""
    options, rule = dict(model_spec(cfg, name).cell_options), clip_written(cfg, name)
    t_max = f"{options.pop('t_max'):g}" if "t_max" in options else "T + 20"
    words = "".join(f", {k} {v:g}" for k, v in options.items())
    clip = "no clipping" if rule == "off" else f"clip {rule}"
    return f"{label(name, t_max=t_max)} (H={model_hidden(cfg, name)}{words}, {clip})"


def save_figures(cfg: Config, run: RunDir, results: dict) -> None:
    """The learning curves at each model's chosen learning rate (rows: what is learned, the loss per
    step, then the 10 answer steps alone; columns: T), and the recall loss's gradient profiles."""
    labels = {name: model_words(cfg, name) for name in cfg.models}
    colors = {labels[name]: plots.model_color(name) for name in cfg.models}
    points = grid(learning_rate=cfg.learning_rate, seed=range(cfg.seeds))  # run_model's rows

    def chosen(name: str, T: int, key: str):  # (steps, values [seeds, N]) at the chosen learning rate
        steps, values_sn = run.curve(f"{name}/T{T}", key)
        return steps, values_sn[rows_where(points, learning_rate=results["chosen_learning_rate"][name][str(T)])]

    rows = (  # what is learned: the loss per step, then the 10 answer steps alone; their memoryless references
        ("loss", "cross-entropy, nats per step", "baseline", "memoryless baseline", "log"),
        ("recall_loss", "recall cross-entropy (10 answer steps)", "recall_baseline", "memoryless ln 8", "log"),
        ("recall_accuracy", "recall accuracy (10 answer steps)", "recall_chance_accuracy", "chance 1/8", "linear"),
    )
    fig, axes = plots.panels(len(cfg.lengths), rows=len(rows), width=8.0, height=3.4, sharey=False)
    cells = [(row, T) for row in rows for T in cfg.lengths]
    for ax, ((key, ylabel, baseline_key, baseline_label, yscale), T) in zip(axes, cells):
        baseline = results[baseline_key]  # per T, or one for every T
        plots.learning_curves(
            {labels[name]: chosen(name, T, key) for name in cfg.models},
            colors=colors,
            ax=ax,
            baseline=baseline[str(T)] if isinstance(baseline, dict) else baseline,
            baseline_label=baseline_label,
            ylabel=ylabel,
            title=f"T = {T}, training batches",
            yscale=yscale,
        )
        ax.legend(fontsize=7)
    title = (
        f"Copy memory, one-hot inputs, {optimizer_words(cfg)}, batch {cfg.batch_size}, {cfg.steps} steps: "
        f"median and range of {cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}"
    )
    fig.suptitle(textwrap.fill(title, 90 * len(cfg.lengths)), fontsize=9)
    run.save_figure(fig, "learning_curves")

    T, norms = max(cfg.lengths), results["gradient_norms"]
    phases = {"init": "at initialisation", "trained": f"after {cfg.steps} steps"}
    fig = plots.profiles(
        {title: {labels[n]: norms[n][str(T)][phase] for n in cfg.models} for phase, title in phases.items()},
        xlabel="time step t (symbols at 0-9, outputs at the last 10)",
        ylabel=r"$\|\partial L_{recall} / \partial h_t\|$ (median: sequences, then seeds)",
        suptitle=f"Copy memory T={T}: gradient of the recall loss (last 10 steps) reaching each hidden state, {cfg.seeds} seeds",
        colors=colors,
    )
    run.save_figure(fig, "gradient_norms")


if __name__ == "__main__":
    cli(main)
