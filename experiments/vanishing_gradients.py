"""Vanishing and exploding gradients: a tanh RNN against an LSTM and a GRU on long sequences.

On the adding problem at several lengths T, for each model and several seeds,
at initialisation and after --steps Adam steps (Arjovsky, Shah & Bengio 2016):

    ||dL/dh_t|| for every t against the distance T-1-t (one backward pass), the Jacobian
    norm ||dh_T/dh_t||_2, and the largest Lyapunov exponents lambda_i of the tangent
    dynamics, whose exp(lambda_1) is the factor per step the gradient should decay by.

Then the initialisation sweeps that decide the picture (the RNN's spectral radius, Pascanu
et al. 2013; the LSTM's forget-gate bias) and gradient clipping in the exploding regime.  Every
part is a sweep (``rnnlab.sweep``): few compiled programs (lengths of similar size share one:
``--pad-lengths``), the points spread over every device and process.

    python experiments/vanishing_gradients.py            # the default, about a minute on 2 CPU cores
    python experiments/vanishing_gradients.py --quick    # about 20 seconds; figures and results.json in --out
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import diagnostics, parallel, plots, zoo
from rnnlab.data import synthetic
from rnnlab.experiment import (
    SEED_MAX,
    PerModelConfig,
    RunDir,
    cli,
    model_spec,
    option,
    parse_config,
    refuse_unused,
    setup,
    train_sweep,
)
from rnnlab.linen import SequenceRegressor, constrain_recurrent, recurrent_params, regressor_mse, regressor_profile
from rnnlab.metrics import divergence_summary, over_seeds, perturb_weights, perturbation_ranges
from rnnlab.sweep import Sweep, grid, init_params, length_groups, training_bytes
from rnnlab.train import NonFiniteError, OptimConfig, make_optimizer

PHASES = ("init", "trained")


@dataclasses.dataclass
class Config(PerModelConfig):
    out: str = "runs/vanishing_gradients"
    steps: int = option(100, ge=1)  # Adam steps before the "trained" measurement
    lengths: tuple[int, ...] = option((50, 100, 200, 500), ge=2)
    models: tuple[str, ...] = option(("rnn", "lstm", "gru"), choices=tuple(zoo.MODELS))  # chrono: T_max = T
    hidden: int = option(64, ge=1)
    seeds: int = option(3, ge=1)
    batch_size: int = option(10, ge=1)
    measure_size: int = option(16, ge=1)  # examples per seed in each gradient measurement
    learning_rate: float = option(1e-3, gt=0.0)
    clip_norm: float = option(1.0, ge=0.0)  # 0: no clipping
    forget_bias: float = 1.0
    jacobian: bool = True
    float64: bool = True  # measure in float64: float32 underflows (< 1e-38) within ~100 steps for the RNN
    pad_lengths: str = option("auto", choices=("auto", "always", "never"))  # rnnlab.sweep.length_groups
    sweep_length: int = option(100, ge=2)
    radii: tuple[float, ...] = option((0.5, 0.75, 1.0, 1.25, 1.5), gt=0.0)
    forget_biases: tuple[float, ...] = (0.0, 1.0, 3.0)
    clip_length: int = option(100, ge=2)
    clip_radius: float = option(1.5, gt=0.0)
    clip_steps: int = option(150, ge=1)
    clip_learning_rate: float = option(0.05, gt=0.0)
    # the demo is chaotic in float32: a different CPU's rounding moves where it diverges, so it also
    # runs from N copies of each seed's weights multiplied by (1 + scale * N(0, 1)), and the
    # figures worth quoting are the ranges over them (perturbation 0: the weights as drawn)
    clip_perturbations: int = option(8, ge=0)
    clip_perturbation_scale: float = option(1e-7, gt=0.0)
    clip_perturbation_seed: int = option(0, ge=0, le=SEED_MAX)
    checkpoint_every: int = option(0, ge=0)

    def apply_quick(self):
        self.lengths, self.hidden, self.seeds, self.steps = (20, 50), 32, 3, 30
        self.batch_size, self.measure_size, self.sweep_length = 10, 8, 50
        self.radii, self.clip_length, self.clip_steps = (0.5, 1.0, 1.5), 50, 60
        self.clip_perturbations = 2

    def check(self):
        super().check()
        unperturbed = (self.clip_perturbations > 0, "--clip-perturbations is 0")
        lstm = any(zoo.MODELS[m].takes_forget_bias for m in self.models)
        no_lstm = "no model of --models takes a forget-gate bias (lstm does; --forget-biases sweeps it)"
        unused = {"clip_perturbation_scale": unperturbed, "clip_perturbation_seed": unperturbed}
        refuse_unused(self, unused | {"forget_bias": (lstm, no_lstm)})

    def memory_needs(self):
        """The least each part allocates (``training_bytes``): the main job at its longest T, the
        init sweeps and the clipping demo's grid, 2 arms x (perturbations + 1) x seeds points."""
        H, adding = self.hidden, 2  # the adding problem's two input features; measured in float64 by default
        measure = training_bytes(self.seeds, self.measure_size, max(self.lengths), adding, H, 8 if self.float64 else 4)
        train = training_bytes(self.seeds, self.batch_size, max(self.lengths), adding, H)
        init_points = self.seeds * max(len(self.radii), len(self.forget_biases))
        clip_points = 2 * (self.clip_perturbations + 1) * self.seeds
        init = training_bytes(init_points, self.measure_size, self.sweep_length, adding, H, 8)
        clip = training_bytes(clip_points, self.batch_size, self.clip_length, adding, H)
        return [(("lengths", "batch_size", "measure_size", "hidden"), "the gradient profiles", max(measure, train)),
                (("radii", "forget_biases", "sweep_length", "seeds"), f"the init sweeps' {init_points} points", init),
                (("clip_perturbations", "seeds", "clip_length"), f"the clipping demo's {clip_points} sweep points", clip)]  # fmt: skip


@functools.cache
def initializer(spec, rescaled: bool, t_max: int | None = None):
    """A jitted ``(key, forget_bias, radius) -> params``: both traced, so a sweep of a cell kind is one
    compile (``radius`` used when ``rescaled``); ``t_max``: chrono's T_max, one compile per length."""
    options = lambda radius: {"spectral_radius": radius} if rescaled else {}
    layer = lambda fb, radius: spec.layer(t_max=t_max, forget_bias=fb, cell_options=options(radius))
    return jax.jit(lambda key, fb, radius: SequenceRegressor(layer(fb, radius)).init(key, jnp.zeros((1, 1, 2))))


def init_fn(cfg, name: str, rescaled: bool = False):
    """``(key, point) -> params`` for ``init_params``; a point may set ``forget_bias``, ``radius``, ``T``."""
    t_max = lambda p: int(p["T"]) if zoo.MODELS[name].needs_t_max else None
    fb_radius = lambda p: (p.get("forget_bias", cfg.forget_bias), p.get("radius", cfg.clip_radius))
    return lambda key, p: initializer(model_spec(cfg, name), rescaled, t_max(p))(key, *fb_radius(p))


def apply_layer(cfg, name: str, lengths=()):
    """The layer of ``name`` for applying params: T_max matters only where it sets a constraint (IndRNN)."""
    t_max = max(lengths) if zoo.MODELS[name].t_max_constrains else max(cfg.lengths + (cfg.sweep_length, 3))
    return model_spec(cfg, name).layer(t_max=t_max)


def point_keys(cfg, sweep: Sweep):
    """Each point's init key: its seed's, so every length and sweep value starts from the same draw."""
    return jax.random.split(jax.random.key(cfg.seed), cfg.seeds)[sweep.column("seed")]


def adding_rows(cfg, sweep: Sweep, stream, batch_size: int, max_T: int):
    """``batch(step) -> rows [S, B, ...]``: point (T, seed)'s data is a pure function of
    ``(cfg.seed, stream(T), seed, step)``, so every grid value of a seed sees the same data."""
    seed_of, lengths, seeds = (lambda T: cfg.seed * 10**7 + stream(T)), sweep.column("T"), sweep.column("seed")
    return synthetic.padded_rows(synthetic.adding_problem, seed_of, lengths, seeds, batch_size, max_T)


def mse_loss(model):
    return lambda params, batch, key: (regressor_mse(model, params, batch), {})


@functools.cache
def profile_fn(layer, jacobian: bool):
    """``-> (grad_t, jac_t, lambda_k)`` of a point; one function per (layer, jacobian): phases share a compile."""
    return functools.partial(regressor_profile, SequenceRegressor(layer), jacobian=jacobian)


def measure(cfg, layer, sweep: Sweep, params_s, batch_s, jacobian: bool = True):
    """Every point's ``profile_fn`` in one program, in float64 unless ``--no-float64``."""
    profile = profile_fn(layer, jacobian and cfg.jacobian)
    with jax.enable_x64(cfg.float64):
        dtype = np.float64 if cfg.float64 else np.float32
        params_s, x, y = jax.tree.map(lambda a: np.asarray(a, dtype), (params_s, batch_s["x"], batch_s["y"]))
        return sweep.run(profile, params_s, x, y, batch_s["lengths"])


def train_and_measure(cfg, run, name: str, lengths: tuple[int, ...]) -> dict[int, dict]:
    """Every (T, seed) of one model in one sweep: init, measure, train ``cfg.steps``, measure.

    Returns ``{T: {"curve": (steps, losses [S_T, N]), phase: {"grad", "jac" [S_T, T], "radii", "sv" [S_T, G],
    "lyap" [S_T, K], "finite_time" [S_T]}}}``."""
    max_T, tag, layer = max(lengths), f"{name}/T{'-'.join(map(str, lengths))}", apply_layer(cfg, name, lengths)
    sweep = Sweep(grid(T=lengths, seed=range(cfg.seeds)))
    keys, measure_batch = point_keys(cfg, sweep), adding_rows(cfg, sweep, lambda T: 10**6, cfg.measure_size, max_T)(0)
    params = {"init": init_params(sweep, init_fn(cfg, name), keys)}
    optimizer = make_optimizer(OptimConfig("adam", cfg.learning_rate, clip_norm=cfg.clip_norm), cfg.steps)
    loss_fn, batch_fn = mse_loss(SequenceRegressor(layer)), adding_rows(cfg, sweep, lambda T: T, cfg.batch_size, max_T)
    # a diverged seed (IRNN at long T) is reported, not fatal
    kwargs = dict(loss_fn=loss_fn, optimizer=optimizer, init_keys=keys, batch_fn=batch_fn, tolerate_diverged=True)
    kwargs["constrain"] = functools.partial(constrain_recurrent, layer)
    params["trained"] = train_sweep(run, tag, cfg, sweep, params=params["init"], **kwargs).params
    steps, loss_sn = run.curve(tag) if run.writes else ([0], np.full((len(sweep.points), 1), np.nan))  # process 0 logs
    rows = {T: np.flatnonzero(sweep.column("T") == T) for T in lengths}
    out = {T: {"curve": (steps, loss_sn[rows[T]])} for T in lengths}
    for phase in PHASES:
        grad_st, jac_st, lyap_sk, finite_s = map(np.asarray, measure(cfg, layer, sweep, params[phase], measure_batch))
        radii, sv = diagnostics.gate_spectra(layer, recurrent_params(params[phase]))
        for T, r in rows.items():
            out[T][phase] = dict(grad=grad_st[r, :T], jac=jac_st[r, :T], radii=radii[r], sv=sv[r],
                                 lyap=lyap_sk[r], finite_time=finite_s[r])  # fmt: skip
    return out


def model_results(cfg, measured: dict) -> dict:
    """The results of one (model, T): each key of results.json, phase by phase."""
    final_loss = over_seeds(measured["curve"][1][:, -1])
    out = {"final_loss": final_loss, "diverged_seeds": final_loss["diverged_seeds"]}
    return out | diagnostics.profile_results({p: measured[p] for p in PHASES}, jacobian=cfg.jacobian)


def init_sweep(cfg, name: str, column: str, values) -> dict:
    """Gradient profiles at init over ``values`` x seeds of one init option: one program."""
    T = cfg.sweep_length
    sweep = Sweep(grid(**{column: values}, seed=range(cfg.seeds), T=[T]))
    params = init_params(sweep, init_fn(cfg, name, rescaled=column == "radius"), point_keys(cfg, sweep))
    batch = adding_rows(cfg, sweep, lambda T: 10**6, cfg.measure_size, T)(0)
    grad_st = np.asarray(
        measure(cfg, apply_layer(cfg, name, [T]), sweep, params, batch, jacobian=False)[0]
    )  # gradient norms only
    ratio = lambda g_st: over_seeds([diagnostics.decay_ratio(g) for g in g_st])["median"]
    rows = {v: grad_st[sweep.column(column) == v] for v in values}
    return {str(v): dict(diagnostics.summarize(g_st), ratio_median=ratio(g_st)) for v, g_st in rows.items()}


def clipping_demo(cfg, run) -> tuple[dict, dict]:
    """Gradient clipping in the exploding regime (SGD, as in Pascanu et al. 2013): both arms, clip norm 1
    and none, in one program.  ``(results, traces)``: where each seed's loss or norm first went non-finite,
    and each arm's ``(steps, grad norms, losses)`` for the figure, read once from the run's log."""
    T = cfg.clip_length
    model = SequenceRegressor(zoo.make_layer("rnn", cfg.hidden, cell_options={"spectral_radius": cfg.clip_radius}))
    perturbations = range(cfg.clip_perturbations + 1)
    sweep = Sweep(grid(clip_norm=[1.0, 0.0], perturbation=perturbations, seed=range(cfg.seeds), T=[T]))
    optimizer = make_optimizer(OptimConfig("sgd", cfg.clip_learning_rate, clip_norm=1.0), cfg.clip_steps)
    batch_fn = adding_rows(cfg, sweep, lambda T: 2 * 10**6 + T, cfg.batch_size, T)
    init = init_fn(cfg, "rnn", rescaled=True)
    seeds_of = lambda p: (cfg.clip_perturbation_seed, int(p["perturbation"]), int(p["seed"]))
    init_perturbed = lambda key, p: perturb_weights(
        init(key, p), cfg.clip_perturbation_scale, p["perturbation"], seeds_of(p)
    )
    kwargs = dict(init_fn=init_perturbed, loss_fn=mse_loss(model), optimizer=optimizer)
    kwargs |= dict(init_keys=point_keys(cfg, sweep), hyperparameters=("clip_norm",), num_steps=cfg.clip_steps)
    try:
        train_sweep(run, "clipping", cfg, sweep, log_every=1, tolerate_diverged=True, batch_fn=batch_fn, **kwargs)
    except NonFiniteError:
        pass  # every point diverged: the log says where
    if not run.writes:
        return {}, {}
    (steps, loss_sn), grad_sn = run.curve("clipping"), run.curve("clipping", "grad_norm")[1]
    out = {"radius": cfg.clip_radius, "length": T, "optimizer": "sgd", "learning_rate": cfg.clip_learning_rate}
    out["perturbations"] = {"count": cfg.clip_perturbations, "scale": cfg.clip_perturbation_scale}
    traces = {}
    for label, clip in (("clip 1.0", 1.0), ("no clipping", 0.0)):
        arm = sweep.column("clip_norm") == clip
        rows_of = lambda k: np.flatnonzero(arm & (sweep.column("perturbation") == k))
        summaries = [
            divergence_summary(steps, loss_sn[r], grad_sn[r], sweep.column("seed")[r])
            for r in map(rows_of, perturbations)
        ]
        out[label] = summaries[0] | {"under_perturbation": perturbation_ranges(summaries)}
        bad = [b for b in out[label]["diverged_at_step"] if b]
        rows = rows_of(0)
        traces[f"{label} (non-finite from step {min(bad)})" if bad else label] = (steps, grad_sn[rows], loss_sn[rows])
    return out, traces


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run, t_start = RunDir(cfg), time.perf_counter()
    say = (lambda *a: None) if cfg.quiet or not run.writes else (lambda *a: print(*a, flush=True))
    results = {"models": {m: zoo.MODELS[m].description for m in cfg.models}, "forget_bias": cfg.forget_bias}
    results["cell_options"] = {m: dict(model_spec(cfg, m).cell_options) for m in cfg.models}
    results["path"] = {m: model_spec(cfg, m).resolved_path() for m in cfg.models}
    results |= {key: {} for key in (*diagnostics.PROFILE_KEYS, "final_loss", "diverged_seeds")}
    curves = {}  # training loss, by model and T
    with parallel.CompileStats() as compile_stats:
        for name in cfg.models:  # 1-2. gradient norm through time, at init and after training
            pad = "never" if zoo.MODELS[name].t_max_constrains else cfg.pad_lengths  # one T_max per program
            for lengths in length_groups(cfg.lengths, pad):
                for T, measured in train_and_measure(cfg, run, name, lengths).items():
                    curves.setdefault(name, {})[str(T)] = measured["curve"]
                    for key, value in model_results(cfg, measured).items():
                        results[key].setdefault(name, {})[str(T)] = value
                    r = results["ratios"][name][str(T)]
                    say(
                        f"{name:5s} T={T:4d}  ||dL/dh_1|| / ||dL/dh_T||:",
                        ", ".join(f"{p} {r[p]['median']:.2e}" for p in PHASES),
                    )
        results["sweeps"] = {  # 3. initialisation sweeps (at init, T = sweep_length): one program each
            "spectral_radius": init_sweep(cfg, "rnn", "radius", cfg.radii),
            "forget_bias": init_sweep(cfg, "lstm", "forget_bias", cfg.forget_biases),
            "length": cfg.sweep_length,
        }
        for kind in ("spectral_radius", "forget_bias"):
            say(f"{kind} sweep, ratio:", {v: f"{s['ratio_median']:.1e}" for v, s in results["sweeps"][kind].items()})
        results["clipping"], clip_traces = clipping_demo(cfg, run)  # 4. clipping in the exploding regime
    results["runtime_s"] = time.perf_counter() - t_start
    if (
        run.finish(
            results, compile_stats, lambda: run.save_figures(plots.main_job_figures(cfg, results, curves, clip_traces))
        )
        is None
    ):
        return None  # process 0 writes the results
    for label, c in ((label, results["clipping"][label]) for label in ("clip 1.0", "no clipping")):
        norm, loss = f"{c['max_grad_norm']:.3g}", f"{c['final_loss_median']:.3g}"
        say(f"{label}: max pre-clip gradient norm {norm}, final loss {loss}", c["diverged"] or "")
    compiled = f"{results['compile']['programs']} programs compiled in {results['compile']['seconds']:.1f} s"
    say(f"wrote {run.path}/results.json and figures in {results['runtime_s']:.0f} s ({compiled})")
    return results


if __name__ == "__main__":
    cli(main)
