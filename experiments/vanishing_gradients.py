"""Vanishing and exploding gradients: a tanh RNN against an LSTM and a GRU on long sequences.

On the adding problem at several lengths T, for each model, we measure how
much of the gradient of the last step's loss L reaches each hidden state,

    ||dL/dh_t||  for every t, against the distance T-1-t  (one backward pass),

and the Jacobian norm ||dh_T/dh_t||_2, over several seeds at once (jax.vmap):
median and interquartile band.  Following Arjovsky, Shah & Bengio (2016) we
do it at initialisation and again after --steps Adam steps.  Then the two
initialisation sweeps that decide the picture -- the RNN's recurrent spectral
radius (vanishing below 1, Pascanu et al. 2013) and the LSTM's forget-gate
bias -- and gradient clipping in the exploding regime.

    python experiments/vanishing_gradients.py            # the default, < 2 minutes on 2 CPU cores
    python experiments/vanishing_gradients.py --quick    # < 1 minute

Writes config.json, metrics.jsonl, results.json and PNG figures to --out.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import RNN
from rnnlab import diagnostics, plots
from rnnlab.cells import NAMED_CELLS, make_cell
from rnnlab.data import synthetic
from rnnlab.experiment import BaseConfig, RunDir, parse_config, train_seeds
from rnnlab.initializers import spectral_radius
from rnnlab.models import SequenceRegressor, recurrent_params
from rnnlab.train import NonFiniteError, OptimConfig, make_optimizer


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/vanishing_gradients"
    steps: int = 100  # Adam steps before the "trained" measurement
    lengths: tuple[int, ...] = (50, 100, 200)  # add 500 for the long view: ~2.5 min on 2 cores
    models: tuple[str, ...] = ("rnn", "lstm", "gru")
    hidden: int = 64
    seeds: int = 3
    batch_size: int = 10
    measure_size: int = 16  # examples per seed in each gradient measurement
    learning_rate: float = 1e-3
    clip_norm: float = 1.0
    forget_bias: float = 1.0
    jacobian: bool = True
    float64: bool = True  # measure in float64: float32 underflows (< 1e-38) within ~100 steps for the RNN
    sweep_length: int = 100
    radii: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    forget_biases: tuple[float, ...] = (0.0, 1.0, 3.0)
    clip_length: int = 100
    clip_radius: float = 1.5
    clip_steps: int = 150
    clip_learning_rate: float = 0.05
    checkpoint_every: int = 0

    def apply_quick(self):
        self.lengths, self.hidden, self.seeds, self.steps = (20, 50), 32, 3, 30
        self.batch_size, self.measure_size, self.sweep_length = 10, 8, 50
        self.radii, self.clip_length, self.clip_steps = (0.5, 1.0, 1.5), 50, 60


class Measurer:
    """Jitted, seed-vmapped gradient measurements, compiled once per (model, T):
    params that differ only in their initialisation reuse the compiled function."""

    def __init__(self, cfg: Config):
        self.cfg, self._fns = cfg, {}

    def __call__(self, name: str, params_s, batch_s):
        T = batch_s["x"].shape[2]
        with jax.enable_x64(self.cfg.float64):
            dtype = jnp.float64 if self.cfg.float64 else jnp.float32
            params_s, batch_s = jax.tree.map(lambda a: jnp.asarray(a, dtype), (params_s, batch_s))
            if (name, T) not in self._fns:
                self._fns[name, T] = jax.jit(jax.vmap(self._build(name)))
            return [np.asarray(a) for a in self._fns[name, T](params_s, batch_s["x"], batch_s["y"])]

    def _build(self, name: str):
        model = SequenceRegressor(RNN(make_cell(name, self.cfg.hidden)))  # init options do not change apply
        return lambda params, x, y: diagnostics.regressor_gradient_profile(model, params, x, y, jacobian=self.cfg.jacobian)


def adding_batches(cfg, stream: int, batch_size: int, T: int):
    """``batch(step) -> {"x": [S, B, T, 2], "y": [S, B]}``: fresh data per seed and step."""
    return synthetic.seeded_batches(synthetic.adding_problem, cfg.seed * 10**7 + stream, cfg.seeds, batch_size, T)


def seed_keys(cfg):
    return jax.random.split(jax.random.key(cfg.seed), cfg.seeds)


def init_params(cell, cfg, T):
    """``(params [S, ...], model)``: one initialisation per seed."""
    model = SequenceRegressor(RNN(cell))
    return jax.vmap(lambda k: model.init(k, jnp.zeros((1, T, 2))))(seed_keys(cfg)), model


def gate_radii(params_s, cell) -> list[float]:
    """Median over seeds of each gate block's spectral radius of ``w_hh``."""
    w_s = np.asarray(recurrent_params(params_s)["l0"]["fwd"]["w_hh"])
    H = cell.hidden_size
    return [float(np.median([spectral_radius(w[g * H:(g + 1) * H]) for w in w_s])) for g in range(cell.num_gates)]


def summaries(curves_st):
    """Curves in time order -> by-distance summary dict and per-seed decay ratios."""
    summary = diagnostics.summarize(diagnostics.by_distance(curves_st))
    ratios = [diagnostics.decay_ratio(c) for c in curves_st]
    return summary, ratios


def mse_loss(model):
    def loss(params, batch, key):
        pred = model.apply(params, batch["x"])[:, 0]
        return jnp.mean((pred - batch["y"]) ** 2), {}

    return loss


def main(argv=None):
    cfg = parse_config(Config, argv, __doc__)
    run = RunDir(cfg)
    t_start = time.perf_counter()
    measure = Measurer(cfg)
    say = (lambda *a: None) if cfg.quiet else (lambda *a: print(*a, flush=True))
    measure_batch = lambda T: adding_batches(cfg, 10**6, cfg.measure_size, T)(0)
    results = {"models": {m: NAMED_CELLS[m] for m in cfg.models}, "forget_bias": cfg.forget_bias,
               "gradient_norms": {}, "jacobian_norms": {}, "ratios": {}, "spectral_radii": {}, "final_loss": {}}

    # 1-2. gradient norm through time, at init and after training
    for name in cfg.models:
        for key in ("gradient_norms", "jacobian_norms", "ratios", "spectral_radii", "final_loss"):
            results[key][name] = {}
        for T in cfg.lengths:
            cell = make_cell(name, cfg.hidden, forget_bias=cfg.forget_bias)
            params_s, model = init_params(cell, cfg, T)
            batch = measure_batch(T)
            phases = {"init": params_s}
            optimizer = make_optimizer(OptimConfig("adam", cfg.learning_rate, clip_norm=cfg.clip_norm), cfg.steps)
            state = train_seeds(
                run, f"{name}/T{T}", cfg, init_fn=lambda k: model.init(k, jnp.zeros((1, T, 2))),
                loss_fn=mse_loss(model), optimizer=optimizer, init_keys=seed_keys(cfg),
                batch_fn=adding_batches(cfg, T, cfg.batch_size, T),
            )
            phases["trained"] = state.params
            for key in ("gradient_norms", "jacobian_norms", "ratios", "spectral_radii"):
                results[key][name][str(T)] = {}
            for phase, params in phases.items():
                grad_st, jac_st = measure(name, params, batch)
                summary, ratios = summaries(grad_st)
                results["gradient_norms"][name][str(T)][phase] = summary
                if cfg.jacobian:
                    results["jacobian_norms"][name][str(T)][phase] = summaries(jac_st)[0]
                results["ratios"][name][str(T)][phase] = {"median": float(np.median(ratios)), "per_seed": ratios}
                results["spectral_radii"][name][str(T)][phase] = gate_radii(params, cell)
            last = run.records(f"{name}/T{T}")[-1]
            results["final_loss"][name][str(T)] = {"median": float(np.median(last["loss_per_seed"])),
                                                   "per_seed": last["loss_per_seed"]}
            r = results["ratios"][name][str(T)]
            say(f"{name:5s} T={T:4d}  ||dL/dh_1|| / ||dL/dh_T||: init {r['init']['median']:.2e}, "
                f"after {cfg.steps} steps {r['trained']['median']:.2e}   [{time.perf_counter() - t_start:.0f} s]")

    # 3. initialisation sweeps (at init, T = sweep_length)
    T = cfg.sweep_length
    batch = measure_batch(T)
    sweeps = {"spectral_radius": {}, "forget_bias": {}}
    for radius in cfg.radii:
        params_s, _ = init_params(make_cell("rnn", cfg.hidden, spectral_radius=radius), cfg, T)
        grad_st, _ = measure("rnn", params_s, batch)
        summary, ratios = summaries(grad_st)
        sweeps["spectral_radius"][str(radius)] = dict(summary, ratio_median=float(np.median(ratios)))
    for bias in cfg.forget_biases:
        params_s, _ = init_params(make_cell("lstm", cfg.hidden, forget_bias=bias), cfg, T)
        grad_st, _ = measure("lstm", params_s, batch)
        summary, ratios = summaries(grad_st)
        sweeps["forget_bias"][str(bias)] = dict(summary, ratio_median=float(np.median(ratios)))
    results["sweeps"] = dict(sweeps, length=T)
    say("spectral radius sweep, ratio:", {r: f"{s['ratio_median']:.1e}" for r, s in sweeps["spectral_radius"].items()})
    say("forget bias sweep, ratio:", {b: f"{s['ratio_median']:.1e}" for b, s in sweeps["forget_bias"].items()})

    # 4. gradient clipping in the exploding regime (SGD, as in Pascanu et al. 2013)
    T = cfg.clip_length
    cell = make_cell("rnn", cfg.hidden, spectral_radius=cfg.clip_radius)
    model = SequenceRegressor(RNN(cell))  # train_seeds initialises it for each seed
    clipping = {}
    for label, clip in (("clip 1.0", 1.0), ("no clipping", 0.0)):
        optimizer = make_optimizer(OptimConfig("sgd", cfg.clip_learning_rate, clip_norm=clip), cfg.clip_steps)
        try:
            train_seeds(run, f"clipping/{label}", cfg, init_fn=lambda k: model.init(k, jnp.zeros((1, T, 2))),
                        loss_fn=mse_loss(model), optimizer=optimizer, init_keys=seed_keys(cfg), num_steps=cfg.clip_steps,
                        log_every=1, batch_fn=adding_batches(cfg, 2 * 10**6 + T, cfg.batch_size, T))
            diverged = None
        except NonFiniteError as e:
            diverged = str(e)
        records = run.records(f"clipping/{label}")
        clipping[label] = {
            "diverged": diverged,
            "max_grad_norm": float(np.max([r["grad_norm_per_seed"] for r in records])),
            "final_loss_median": float(np.median(records[-1]["loss_per_seed"])),
            "steps_completed": records[-1]["step"],
        }
        say(f"{label}: max pre-clip gradient norm {clipping[label]['max_grad_norm']:.3g}, "
            f"final loss {clipping[label]['final_loss_median']:.3g}" + (" (diverged)" if diverged else ""))
    results["clipping"] = dict(clipping, radius=cfg.clip_radius, length=T, optimizer="sgd",
                               learning_rate=cfg.clip_learning_rate)
    results["runtime_s"] = time.perf_counter() - t_start
    run.write_results(results)
    save_figures(cfg, run, results)
    say(f"wrote {run.path}/results.json and figures in {results['runtime_s']:.0f} s")
    return results


def save_figures(cfg: Config, run: RunDir, results: dict):
    init = f"init: tanh RNN PyTorch uniform; LSTM forget bias {cfg.forget_bias:g}; GRU PyTorch uniform"
    for key, ylabel in (("gradient_norms", r"$\|\partial L/\partial h_t\|$"),
                        ("jacobian_norms", r"$\|\partial h_T/\partial h_t\|_2$")):
        if not results[key][cfg.models[0]].get(str(cfg.lengths[0])):
            continue
        fig, axes = plots.panels(len(cfg.lengths), sharey=False)
        for ax, T in zip(axes, cfg.lengths):
            series, styles = {}, {}
            for name in cfg.models:
                for phase, ls in (("init", "-"), ("trained", "--")):
                    label = f"{name} {'init' if phase == 'init' else f'after {cfg.steps} steps'}"
                    series[label] = results[key][name][str(T)][phase]
                    styles[label] = {"ls": ls}
            plots.norms_by_distance(series, title=f"T = {T}", ylabel=ylabel, ax=ax, styles=styles)
        fig.suptitle(f"{ylabel} on the adding problem, H={cfg.hidden}, median and IQR of {cfg.seeds} seeds, "
                     f"at init and after {cfg.steps} Adam steps (measured in {'float64' if cfg.float64 else 'float32'})"
                     f"\n{init}", fontsize=10)
        fig.savefig(run.figure(key), dpi=110)

    fig, axes = plots.panels(2, sharey=False, width=5.5)
    sw = results["sweeps"]
    plots.norms_by_distance({f"radius {r}": s for r, s in sw["spectral_radius"].items()}, ax=axes[0],
                            title=f"tanh RNN at init, W_hh rescaled to spectral radius ρ, T={sw['length']}")
    plots.norms_by_distance({f"forget bias {b}": s for b, s in sw["forget_bias"].items()}, ax=axes[1],
                            title=f"LSTM at init, forget-gate bias b_f, T={sw['length']}")
    fig.suptitle(f"Initialisation decides the picture (H={cfg.hidden}, median and IQR of {cfg.seeds} seeds)", fontsize=10)
    fig.savefig(run.figure("init_sweeps"), dpi=110)

    traces = {}
    for label in ("clip 1.0", "no clipping"):
        recs = run.records(f"clipping/{label}")
        diverged = results["clipping"][label]["diverged"]
        label_shown = f"{label} (non-finite at step {recs[-1]['step']})" if diverged else label
        steps, grad_norms = run.curve(f"clipping/{label}", "grad_norm")
        traces[label_shown] = (steps, grad_norms, run.curve(f"clipping/{label}")[1])
    c = results["clipping"]
    plots.training_traces(traces, title=f"Exploding regime: tanh RNN with spectral radius {c['radius']:g}, "
                          f"T={c['length']}, SGD lr {c['learning_rate']:g}, {cfg.seeds} seeds (median, min-max)")\
        .savefig(run.figure("clipping"), dpi=110)

    curves = {}
    fig, axes = plots.panels(len(cfg.lengths))
    for ax, T in zip(axes, cfg.lengths):
        curves = {}
        for name in cfg.models:
            curves[name] = run.curve(f"{name}/T{T}")
        plots.learning_curves(curves, baseline=synthetic.ADDING_BASELINE_MSE, baseline_label="predict 1",
                              title=f"T = {T}", ax=ax)
    fig.suptitle(f"Adding problem training loss, Adam lr {cfg.learning_rate:g}, clip {cfg.clip_norm:g}, "
                 f"batch {cfg.batch_size}, H={cfg.hidden}, {cfg.seeds} seeds", fontsize=10)
    fig.savefig(run.figure("training_loss"), dpi=110)


if __name__ == "__main__":
    main()
