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
import optax

from rnnlab import parallel, plots
from rnnlab.data import synthetic
from rnnlab.diagnostics import hidden_gradient_norms
from rnnlab.experiment import (
    ConfigError,
    ModelSpec,
    PerModelConfig,
    RunDir,
    cli,
    clip_rule,
    clip_written,
    model_clip,
    model_hidden,
    model_spec,
    option,
    parse_config,
    refuse_unused,
    setup,
    train_sweep,
)
from rnnlab.linen import LanguageModel, constrain_recurrent
from rnnlab.metrics import over_seeds
from rnnlab.parametrizations import Orthogonal
from rnnlab.sweep import Sweep, grid, init_params, rows_where, training_bytes
from rnnlab.train import OPTIMIZERS, OptimConfig, make_optimizer
from rnnlab.zoo import MODELS, label

VOCAB = synthetic.COPY_SYMBOLS + 2  # blank, 8 symbols, delimiter


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
        return [
            (
                ("lengths", "learning_rate", "seeds", "batch_size", "test_size", "hidden", "model_hidden"),
                f"{len(self.learning_rate) * self.seeds} points at T = {max(self.lengths)}",
                copy_bytes(self, max(model_hidden(self, m) for m in self.models)),
            )
        ]

    def check(self):
        super().check()
        refuse_unused(
            self,
            {
                "rmsprop_decay": (self.optimizer == "rmsprop", f"--optimizer is {self.optimizer}"),
                "orthogonal_learning_rate": (
                    any(MODELS[m].wrap is Orthogonal for m in self.models),
                    "no model of --models has an orthogonal generator (exprnn, exprnn_tanh)",
                ),
            },
        )
        try:
            clip_rule(self.clip)
        except ValueError as e:
            raise ConfigError(f"--clip: {e}") from None

    def clip_of(self, name: str) -> str:
        """Model ``name``'s clip rule as written (``--model-clip``, else ``--clip``)."""
        return clip_written(self, name)

    def optimizer_of(self, name: str) -> OptimConfig:
        return OptimConfig(
            self.optimizer,
            self.learning_rate[0],  # the sweep's points set their own (TrainState hyperparameters)
            rmsprop_decay=self.rmsprop_decay,
            group_learning_rates=(("a_hh", self.orthogonal_learning_rate),),
            **(model_clip(self, name) or clip_rule(self.clip)),
        )


def copy_bytes(cfg, hidden: int) -> int:
    """The least one (model, T) of the longest T allocates: learning rates x seeds points on batches
    and held-out batches of T + 20 one-hot steps (``VOCAB`` features), and their hidden states."""
    points, steps = len(cfg.learning_rate) * cfg.seeds, max(cfg.lengths) + 2 * synthetic.COPY_LENGTH
    return training_bytes(points, max(cfg.batch_size, cfg.test_size), steps, VOCAB, hidden)


def data_seed(seed: int, T: int):
    """The training stream of (``--seed``, T), one per pair: ``seed * 1000 + T`` up to T = 1000 (the
    streams the committed results trained on; injective there) and the pair itself beyond, where
    ``seed * 1000 + T`` would repeat another pair's stream (seed 0, T 1500 = seed 1, T 500)."""
    return seed * 1000 + T if T <= 1000 else (seed, T)


def copy_metrics(logits_btv, targets_bt) -> dict:
    r"""What a copy model learned, from one forward pass.

    ``loss``: cross-entropy in nats per step over all T + 20 steps (the training loss;
    memoryless baseline ``10 ln 8 / (T + 20)``).  Most of those steps are blanks that need no
    memory, so the 10 answer steps are also scored alone: ``recall_loss``, their cross-entropy
    (memoryless ``ln 8 = 2.079`` at every T), and ``recall_accuracy``, the share of symbols
    whose most likely output is right (chance 1/8)."""
    ce_bt = optax.softmax_cross_entropy_with_integer_labels(logits_btv, targets_bt)
    recall = slice(-synthetic.COPY_LENGTH, None)
    hits_bt = jnp.argmax(logits_btv[:, recall], axis=-1) == targets_bt[:, recall]
    return {"loss": jnp.mean(ce_bt), "recall_loss": jnp.mean(ce_bt[:, recall]), "recall_accuracy": jnp.mean(hits_bt)}


RECALL_METRICS = ("recall_loss", "recall_accuracy")


def recall_loss_with_perturbation(model: LanguageModel, params, batch, eps_bth):
    """The loss of the last 10 steps (recalling the symbols) with ``eps`` added to the hidden
    states: its gradient at 0 is how much of the recall error reaches each h_t."""
    logits_btv, _ = model.apply(params, batch["tokens"], hidden_perturbation=eps_bth[None])
    return copy_metrics(logits_btv, batch["targets"])["recall_loss"]


@functools.cache
def programs(spec: ModelSpec, T: int):
    """The init, metrics (``copy_metrics``) and gradient profile of one (model, T)."""
    # chrono's T_max: the whole sequence, T + 20 steps
    model = LanguageModel(VOCAB, None, spec.layer(t_max=T + 2 * synthetic.COPY_LENGTH))  # one-hot
    init = jax.jit(lambda key: model.init(key, jnp.zeros((1, T + 2 * synthetic.COPY_LENGTH), jnp.int32)))
    metrics = lambda p, b: copy_metrics(model.apply(p, b["tokens"])[0], b["targets"])
    profile = lambda p, b: jnp.median(
        hidden_gradient_norms(
            lambda eps: recall_loss_with_perturbation(model, p, b, eps), b["tokens"].shape + (spec.hidden,)
        ),
        axis=0,
    )
    return model, init, metrics, profile


def held_out(cfg: Config, T: int, stream: int) -> dict:
    """A held-out batch no training batch uses: ``stream`` 0 the test set, 1 the validation set
    that picks the learning rate (the test set never chooses anything)."""
    return synthetic.copy_memory((cfg.seed, 10**9 + stream, T), cfg.test_size, T)


def run_model(cfg: Config, run: RunDir, name: str, T: int) -> dict:
    """Train every learning rate x seed of (model, T) in one program; the validation loss that
    picks the learning rate, then at the chosen one the held-out metrics and gradient profiles."""
    model, init, metrics, profile = programs(model_spec(cfg, name), T)
    sweep = Sweep(grid(learning_rate=cfg.learning_rate, seed=range(cfg.seeds)))
    seed_s = sweep.column("seed")
    keys = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), T), cfg.seeds)[seed_s]
    rows = lambda batch: {k: np.broadcast_to(v, (len(sweep),) + v.shape) for k, v in batch.items()}
    params0 = init_params(sweep, lambda key, p: init(key), keys)

    def loss_fn(params, batch, key):
        m = metrics(params, batch)
        return m["loss"], {k: m[k] for k in RECALL_METRICS}

    started = time.perf_counter()
    state = train_sweep(
        run,
        f"{name}/T{T}",
        cfg,
        sweep,
        params=params0,
        loss_fn=loss_fn,
        optimizer=make_optimizer(cfg.optimizer_of(name), cfg.steps),
        hyperparameters=("learning_rate",),
        # every learning rate of a seed sees the seed's data stream: paired comparisons
        batch_fn=synthetic.seeded_batches(synthetic.copy_memory, data_seed(cfg.seed, T), seed_s, cfg.batch_size, T),
        init_keys=keys,
        tolerate_diverged=True,
        constrain=functools.partial(constrain_recurrent, model.layer),
    )
    wall_s = time.perf_counter() - started
    test = rows(held_out(cfg, T, 0))
    test_s = sweep.run(metrics, state.params, test)
    valid_s = sweep.run(metrics, state.params, rows(held_out(cfg, T, 1))) if len(cfg.learning_rate) > 1 else test_s
    lr_s = sweep.column("learning_rate")
    per_lr = [
        {
            "learning_rate": lr,
            "validation_loss": over_seeds(valid_s["loss"][lr_s == lr]),
            **{k: over_seeds(test_s[k][lr_s == lr]) for k in ("loss",) + RECALL_METRICS},
        }
        for lr in cfg.learning_rate
    ]
    # a diverged learning rate (median NaN) is never chosen; if every one diverged, the first
    score = [r["validation_loss"]["median"] for r in per_lr]
    chosen = cfg.learning_rate[int(np.argmin([np.inf if np.isnan(v) else v for v in score]))]
    at = np.flatnonzero(lr_s == chosen)
    test_batch = {k: v[at] for k, v in test.items()}
    picked = Sweep([sweep.points[i] for i in at])
    return {
        "learning_rate": chosen,
        "sweep": per_lr,
        **{k: test_s[k][at] for k in ("loss",) + RECALL_METRICS},
        "grad_init": picked.run(profile, jax.tree.map(lambda a: a[at], params0), test_batch),
        "grad_trained": picked.run(profile, jax.tree.map(lambda a: a[at], state.params), test_batch),
        "parameters": int(sum(leaf[0].size for leaf in jax.tree.leaves(params0))),
        "wall_s": wall_s,
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
        "clip": {name: cfg.clip_of(name) for name in cfg.models},
        "cell_options": {name: dict(model_spec(cfg, name).cell_options) for name in cfg.models},
        "path": {name: model_spec(cfg, name).resolved_path() for name in cfg.models},
        "parameters": {},
        "baseline": {str(T): synthetic.copy_memory_baseline(T) for T in cfg.lengths},
        "recall_baseline": math.log(synthetic.COPY_SYMBOLS),  # ln 8: guessing among the symbols
        "recall_chance_accuracy": 1 / synthetic.COPY_SYMBOLS,
        "chosen_learning_rate": {},
        "final_loss": {},
        "recall_loss": {},
        "recall_accuracy": {},
        "learning_rate_sweep": {},
        "wall_time_s": {},
        "gradient_norms": {},
    }
    per_length = ("chosen_learning_rate", "final_loss", "recall_loss", "recall_accuracy", "learning_rate_sweep")
    with parallel.CompileStats() as compile_stats:
        for name in cfg.models:
            for key in per_length + ("wall_time_s", "gradient_norms"):
                results[key][name] = {}
            for T in cfg.lengths:
                out = run_model(cfg, run, name, T)
                results["parameters"][name] = out["parameters"]
                results["chosen_learning_rate"][name][str(T)] = out["learning_rate"]
                results["final_loss"][name][str(T)] = over_seeds(out["loss"])
                for k in RECALL_METRICS:
                    results[k][name][str(T)] = over_seeds(out[k])
                results["learning_rate_sweep"][name][str(T)] = out["sweep"]
                results["wall_time_s"][name][str(T)] = out["wall_s"]
                results["gradient_norms"][name][str(T)] = {
                    phase: np.median(out[f"grad_{phase}"], axis=0).tolist() for phase in ("init", "trained")
                }
                if not cfg.quiet and run.writes:
                    lr = f" at learning rate {out['learning_rate']:g}" if len(cfg.learning_rate) > 1 else ""
                    print(
                        f"{name} T={T}{lr}: held-out loss per seed {', '.join(f'{v:.4g}' for v in out['loss'])} "
                        f"(baseline {results['baseline'][str(T)]:.4f}), recall accuracy "
                        f"{', '.join(f'{v:.3f}' for v in out['recall_accuracy'])}",
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


def chosen_curve(cfg: Config, run: RunDir, results: dict, name: str, T: int, key: str):
    """``(steps, values [seeds, N])`` of metric ``key`` at the model's chosen learning rate."""
    steps, values_sn = run.curve(f"{name}/T{T}", key)
    chosen = results["chosen_learning_rate"][name][str(T)]
    points = grid(learning_rate=cfg.learning_rate, seed=range(cfg.seeds))  # run_model's rows
    return steps, values_sn[rows_where(points, learning_rate=chosen)]


def save_figures(cfg: Config, run: RunDir, results: dict) -> None:
    clip_words = lambda rule: "no clipping" if rule == "off" else f"clip {rule}"
    options = lambda name: dict(model_spec(cfg, name).cell_options)
    option_words = lambda name: "".join(f", {k} {v:g}" for k, v in options(name).items() if k != "t_max")
    t_max = lambda name: (
        f"{options(name)['t_max']:g}" if "t_max" in options(name) else "T + 20"
    )  # typed, or the script's
    labels = {
        name: f"{label(name, t_max=t_max(name))} (H={model_hidden(cfg, name)}{option_words(name)}, "
        f"{clip_words(cfg.clip_of(name))})"
        for name in cfg.models
    }
    colors = {labels[name]: plots.model_color(name) for name in cfg.models}
    rows = (  # what is learned: the loss per step, then the 10 answer steps alone
        ("loss", "cross-entropy, nats per step", "baseline", "memoryless baseline", "log"),
        ("recall_loss", "recall cross-entropy (10 answer steps)", "recall_baseline", "memoryless ln 8", "log"),
        ("recall_accuracy", "recall accuracy (10 answer steps)", "recall_chance_accuracy", "chance 1/8", "linear"),
    )
    fig, axes = plots.panels(len(cfg.lengths), rows=len(rows), width=8.0, height=3.4, sharey=False)
    for r, (key, ylabel, baseline_key, baseline_label, yscale) in enumerate(rows):
        for c, T in enumerate(cfg.lengths):
            baseline = results[baseline_key]
            plots.learning_curves(
                {labels[name]: chosen_curve(cfg, run, results, name, T, key) for name in cfg.models},
                colors=colors,
                ax=axes[r * len(cfg.lengths) + c],
                baseline=baseline[str(T)] if isinstance(baseline, dict) else baseline,
                baseline_label=baseline_label,
                ylabel=ylabel,
                title=f"T = {T}, training batches",
                yscale=yscale,
            )
    for ax in axes:
        ax.legend(fontsize=7)
    title = (
        f"Copy memory, one-hot inputs, {optimizer_words(cfg)}, batch {cfg.batch_size}, {cfg.steps} steps: "
        f"median and range of {cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}"
    )
    fig.suptitle(textwrap.fill(title, 90 * len(cfg.lengths)), fontsize=9)
    run.save_figure(fig, "learning_curves")

    import matplotlib.pyplot as plt

    T = max(cfg.lengths)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True, constrained_layout=True)
    for ax, phase in zip(axes, ("init", "trained")):
        for name in cfg.models:
            ax.plot(results["gradient_norms"][name][str(T)][phase], label=labels[name], color=colors[labels[name]])
        ax.set_yscale("log")  # a curve that stops fell to 0: below float32's smallest number
        ax.set_xlabel("time step t (symbols at 0-9, outputs at the last 10)")
        ax.set_title("at initialisation" if phase == "init" else f"after {cfg.steps} steps")
    axes[0].set_ylabel(r"$\|\partial L_{recall} / \partial h_t\|$ (median: sequences, then seeds)")
    axes[1].legend(fontsize=8)
    fig.suptitle(
        f"Copy memory T={T}: gradient of the recall loss (last 10 steps) reaching each hidden state, {cfg.seeds} seeds",
        fontsize=10,
    )
    run.save_figure(fig, "gradient_norms")


if __name__ == "__main__":
    cli(main)
