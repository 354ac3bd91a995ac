"""Can a nonlinear RNN be evaluated in parallel over time?  Newton's iterations against lambda_1.

Newton's method over the whole sequence (``path="newton"``, DEER; ``"quasi_newton"``, its
diagonal variant: ``rnnlab.newton``) turns the T sequential steps into a few linear recurrences
solved in parallel.  How few depends on the dynamics: Gonzalez, Kozachkov et al. (NeurIPS 2025)
show that the largest Lyapunov exponent lambda_1 sets the conditioning, few iterations when
lambda_1 < 0 and none enough when it is positive.  The exponent that says how fast gradients
vanish (the main job, experiments/vanishing_gradients.py) should say whether a model can be
run in parallel.  Measured here, in float64 with the reference's tolerance 1e-8:

  1. a tanh RNN (H=32, 4 inputs ~ N(0, 1), one sequence) with W_hh rescaled to spectral radius
     rho, swept across lambda_1 = 0, at T = 100, 1000, 10000;
  2. the main job's RNN, LSTM and GRU (H=64, adding-problem inputs), at init and after the main
     job's training (Adam lr 1e-3, batch 10, 100 steps at T=100), at T = 100 and 1000.

For each: iterations to tolerance of Newton and quasi-Newton, lambda_1 of the same sequence
(``diagnostics.lyapunov_exponents``), and the largest difference from the sequential scan.
Iteration counts do not depend on the hardware.

    python experiments/parallel_newton.py           # about 5 minutes on 2 CPU cores
    python experiments/parallel_newton.py --quick   # seconds; results.json and the figure in --out
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import optax

from rnnlab import ElmanCell, diagnostics, plots, unroll, zoo
from rnnlab.data import synthetic
from rnnlab.experiment import RunDir, cli, option, parse_config, setup
from rnnlab.experiment.cli import PROGRESS, BaseConfig
from rnnlab.newton import NewtonOptions
from rnnlab.sweep import training_bytes

METHODS = ("newton", "quasi_newton")


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/parallel_newton"
    radii: tuple[float, ...] = option((0.5, 1.0, 1.25, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.5, 3.0, 4.0), gt=0.0)
    lengths: tuple[int, ...] = option((100, 1000, 10000), ge=2)
    hidden: int = option(32, ge=1)  # the radius sweep's tanh RNN
    models: tuple[str, ...] = option(("rnn", "lstm", "gru"), choices=("rnn", "lstm", "gru"))
    model_hidden: int = option(64, ge=1)  # the main job's width
    model_lengths: tuple[int, ...] = option((100, 1000), ge=2)
    steps: int = option(100, ge=1)  # the main job's Adam steps before "trained"
    train_length: int = option(100, ge=2)
    tol: float = option(1e-8, gt=0.0)
    max_iter: int = option(300, ge=1, le=2**31 - 1)  # Newton's (an int32 counter)
    quasi_max_iter: int = option(1000, ge=1, le=2**31 - 1)
    quasi_max_length: int = option(10000, ge=2)  # quasi-Newton only up to this T

    def apply_quick(self):
        self.radii, self.lengths, self.hidden = (1.0, 3.0), (50, 200), 8
        self.model_hidden, self.model_lengths, self.steps, self.train_length = 8, (50,), 5, 20
        self.max_iter, self.quasi_max_iter = 60, 100

    def memory_needs(self):
        """The least a Newton solve holds in float64: the sequence, its states and Newton's
        Jacobians, ``T x H x H`` (DEER's dense linear recurrence; quasi-Newton's diagonal is less)."""
        newton = lambda T, H, inputs: int(T) * (inputs + H + H * H) * 8
        return [
            (("lengths", "hidden"), "Newton over the longest sequence", newton(max(self.lengths), self.hidden, 4)),
            (
                ("model_lengths", "model_hidden"),
                "Newton over the models' longest sequence",
                newton(max(self.model_lengths), self.model_hidden, 2),
            ),
            (
                ("train_length", "model_hidden"),
                "the training batch",
                training_bytes(1, 10, self.train_length, 2, self.model_hidden, 8),
            ),
        ]


def solve(cell, params, x_bti, method, cfg):
    """One Newton solve: ``(iterations, converged, residual, max error vs the sequential scan)``."""
    max_iter = cfg.max_iter if method == "newton" else cfg.quasi_max_iter
    options = NewtonOptions(tol=cfg.tol, max_iter=max_iter, fallback=True)  # the record says if it converged
    run = jax.jit(lambda p, x: unroll(cell, p, x, path=method, newton_options=options, return_info=True))
    y, _, info = run(params, x_bti)
    reference = jax.jit(lambda p, x: unroll(cell, p, x, path="fused")[0])(params, x_bti)
    converged = bool(info.converged)
    # with the fallback the outputs are the scan's when Newton did not converge: no error to report then
    error = float(jnp.max(jnp.abs(y - reference))) if converged else None
    return int(info.iterations), converged, float(info.residual), error


def lambda_1(cell, params, x_bti) -> float:
    return float(jax.jit(lambda p, x: diagnostics.lyapunov_exponents(cell, p, x, count=1)[0])(params, x_bti[0]))


def records(cfg, say, model, radius, T, phase, cell, params, x_bti):
    """The run's records for one model and sequence, one per method."""
    lam = lambda_1(cell, params, x_bti)
    out = []
    for method in METHODS:
        if method == "quasi_newton" and T > cfg.quasi_max_length:
            continue
        t0 = time.perf_counter()
        iterations, converged, residual, error = solve(cell, params, x_bti, method, cfg)
        out.append(
            dict(
                model=model,
                radius=radius,
                T=T,
                phase=phase,
                lambda_1=lam,
                method=method,
                iterations=iterations,
                converged=converged,
                residual=residual,
                max_error_vs_sequential=error,
            )  # fmt: skip
        )
        how = f"{iterations:4d} iterations" + ("" if converged else f", not converged (residual {residual:.2g})")
        say(
            f"{model:4s} rho={radius} T={T:6d} {phase:7s} lambda_1={lam:+.3f} {method:12s} {how}",
            f"({time.perf_counter() - t0:.1f} s)",
        )
    return out


def radius_sweep(cfg, say):
    """Part 1: the tanh RNN across lambda_1 = 0."""
    out = []
    for radius in cfg.radii:
        cell = ElmanCell(cfg.hidden, spectral_radius=radius)
        params = cell.init(jax.random.key(cfg.seed), 4, jnp.float64)
        for T in cfg.lengths:
            x = jax.random.normal(jax.random.key(cfg.seed + 1), (1, T, 4), jnp.float64)
            out += records(cfg, say, "tanh", radius, T, "init", cell, params, x)
    return out


def train(cfg, name, layer, params):
    """The main job's training: Adam lr 1e-3 on the adding problem, MSE of a linear readout."""
    readout = {"w": jnp.zeros((cfg.model_hidden,), jnp.float64), "b": jnp.zeros((), jnp.float64)}

    def loss(p, batch):
        y, _ = layer.apply(p["rnn"], batch["x"])
        return jnp.mean((y[:, -1] @ p["out"]["w"] + p["out"]["b"] - batch["y"]) ** 2)

    optimizer = optax.adam(1e-3)
    state = {"rnn": params, "out": readout}
    opt_state = optimizer.init(state)

    @jax.jit
    def step(state, opt_state, batch):
        grads = jax.grad(loss)(state, batch)
        updates, opt_state = optimizer.update(grads, opt_state, state)
        return optax.apply_updates(state, updates), opt_state

    for k in range(cfg.steps):
        raw = synthetic.adding_problem((cfg.seed, k), 10, cfg.train_length)
        state, opt_state = step(state, opt_state, jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), raw))
    PROGRESS.finish(name, saved=False)  # what a Ctrl-C's line says: trained, but no checkpoint
    return state["rnn"]


def main_models(cfg, say):
    """Part 2: the main job's models at init and trained."""
    out = []
    for name in cfg.models:
        layer = zoo.make_layer(name, cfg.model_hidden, path="autodiff")
        params = layer.init(jax.random.key(cfg.seed), 2, jnp.float64)
        for phase, p in (("init", params), ("trained", train(cfg, name, layer, params))):
            for T in cfg.model_lengths:
                x = jnp.asarray(synthetic.adding_problem((cfg.seed, 10**6), 1, T)["x"], jnp.float64)
                out += records(cfg, say, name, None, T, phase, layer.cell, p["l0"]["fwd"], x)
    return out


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run, t_start = RunDir(cfg), time.perf_counter()
    say = (lambda *a: None) if cfg.quiet else (lambda *a: print(*a, flush=True))
    with jax.enable_x64(True):
        runs = radius_sweep(cfg, say) + main_models(cfg, say)
    results = {
        "settings": {
            "dtype": "float64",
            "tol": cfg.tol,
            "max_iter": cfg.max_iter,
            "quasi_max_iter": cfg.quasi_max_iter,
            "hidden": cfg.hidden,
            "model_hidden": cfg.model_hidden,
            "inputs": "tanh sweep: 4 ~ N(0,1); models: adding problem",
            "residual": "max |h_t - f(h_{t-1}, x_t)| over t and units",
        },  # fmt: skip
        "runs": runs,
        "runtime_s": time.perf_counter() - t_start,
    }
    run.write_results(results)
    run.save_figure(figure(cfg, runs), "iterations_vs_lambda")
    say(f"wrote {run.path}/results.json and iterations_vs_lambda.png in {results['runtime_s']:.0f} s")
    return results


def figure(cfg, runs):
    """Iterations to tolerance against lambda_1, one curve per T (the radius sweep), the main
    job's models as markers; non-converged runs drawn at max_iter, hollow."""
    fig, axes = plots.panels(2, width=5.5, sharey=False)
    for ax, method in zip(axes, METHODS):
        lengths = sorted({r["T"] for r in runs if r["method"] == method})
        shades = dict(zip(lengths, ("#9ecae1", "#4292c6", "#08306b", "#000000")))  # T: light to dark
        for T in lengths:
            sweep = sorted((r for r in runs if r["model"] == "tanh" and r["T"] == T and r["method"] == method),
                           key=lambda r: r["lambda_1"])  # fmt: skip
            if not sweep:
                continue
            lam = [r["lambda_1"] for r in sweep]
            cap = cfg.max_iter if method == "newton" else cfg.quasi_max_iter
            shown = [r["iterations"] if r["converged"] else cap for r in sweep]  # not converged: at the cap
            line = ax.plot(lam, shown, "o-", color=shades.get(T), label=f"tanh RNN, T={T}")[0]
            failed = [(x, y) for x, y, r in zip(lam, shown, sweep) if not r["converged"]]
            ax.plot([x for x, _ in failed], [y for _, y in failed], "o", ms=11, mfc="none", color=line.get_color())
        for name, marker in zip(cfg.models, "s^D"):
            for phase, fill in (("init", None), ("trained", "none")):
                pts = [r for r in runs if r["model"] == name and r["phase"] == phase and r["method"] == method]
                if pts:
                    ax.plot([r["lambda_1"] for r in pts], [r["iterations"] for r in pts], marker, mfc=fill,
                            color=plots.model_color(name), label=f"{name} ({phase}), T={', '.join(str(r['T']) for r in pts)}")  # fmt: skip
        ax.axvline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel(r"largest Lyapunov exponent $\lambda_1$ (per step)")
        ax.set_ylabel("iterations to tolerance")
        cap = cfg.max_iter if method == "newton" else cfg.quasi_max_iter
        ax.set_title(f"{method.replace('_', '-')} (circled: not converged in max_iter = {cap})", fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle(
        f"Newton over the sequence: iterations vs λ_1 (float64, tol {cfg.tol:g}; tanh RNN H={cfg.hidden}, one "
        f"sequence per point; main job's models H={cfg.model_hidden}, init and trained)",
        fontsize=9,
    )
    return fig


if __name__ == "__main__":
    cli(main)
