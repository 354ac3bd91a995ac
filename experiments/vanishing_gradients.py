"""Vanishing and exploding gradients: a tanh RNN against an LSTM and a GRU on long sequences.

On the adding problem at several lengths T, for each model, we measure how
much of the gradient of the last step's loss L reaches each hidden state,

    ||dL/dh_t||  for every t, against the distance T-1-t  (one backward pass),

and the Jacobian norm ||dh_T/dh_t||_2, over several seeds: median and
interquartile band.  Following Arjovsky, Shah & Bengio (2016) we do it at
initialisation and again after --steps Adam steps.  Then the two
initialisation sweeps that decide the picture -- the RNN's recurrent spectral
radius (vanishing below 1, Pascanu et al. 2013) and the LSTM's forget-gate
bias -- and gradient clipping in the exploding regime.

Every part is a sweep (``rnnlab.sweep``): for each model, the seeds x lengths
train as few compiled programs (lengths of similar size share one, the shorter
sequences padded, with ``lengths``: see ``--pad-lengths``), each initialisation sweep
is one program per cell kind, and the clipping demo's two arms are one program;
the points are spread over every device (and every process of a multi-process run).

    python experiments/vanishing_gradients.py            # the default, about a minute on 2 CPU cores
    python experiments/vanishing_gradients.py --quick    # about 20 seconds

Writes config.json, metrics.jsonl, results.json and PNG figures to --out.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import RNN, diagnostics, parallel, plots
from rnnlab.cells import make_cell
from rnnlab.data import synthetic
from rnnlab.experiment import BaseConfig, RunDir, cli, option, parse_config, train_sweep
from rnnlab.layers import CHRONO_MODELS, NAMED_MODELS, make_layer
from rnnlab.models import SequenceRegressor, recurrent_params
from rnnlab.sweep import Sweep, grid, init_params
from rnnlab.train import NonFiniteError, OptimConfig, make_optimizer


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/vanishing_gradients"
    steps: int = option(100, ge=1)  # Adam steps before the "trained" measurement
    lengths: tuple[int, ...] = option((50, 100, 200, 500), ge=2)
    # rnn, lstm, gru, irnn, ... and the remedies lstm_chrono, gru_chrono (T_max = T), rnn_orthogonal, exprnn
    models: tuple[str, ...] = option(("rnn", "lstm", "gru"), choices=tuple(NAMED_MODELS))
    hidden: int = option(64, ge=1)
    seeds: int = option(3, ge=1)
    batch_size: int = option(10, ge=1)
    measure_size: int = option(16, ge=1)  # examples per seed in each gradient measurement
    learning_rate: float = option(1e-3, gt=0.0)
    clip_norm: float = option(1.0, ge=0.0)  # 0: no clipping
    forget_bias: float = 1.0
    jacobian: bool = True
    float64: bool = True  # measure in float64: float32 underflows (< 1e-38) within ~100 steps for the RNN
    # which lengths of a model share a program (shorter ones padded, with ``lengths``); see length_groups
    pad_lengths: str = option("auto", choices=("auto", "always", "never"))
    sweep_length: int = option(100, ge=2)
    radii: tuple[float, ...] = option((0.5, 0.75, 1.0, 1.25, 1.5), gt=0.0)
    forget_biases: tuple[float, ...] = (0.0, 1.0, 3.0)
    clip_length: int = option(100, ge=2)
    clip_radius: float = option(1.5, gt=0.0)
    clip_steps: int = option(150, ge=1)
    clip_learning_rate: float = option(0.05, gt=0.0)
    checkpoint_every: int = option(0, ge=0)

    def apply_quick(self):
        self.lengths, self.hidden, self.seeds, self.steps = (20, 50), 32, 3, 30
        self.batch_size, self.measure_size, self.sweep_length = 10, 8, 50
        self.radii, self.clip_length, self.clip_steps = (0.5, 1.0, 1.5), 50, 60


def seed_keys(cfg):
    return jax.random.split(jax.random.key(cfg.seed), cfg.seeds)


@functools.cache
def initializer(name: str, hidden: int, rescaled: bool, t_max: int | None = None):
    """A jitted ``(key, forget_bias, radius) -> params`` of one point; both values are traced,
    so every sweep of a cell kind reuses one compile (``radius`` is used when ``rescaled``).
    ``t_max``: the chrono models' T_max (one compile per length for those)."""

    def init(key, forget_bias, radius):
        if rescaled:
            layer = RNN(make_cell(name, hidden, forget_bias=forget_bias, spectral_radius=radius))
        else:
            layer = make_layer(name, hidden, t_max=t_max, forget_bias=forget_bias)
        return SequenceRegressor(layer).init(key, jnp.zeros((1, 1, 2)))  # params do not depend on T

    return jax.jit(init)


def init_fn(cfg, name: str, rescaled: bool = False):
    """``(key, point) -> params`` for ``rnnlab.sweep.init_params``; a point may set ``forget_bias``
    or ``radius``; the chrono models take T_max from the point's ``T``."""

    def init(key, p):
        fn = initializer(name, cfg.hidden, rescaled, int(p["T"]) if name in CHRONO_MODELS else None)
        return fn(key, p.get("forget_bias", cfg.forget_bias), p.get("radius", cfg.clip_radius))

    return init


def apply_layer(cfg, name: str) -> RNN:
    """The layer of ``name`` for applying params (its init options, T_max included, do not matter)."""
    return make_layer(name, cfg.hidden, t_max=max(cfg.lengths + (cfg.sweep_length, 3)))


def point_keys(cfg, sweep: Sweep):
    """Each point's init key: its seed's, so every length and sweep value starts from the same draw."""
    return seed_keys(cfg)[sweep.column("seed")]


def padded_adding(seed, batch_size: int, T: int, max_T: int) -> dict:
    """An adding-problem batch of length ``T`` padded to ``max_T``, with its ``lengths``."""
    b = synthetic.adding_problem(seed, batch_size, T)
    x = np.zeros((batch_size, max_T, 2), np.float32)
    x[:, :T] = b["x"]
    return {"x": x, "y": b["y"], "lengths": np.full(batch_size, T, np.int32)}


def adding_rows(cfg, sweep: Sweep, stream, batch_size: int, max_T: int):
    """``batch(step) -> rows [S, B, ...]``: the data of point (T, seed) is a pure function of
    ``(cfg.seed, stream(T), seed, step)``, so every grid value of a seed sees the same data."""
    lengths, seeds = sweep.column("T"), sweep.column("seed")

    def batch(step: int) -> dict:
        rows = [
            padded_adding((cfg.seed * 10**7 + stream(int(T)), int(s), step), batch_size, int(T), max_T)
            for T, s in zip(lengths, seeds)
        ]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    return batch


def mse_loss(model):
    def loss(params, batch, key):
        pred = model.apply(params, batch["x"], batch["lengths"])[:, 0]
        return jnp.mean((pred - batch["y"]) ** 2), {}

    return loss


class Measurer:
    """The gradient profile of every point of a sweep in one program per (model, sweep shape),
    in float64 unless ``--no-float64``; the Jacobian norms only where ``jacobian`` (and ``--jacobian``)."""

    def __init__(self, cfg: Config):
        self.cfg, self._fns = cfg, {}

    def __call__(self, name: str, sweep: Sweep, params_s, batch_s, jacobian: bool = True):
        jacobian = jacobian and self.cfg.jacobian
        if (name, jacobian) not in self._fns:
            model = SequenceRegressor(apply_layer(self.cfg, name))
            self._fns[name, jacobian] = lambda p, x, y, lengths: diagnostics.regressor_gradient_profile(
                model, p, x, y, lengths, jacobian=jacobian
            )
        with jax.enable_x64(self.cfg.float64):
            dtype = np.float64 if self.cfg.float64 else np.float32
            params_s, x, y = jax.tree.map(lambda a: np.asarray(a, dtype), (params_s, batch_s["x"], batch_s["y"]))
            return sweep.run(self._fns[name, jacobian], params_s, x, y, batch_s["lengths"])


def gate_spectra(params_s, layer: RNN) -> tuple[list[list[float]], list[list[float]]]:
    """Each point's spectral radius and largest singular value of every gate block of ``w_hh``
    (expRNN's ``expm(A - A^T)``): two ``[S][G]`` lists."""
    w_s = np.asarray(jax.vmap(layer.recurrent_matrices)(recurrent_params(params_s))["l0"]["fwd"]["w_hh"], np.float64)
    H, G = layer.cell.hidden_size, layer.cell.num_gates

    def spectrum(w_hh):
        if not np.all(np.isfinite(w_hh)):  # a diverged point
            return float("nan"), float("nan")
        return float(np.max(np.abs(np.linalg.eigvals(w_hh)))), float(np.linalg.norm(w_hh, 2))

    spectra = [[spectrum(w[g * H : (g + 1) * H]) for g in range(G)] for w in w_s]
    return [[r for r, _ in row] for row in spectra], [[sv for _, sv in row] for row in spectra]


def pascanu_bound_ratio(jac_t, largest_singular_value: float) -> float:
    """``max_{k >= 1} ||dh_T/dh_{T-k}||_2 / lambda_1^k``: at most 1 for a tanh or ReLU RNN (|f'| <= 1),
    Pascanu, Mikolov & Bengio (2013): the Jacobian over k steps is a product of k factors
    ``diag(f') W_hh``, so gradients vanish when ``lambda_1 < 1``.  (k = 0 is the identity.)"""
    jac_k = diagnostics.by_distance(np.asarray(jac_t, np.float64))
    return float(np.max(jac_k[1:] / largest_singular_value ** np.arange(1, len(jac_k))))


def length_groups(cfg) -> list[tuple[int, ...]]:
    """The lengths that share a program, shorter ones padded to the group's longest.

    Sorted lengths join a group while the padded work, ``len(group) * max(group)``, stays
    within ``ratio`` times the unpadded ``sum(group)``: "always" pads everything into one
    program, "never" gives each length its own, and "auto" uses 1.5 on CPU and pads
    everything elsewhere.  On this project's 2-core CPU (T = 50..500, 3 seeds, cold cache)
    one program per length ran in 62 s and one padded program in 79 s (32 s and 66 s warm):
    there the compute grows with the padded rows.  On a GPU each scan step is
    latency-bound, so padding costs little per step and saves the compiles.
    """
    ratio = {"always": float("inf"), "never": 1.0}.get(
        cfg.pad_lengths, 1.5 if jax.default_backend() == "cpu" else float("inf")
    )
    groups: list[list[int]] = []
    for T in sorted(set(cfg.lengths)):
        if groups and (len(groups[-1]) + 1) * T <= ratio * (sum(groups[-1]) + T):
            groups[-1].append(T)
        else:
            groups.append([T])
    return [tuple(g) for g in groups]


def summaries(curves_st):
    """Curves in time order -> by-distance summary dict and per-seed decay ratios."""
    summary = diagnostics.summarize(diagnostics.by_distance(np.stack(curves_st)))
    ratios = [diagnostics.decay_ratio(c) for c in curves_st]
    return summary, ratios


def train_and_measure(cfg, run, measure, name: str, lengths: tuple[int, ...]) -> dict:
    """Every (T, seed) of one model in one sweep: init, measure, train ``cfg.steps``, measure.

    Returns ``{"tag": its metrics name, "sweep": ..., "by_T": {T: {"init"/"trained":
    {"grad", "jac", "radii", "row"}}}}``: each point's curves over its own T steps and its row.
    """
    max_T = max(lengths)
    sweep = Sweep(grid(T=lengths, seed=range(cfg.seeds)))
    layer = apply_layer(cfg, name)
    model = SequenceRegressor(layer)
    measure_batch = adding_rows(cfg, sweep, lambda T: 10**6, cfg.measure_size, max_T)(0)
    phases = {"init": init_params(sweep, init_fn(cfg, name), point_keys(cfg, sweep))}
    optimizer = make_optimizer(OptimConfig("adam", cfg.learning_rate, clip_norm=cfg.clip_norm), cfg.steps)
    tag = f"{name}/T{'-'.join(map(str, lengths))}"
    state = train_sweep(
        run,
        tag,
        cfg,
        sweep,
        params=phases["init"],
        loss_fn=mse_loss(model),
        optimizer=optimizer,
        init_keys=point_keys(cfg, sweep),
        batch_fn=adding_rows(cfg, sweep, lambda T: T, cfg.batch_size, max_T),
        tolerate_diverged=True,
    )  # a diverged seed (IRNN at long T) is reported, not fatal
    phases["trained"] = state.params
    out = {}
    for phase, params in phases.items():
        grad_st, jac_st = measure(name, sweep, params, measure_batch)
        radii, singular = gate_spectra(params, layer)
        for i, T in enumerate(sweep.column("T")):
            entry = out.setdefault(int(T), {}).setdefault(
                phase, {"grad": [], "jac": [], "radii": [], "sv": [], "row": []}
            )
            entry["grad"].append(grad_st[i][:T])
            entry["jac"].append(jac_st[i][:T])
            entry["radii"].append(radii[i])
            entry["sv"].append(singular[i])
            entry["row"].append(i)
    return {"tag": tag, "sweep": sweep, "by_T": out}


def init_sweep(cfg, measure, name: str, column: str, values) -> dict:
    """Gradient profiles at init over ``values`` x seeds of one init option: one program."""
    T = cfg.sweep_length
    sweep = Sweep(grid(**{column: values}, seed=range(cfg.seeds), T=[T]))
    params = init_params(sweep, init_fn(cfg, name, rescaled=column == "radius"), point_keys(cfg, sweep))
    batch = adding_rows(cfg, sweep, lambda T: 10**6, cfg.measure_size, T)(0)
    grad_st, _ = measure(name, sweep, params, batch, jacobian=False)  # the sweeps plot gradient norms only
    out = {}
    for v in values:
        rows = [i for i, p in enumerate(sweep.points) if p[column] == v]
        summary, ratios = summaries([grad_st[i] for i in rows])
        out[str(v)] = dict(summary, ratio_median=float(np.median(ratios)))
    return out


def main(argv=None):
    cfg = parse_config(Config, argv, __doc__)
    run = RunDir(cfg)
    say = (lambda *a: None) if cfg.quiet or not run.writes else (lambda *a: print(*a, flush=True))
    t_start = time.perf_counter()
    elapsed = lambda: time.perf_counter() - t_start
    with parallel.CompileStats() as compile_stats:
        measure = Measurer(cfg)
        # 1-2. gradient norm through time, at init and after training: one sweep per model
        trained = {}
        for name in cfg.models:
            for lengths in length_groups(cfg):
                part = train_and_measure(cfg, run, measure, name, lengths)
                trained.setdefault(name, []).append(part)
                say(
                    f"{name:5s} T={', '.join(map(str, lengths))}: measured at init and after {cfg.steps} steps "
                    f"[{elapsed():.0f} s]"
                )

        # 3. initialisation sweeps (at init, T = sweep_length): one program each
        sweeps = {
            "spectral_radius": init_sweep(cfg, measure, "rnn", "radius", cfg.radii),
            "forget_bias": init_sweep(cfg, measure, "lstm", "forget_bias", cfg.forget_biases),
            "length": cfg.sweep_length,
        }
        say(
            "spectral radius sweep, ratio:",
            {r: f"{s['ratio_median']:.1e}" for r, s in sweeps["spectral_radius"].items()},
        )
        say("forget bias sweep, ratio:", {b: f"{s['ratio_median']:.1e}" for b, s in sweeps["forget_bias"].items()})

        # 4. gradient clipping in the exploding regime (SGD, as in Pascanu et al. 2013): both arms in one program
        T = cfg.clip_length
        model = SequenceRegressor(RNN(make_cell("rnn", cfg.hidden, spectral_radius=cfg.clip_radius)))
        clip_sweep = Sweep(grid(clip_norm=[1.0, 0.0], seed=range(cfg.seeds), T=[T]))
        optimizer = make_optimizer(OptimConfig("sgd", cfg.clip_learning_rate, clip_norm=1.0), cfg.clip_steps)
        try:
            train_sweep(
                run,
                "clipping",
                cfg,
                clip_sweep,
                init_fn=init_fn(cfg, "rnn", rescaled=True),
                loss_fn=mse_loss(model),
                optimizer=optimizer,
                init_keys=point_keys(cfg, clip_sweep),
                hyperparameters=("clip_norm",),
                num_steps=cfg.clip_steps,
                log_every=1,
                tolerate_diverged=True,
                batch_fn=adding_rows(cfg, clip_sweep, lambda T: 2 * 10**6 + T, cfg.batch_size, T),
            )
        except NonFiniteError:
            pass  # every point diverged: the log says where
    if not run.writes:
        return None  # process 0 writes the results
    results = collect_results(cfg, run, trained, sweeps, clip_sweep)
    results["devices"], results["processes"] = jax.device_count(), jax.process_count()
    results["compile"] = compile_stats.as_dict()
    results["runtime_s"] = elapsed()
    run.write_results(results)
    save_figures(cfg, run, results, trained, clip_sweep)
    say(
        f"wrote {run.path}/results.json and figures in {elapsed():.0f} s "
        f"({results['compile']['programs']} programs compiled in {results['compile']['seconds']:.1f} s, "
        f"{results['devices']} device(s))"
    )
    return results


def collect_results(cfg, run, trained, sweeps, clip_sweep) -> dict:
    results = {
        "models": {m: NAMED_MODELS[m] for m in cfg.models},
        "forget_bias": cfg.forget_bias,
        "gradient_norms": {},
        "jacobian_norms": {},
        "ratios": {},
        "spectral_radii": {},
        "largest_singular_values": {},
        "pascanu_bound": {},
        "final_loss": {},
        "diverged_seeds": {},
    }
    keys = ("gradient_norms", "jacobian_norms", "ratios", "spectral_radii", "largest_singular_values", "pascanu_bound")
    for name, parts in trained.items():
        for key in keys + ("final_loss",):
            results[key][name] = {}
        for part in parts:
            last = run.records(part["tag"])[-1]["loss_per_point"]
            for T, phases in sorted(part["by_T"].items()):
                for key in keys:
                    results[key][name][str(T)] = {}
                # seeds whose training diverged (non-finite params) are left out of the summaries and named
                diverged = [i for i, g in enumerate(phases["trained"]["grad"]) if not np.all(np.isfinite(g))]
                results["diverged_seeds"].setdefault(name, {})[str(T)] = diverged
                finite = [i for i in range(len(phases["trained"]["grad"])) if i not in diverged] or None
                for phase, m in phases.items():
                    if phase == "trained" and finite is not None:
                        m = {k: [v[i] for i in finite] for k, v in m.items()}
                    summary, ratios = summaries(m["grad"])
                    results["gradient_norms"][name][str(T)][phase] = summary
                    if cfg.jacobian:
                        results["jacobian_norms"][name][str(T)][phase] = summaries(m["jac"])[0]
                    results["ratios"][name][str(T)][phase] = {"median": float(np.median(ratios)), "per_seed": ratios}
                    results["spectral_radii"][name][str(T)][phase] = np.median(m["radii"], axis=0).tolist()
                    results["largest_singular_values"][name][str(T)][phase] = np.median(m["sv"], axis=0).tolist()
                    if cfg.jacobian and len(m["sv"][0]) == 1:  # an Elman RNN: |f'| <= 1 for tanh and ReLU
                        results["pascanu_bound"][name][str(T)][phase] = {
                            "max_jacobian_over_bound": max(
                                pascanu_bound_ratio(j, sv[0]) for j, sv in zip(m["jac"], m["sv"])
                            )
                        }
                losses = [last[i] for i in phases["trained"]["row"]]
                results["final_loss"][name][str(T)] = {"median": float(np.median(losses)), "per_seed": losses}
                r = results["ratios"][name][str(T)]
                print(
                    f"{name:5s} T={T:4d}  ||dL/dh_1|| / ||dL/dh_T||: init {r['init']['median']:.2e}, "
                    f"after {cfg.steps} steps {r['trained']['median']:.2e}",
                    flush=True,
                ) if not cfg.quiet else None
    results["sweeps"] = sweeps

    records = run.records("clipping")
    loss_sn = np.array([r["loss_per_point"] for r in records], np.float64).T
    grad_sn = np.array([r["grad_norm_per_point"] for r in records], np.float64).T
    steps = np.array([r["step"] for r in records])
    clipping = {}
    for label, clip in (("clip 1.0", 1.0), ("no clipping", 0.0)):
        rows = [i for i, p in enumerate(clip_sweep.points) if p["clip_norm"] == clip]
        first_bad = [
            next(
                (int(s) for s, l, g in zip(steps, loss_sn[i], grad_sn[i]) if not (np.isfinite(l) and np.isfinite(g))),
                None,
            )
            for i in rows
        ]
        diverged = [f"seed {clip_sweep.points[i]['seed']} at step {b}" for i, b in zip(rows, first_bad) if b]
        clipping[label] = {
            "diverged": ("non-finite loss or gradient: " + ", ".join(diverged)) if diverged else None,
            "diverged_at_step": first_bad,
            "max_grad_norm": float(np.nanmax(grad_sn[rows])),  # inf once a norm overflows
            "final_loss_median": float(np.median(loss_sn[rows, -1])),
            "steps_completed": min((b - 1 for b in first_bad if b), default=int(steps[-1])),
        }
        if not cfg.quiet:
            print(
                f"{label}: max pre-clip gradient norm {clipping[label]['max_grad_norm']:.3g}, final loss "
                f"{clipping[label]['final_loss_median']:.3g}"
                + (f" ({clipping[label]['diverged']})" if diverged else "")
            )
    results["clipping"] = dict(
        clipping, radius=cfg.clip_radius, length=cfg.clip_length, optimizer="sgd", learning_rate=cfg.clip_learning_rate
    )
    return results


def save_figures(cfg: Config, run: RunDir, results: dict, trained: dict, clip_sweep: Sweep):
    inits = {
        "rnn": "tanh RNN PyTorch uniform",
        "lstm": f"LSTM forget bias {cfg.forget_bias:g}",
        "gru": "GRU PyTorch uniform",
        "irnn": "IRNN: ReLU, W_hh = I",
        "lstm_chrono": "LSTM chrono T_max = T",
        "gru_chrono": "GRU chrono T_max = T",
        "rnn_orthogonal": "tanh RNN orthogonal W_hh",
        "exprnn": "expRNN: tanh, W_hh = expm(A - A^T)",
    }
    init = textwrap.fill(
        "init: " + "; ".join(inits.get(m, NAMED_MODELS[m]) for m in cfg.models), width=45 * len(cfg.lengths)
    )
    phases = {"init": "at initialisation", "trained": f"after {cfg.steps} Adam steps"}
    for key, ylabel in (
        ("gradient_norms", r"$\|\partial L/\partial h_t\|$"),
        ("jacobian_norms", r"$\|\partial h_T/\partial h_t\|_2$"),
    ):
        if not results[key][cfg.models[0]].get(str(cfg.lengths[0])):
            continue
        fig, axes = plots.panels(len(cfg.lengths), rows=len(phases), sharey=False)
        for row, (phase, phase_label) in enumerate(phases.items()):
            for ax, T in zip(axes[row * len(cfg.lengths) :], cfg.lengths):
                series = {name: results[key][name][str(T)][phase] for name in cfg.models}
                plots.norms_by_distance(series, title=f"T = {T}, {phase_label}", ylabel=ylabel, ax=ax)
        fig.suptitle(
            f"{ylabel} on the adding problem, H={cfg.hidden}, median and IQR of {cfg.seeds} seeds "
            f"(measured in {'float64' if cfg.float64 else 'float32'})\n{init}",
            fontsize=10,
        )
        run.save_figure(fig, key)

    fig, axes = plots.panels(2, sharey=False, width=5.5)
    sw = results["sweeps"]
    plots.norms_by_distance(
        {f"radius {r}": s for r, s in sw["spectral_radius"].items()},
        ax=axes[0],
        title=f"tanh RNN at init, W_hh rescaled to spectral radius ρ, T={sw['length']}",
    )
    plots.norms_by_distance(
        {f"forget bias {b}": s for b, s in sw["forget_bias"].items()},
        ax=axes[1],
        title=f"LSTM at init, forget-gate bias b_f, T={sw['length']}",
    )
    fig.suptitle(
        f"Initialisation decides the picture (H={cfg.hidden}, median and IQR of {cfg.seeds} seeds)", fontsize=10
    )
    run.save_figure(fig, "init_sweeps")

    steps, grad_sn = run.curve("clipping", "grad_norm")
    loss_sn = run.curve("clipping")[1]
    traces = {}
    for label, clip in (("clip 1.0", 1.0), ("no clipping", 0.0)):
        rows = [i for i, p in enumerate(clip_sweep.points) if p["clip_norm"] == clip]
        first_bad = [b for b in results["clipping"][label]["diverged_at_step"] if b]
        label_shown = f"{label} (non-finite from step {min(first_bad)})" if first_bad else label
        traces[label_shown] = (steps, grad_sn[rows], loss_sn[rows])
    c = results["clipping"]
    run.save_figure(
        plots.training_traces(
            traces,
            title=f"Exploding regime: tanh RNN with spectral radius {c['radius']:g}, T={c['length']}, "
            f"SGD lr {c['learning_rate']:g}, {cfg.seeds} seeds (median, min-max)",
        ),
        "clipping",
    )

    fig, axes = plots.panels(len(cfg.lengths))
    for ax, T in zip(axes, cfg.lengths):
        curves = {}
        for name in cfg.models:
            part = next(p for p in trained[name] if T in p["by_T"])
            steps, loss_sn = run.curve(part["tag"])
            curves[name] = (steps, loss_sn[part["by_T"][T]["trained"]["row"]])
        plots.learning_curves(
            curves, baseline=synthetic.ADDING_BASELINE_MSE, baseline_label="predict 1", title=f"T = {T}", ax=ax
        )
    fig.suptitle(
        f"Adding problem training loss, Adam lr {cfg.learning_rate:g}, clip {cfg.clip_norm:g}, "
        f"batch {cfg.batch_size}, H={cfg.hidden}, {cfg.seeds} seeds",
        fontsize=10,
    )
    run.save_figure(fig, "training_loss")


if __name__ == "__main__":
    cli(main)
