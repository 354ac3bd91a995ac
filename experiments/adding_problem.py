"""The adding problem: can a tanh RNN, an LSTM and a GRU carry two numbers across T steps?

Each model reads T pairs (value ~ U[0,1], marker) and must output the sum of
the two marked values, one marker in each half.  Always answering 1 scores
MSE 0.167 (the dashed line); a model below it has learned to remember.
Every numeric flag of the grid takes several values; the grid x seeds of a
model trains as one compiled program (``rnnlab.sweep``), spread over every
device, and results.json gives each grid point's median and IQR over seeds.

    python experiments/adding_problem.py --seq-len 100 --steps 3000 --seeds 3
    python experiments/adding_problem.py --learning-rate 1e-3 3e-3 --forget-bias 1 3
    python experiments/adding_problem.py --quick          # a 1-minute look

Writes config.json, metrics.jsonl, results.json and learning_curves.png to --out.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import parallel
from rnnlab.data import synthetic
from rnnlab.experiment import (
    ModelSpec,
    PerModelConfig,
    RunDir,
    cli,
    model_clip,
    model_hidden,
    model_spec,
    optimizer_rules,
    option,
    parse_config,
    readable,
    refuse_unused,
    setup,
    train_sweep,
)
from rnnlab.linen import SequenceRegressor, constrain_recurrent, regressor_mse
from rnnlab.metrics import over_seeds
from rnnlab.plots import learning_curves, model_color, panels
from rnnlab.sweep import Sweep, grid, training_bytes
from rnnlab.train import OPTIMIZERS, OptimConfig, make_optimizer
from rnnlab.zoo import MODELS, label


@dataclasses.dataclass
class Config(PerModelConfig):
    out: str = "runs/adding_problem"
    steps: int = option(3000, ge=1)
    seq_len: int = option(100, ge=2)
    # "adding" or "adding_hs97" (Hochreiter & Schmidhuber 1997)
    variant: str = option("adding", choices=("adding", "adding_hs97"))
    # rnn, lstm, gru, irnn, ... and the remedies lstm_chrono, gru_chrono, rnn_orthogonal, exprnn
    models: tuple[str, ...] = option(("rnn", "lstm", "gru"), choices=tuple(MODELS))
    hidden: int = option(64, ge=1)
    num_layers: int = option(1, ge=1)  # a stack (the IndRNN paper's adding model has 2 layers)
    model_hidden: tuple[str, ...] = ()  # MODEL=H overrides --hidden (the uRNN paper: 128, its uRNN 512)
    batch_size: int = option(50, ge=1)
    seeds: int = option(3, ge=1)
    optimizer: str = option("adam", choices=OPTIMIZERS)
    rmsprop_decay: float = option(0.9, ge=0.0, lt=1.0)  # RMSprop's alpha (the uRNN authors': 0.9)
    # expRNN's orthogonal generators (a_hh) at their own learning rate; unset: --learning-rate
    orthogonal_learning_rate: float | None = option(None, gt=0.0)
    # sweep axes: every combination x seeds runs as one compiled program per model
    learning_rate: tuple[float, ...] = option((1e-3,), gt=0.0)
    clip_norm: tuple[float, ...] = option((1.0,), ge=0.0)  # 0: no clipping
    # MODEL=RULE (off, norm:X, value:X) replaces the --clip-norm axis for that model, e.g. the
    # uRNN authors' "rnn=value:1 lstm=value:1 exprnn=off"
    model_clip: tuple[str, ...] = ()
    forget_bias: tuple[float, ...] = (1.0,)  # LSTM only
    test_size: int = option(1000, ge=1)

    def apply_quick(self):
        self.seq_len, self.steps, self.hidden, self.seeds = 30, 300, 32, 2
        self.test_size, self.checkpoint_every, self.log_every = 200, 100, 10

    def check(self):
        super().check()
        forget_bias = any(MODELS[m].takes_forget_bias for m in self.models)
        why = "no model of --models takes a forget-gate bias (lstm does)"
        refuse_unused(self, optimizer_rules(self) | {"forget_bias": (forget_bias, why)})

    def memory_needs(self):
        def points(m):  # grid_points' count, without building the grid
            clip = 1 if model_clip(self, m) is not None else len(self.clip_norm)
            return (
                len(self.learning_rate)
                * clip
                * (len(self.forget_bias) if MODELS[m].takes_forget_bias else 1)
                * self.seeds
            )

        name = max(self.models, key=lambda m: points(m) * model_hidden(self, m))
        points, widest = points(name), model_hidden(self, name) * self.num_layers
        return [
            (
                ("learning_rate", "clip_norm", "forget_bias", "seeds", "seq_len", "batch_size", "test_size")
                + ("hidden", "model_hidden", "num_layers"),
                f"{points} sweep points",
                training_bytes(points, max(self.batch_size, self.test_size), self.seq_len, 2, widest),
            )
        ]


GRID_AXES = ("learning_rate", "clip_norm", "clip_value", "forget_bias")


def grid_points(name: str, cfg: Config) -> list[dict]:
    """The model's grid x seeds; the forget-gate bias is an axis for the LSTM only, and a
    ``--model-clip`` rule replaces the clip-norm axis."""
    rule = model_clip(cfg, name)
    axes = {"learning_rate": cfg.learning_rate, "clip_norm": cfg.clip_norm if rule is None else (rule["clip_norm"],)}
    axes["clip_value"] = (0.0 if rule is None else rule["clip_value"],)
    if MODELS[name].takes_forget_bias:
        axes["forget_bias"] = cfg.forget_bias
    points = grid(**axes, seed=range(cfg.seeds))
    for p in points:  # every value must make a valid optimizer
        optimizer_config(cfg, p["learning_rate"], p["clip_norm"], p["clip_value"])
    return points


def optimizer_config(cfg: Config, learning_rate: float, clip_norm: float = 1.0, clip_value: float = 0.0):
    groups = () if cfg.orthogonal_learning_rate is None else (("a_hh", cfg.orthogonal_learning_rate),)
    return OptimConfig(
        cfg.optimizer,
        learning_rate,
        rmsprop_decay=cfg.rmsprop_decay,
        clip_norm=clip_norm,
        clip_value=clip_value,
        group_learning_rates=groups,
    )


@functools.cache
def initializer(spec: ModelSpec, dummy_shape: tuple[int, ...], num_layers: int = 1):
    """Jitted ``(key, forget_bias) -> params``: one compile for every point of a model."""
    T = dummy_shape[1]  # chrono's T_max: the sequence length
    return jax.jit(
        lambda key, fb: SequenceRegressor(spec.layer(t_max=T, forget_bias=fb, num_layers=num_layers)).init(
            key, jnp.zeros(dummy_shape)
        )
    )


def train_model(name: str, cfg: Config, run: RunDir):
    """Train every grid point x seed of one model in one program; returns the sweep, model and params ``[S, ...]``."""
    sweep = Sweep(grid_points(name, cfg))
    spec = model_spec(cfg, name)
    model = SequenceRegressor(
        spec.layer(t_max=cfg.seq_len, num_layers=cfg.num_layers)
    )  # init options do not change apply
    dummy_x = synthetic.TASKS[cfg.variant](0, 1, cfg.seq_len)["x"]
    init = initializer(spec, dummy_x.shape, cfg.num_layers)
    seed_keys = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), 1), cfg.seeds)
    optimizer = make_optimizer(optimizer_config(cfg, cfg.learning_rate[0]), cfg.steps)
    state = train_sweep(
        run,
        name,
        cfg,
        sweep,
        init_fn=lambda key, p: init(key, p.get("forget_bias", 1.0)),
        loss_fn=lambda params, batch, key: (regressor_mse(model, params, batch), {}),
        optimizer=optimizer,
        hyperparameters=("learning_rate", "clip_norm", "clip_value"),
        # every grid point of a seed sees the seed's data stream: paired comparisons
        batch_fn=synthetic.seeded_batches(
            synthetic.TASKS[cfg.variant], cfg.seed, sweep.column("seed"), cfg.batch_size, cfg.seq_len
        ),
        # a diverged seed (IRNN at long T) is reported (test_mse "diverged"); only all of them is an error
        init_keys=seed_keys[sweep.column("seed")],
        tolerate_diverged=True,
        constrain=functools.partial(constrain_recurrent, model.layer),
    )
    return sweep, model, state.params


def point_label(point: dict) -> str:
    short = {"learning_rate": "lr", "clip_norm": "clip", "clip_value": "clip value", "forget_bias": "b_f"}
    return ", ".join(f"{short[k]} {point[k]:g}" for k in GRID_AXES if k in point and (k != "clip_value" or point[k]))


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run = RunDir(cfg)
    test = synthetic.TASKS[cfg.variant](
        (cfg.seed, 10**9), cfg.test_size, cfg.seq_len
    )  # a stream no training batch uses
    baseline = float(np.mean((1.0 - test["y"]) ** 2)) if cfg.variant == "adding" else float(np.var(test["y"]))
    results = {
        "variant": cfg.variant,
        "seq_len": cfg.seq_len,
        "steps": cfg.steps,
        "seeds": cfg.seeds,
        "baseline_test_mse": baseline,
        "models": {},
    }
    trained = {}
    with parallel.CompileStats() as compile_stats:
        for name in cfg.models:
            sweep, model, params_s = train_model(name, cfg, run)
            test_s = {k: np.broadcast_to(v, (len(sweep),) + np.shape(v)) for k, v in test.items()}
            test_mse_s = sweep.run(
                lambda p, b: regressor_mse(model, p, b), params_s, test_s
            )  # one program, every point
            trained[name] = sweep
            points = []
            for values in {point_label(p): p for p in sweep.points}.values():
                rows = [i for i, p in enumerate(sweep.points) if point_label(p) == point_label(values)]
                per_seed = test_mse_s[rows]
                points.append({**{k: v for k, v in values.items() if k != "seed"}, "test_mse": over_seeds(per_seed)})
                if not cfg.quiet and run.writes:
                    print(
                        f"{name} ({point_label(values)}): test MSE per seed {readable(per_seed)} "
                        f"(baseline {baseline:.3f})"
                    )
            spec = model_spec(cfg, name)
            results["models"][name] = {
                "hidden": spec.hidden,
                "cell_options": dict(spec.cell_options),
                "path": spec.resolved_path(),
                "points": points,
            }
    if run.finish(results, compile_stats, lambda: save_figure(cfg, run, trained, results)) is None:
        return None
    if not cfg.quiet:
        print(f"wrote {run.path}/results.json and learning_curves.png")
    return results


def save_figure(cfg: Config, run: RunDir, trained: dict, results: dict):
    """One panel per (learning rate, clip norm): each model's median training loss over seeds
    and its range; the LSTM gets one curve per forget-gate bias."""
    # a model with its own clip rule shares the panels of its learning rate
    per_model = ("forget_bias", "clip_norm", "clip_value") if cfg.model_clip else ("forget_bias",)
    shared = lambda p: point_label({k: v for k, v in p.items() if k not in per_model})
    labels = list(dict.fromkeys(shared(p) for sweep in trained.values() for p in sweep.points))
    fig, axes = panels(len(labels), width=5.0)
    for ax, panel in zip(axes, labels):
        curves, colors = {}, {}
        for name, sweep in trained.items():
            steps, loss_sn = run.curve(name)
            for fb in cfg.forget_bias if MODELS[name].takes_forget_bias else (None,):
                rows = [i for i, p in enumerate(sweep.points) if shared(p) == panel and p.get("forget_bias") == fb]
                curve = label(name, forget_bias=cfg.forget_bias[0] if fb is None else fb, t_max="T")
                if cfg.model_hidden or cfg.model_clip:
                    clip = point_label({k: sweep.points[rows[0]][k] for k in ("clip_norm", "clip_value")})
                    curve += f" (H={model_hidden(cfg, name)}, {clip})"
                colors[curve] = model_color(name) if fb is None or len(cfg.forget_bias) == 1 else None
                curves[curve] = (steps, loss_sn[rows])
        learning_curves(
            curves,
            baseline=results["baseline_test_mse"],
            ax=ax,
            title=panel,
            colors=colors,
            baseline_label="predict 1" if cfg.variant == "adding" else "predict mean",
        )
    sizes = f"H={cfg.hidden}" if not cfg.model_hidden else "H per model"
    sizes += f", {cfg.num_layers} layers" if cfg.num_layers > 1 else ""
    title = (
        f"{cfg.variant} problem, T={cfg.seq_len}, {sizes}, {cfg.optimizer}, batch {cfg.batch_size}, {cfg.steps} steps"
    )
    fig.suptitle(textwrap.fill(f"{title}; median and range of {cfg.seeds} seeds", 60 * len(labels)), fontsize=10)
    run.save_figure(fig, "learning_curves", dpi=120)


if __name__ == "__main__":
    cli(main)
