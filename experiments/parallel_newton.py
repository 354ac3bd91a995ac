"""Can a nonlinear RNN be evaluated, and trained, in parallel over time?  Newton's iterations
against lambda_1 on the main job's models, training on the parallel paths, and a case where
ELK converges and DEER diverges.

Newton's method over the whole sequence (``path="newton"``, DEER; ``"quasi_newton"``, each
unit's block of the Jacobian: ``rnnlab.newton``) turns the T sequential steps into a few linear
recurrences solved in parallel.  How few depends on the dynamics (Gonzalez, Kozachkov et al.,
NeurIPS 2025: the largest Lyapunov exponent lambda_1; their own experiment, Figure 2, is
experiments/newton_figure2.py).  Measured here, in float64 to OUR stopping rule (max |residual|
<= 1e-8; DEER's code stops on the change between iterates, the predictability code on the mean
squared residual), the cap T (exact Newton is exact after T iterations), zeros as the initial
guess, convergence per sequence:

  1. the main job's RNN, LSTM and GRU and ParaRNN's ParaGRU and ParaLSTM (H=64, adding-problem
     inputs), at init and after the main job's training (Adam lr 1e-3, batch 10, 100 steps at
     T=100), at T = 100 and 1000, over --seeds (each seed: its own weights, training data and
     test sequence): Newton, quasi-Newton and quasi-ELK (sigmasq 1e2, elk's Fig. 4 value), with the
     status of each run (converged / not converged within T / diverged) and lambda_1 of the
     same sequence (``diagnostics.lyapunov_exponents``);
  2. training on the parallel paths (float32, the adding problem at T = 1000, GRU and ParaGRU,
     H = 32, batch 16, Adam lr 1e-3): the loss curve of each path against the sequential one,
     the iterations each step took, and a warm start from the previous step's trajectory;
  3. ELK against DEER where DEER diverges: a predictable linear RNN (lambda_1 < 0) whose
     Jacobian has a diagonal entry 1.5, T = 400.

    python experiments/parallel_newton.py           # about 10 minutes on 2 CPU cores
    python experiments/parallel_newton.py --quick   # a minute; results.json and the figure in --out
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab import ElmanCell, diagnostics, plots, unroll, zoo
from rnnlab.data import synthetic
from rnnlab.experiment import RunDir, cli, option, parse_config, setup
from rnnlab.experiment.cli import PROGRESS, BaseConfig
from rnnlab.newton import NewtonOptions, outcome, solve_bytes
from rnnlab.sweep import training_bytes

# method: (path, options beyond the tolerance)
METHODS = dict(newton=("newton", {}), quasi_newton=("quasi_newton", {}), quasi_elk=("quasi_newton", {"method": "elk"}))
MODELS = ("rnn", "lstm", "gru", "paragru", "paralstm")


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/parallel_newton"
    models: tuple[str, ...] = option(MODELS, choices=MODELS)
    methods: tuple[str, ...] = option(tuple(METHODS), choices=tuple(METHODS))
    model_hidden: int = option(64, ge=1)  # the main job's width
    model_lengths: tuple[int, ...] = option((100, 1000), ge=2)
    seeds: tuple[int, ...] = option((0, 1, 2), ge=0)
    steps: int = option(100, ge=1)  # the main job's Adam steps before "trained"
    train_length: int = option(100, ge=2)
    tol: float = option(1e-8, gt=0.0)  # ours: max |h_t - f(h_{t-1}, x_t)|
    parallel_models: tuple[str, ...] = option(("gru", "paragru"), choices=MODELS)
    parallel_length: int = option(1000, ge=2)
    parallel_hidden: int = option(32, ge=1)
    parallel_batch: int = option(16, ge=1)
    parallel_steps: int = option(20, ge=1)
    elk_length: int = option(400, ge=2)

    def apply_quick(self):
        self.models, self.model_hidden, self.model_lengths, self.seeds = ("gru", "paragru"), 8, (50,), (0,)
        self.methods, self.parallel_models = ("newton", "quasi_newton"), ("paragru",)
        self.steps, self.train_length = 5, 20
        self.parallel_length, self.parallel_hidden, self.parallel_batch, self.parallel_steps = 40, 8, 4, 3
        self.elk_length = 400

    def memory_needs(self):
        """The least a run holds: a float64 Newton solve over the models' longest sequence (D = 2H: the
        LSTM's carry), a float32 one over the parallel paths' training batch, the main job's batch."""
        paths = ("parallel_length", "parallel_hidden", "parallel_batch")
        longest = solve_bytes(max(self.model_lengths), 1, 2 * self.model_hidden, 2, 8)
        parallel = solve_bytes(self.parallel_length, self.parallel_batch, self.parallel_hidden, 2, 4)
        batch = training_bytes(1, 10, self.train_length, 2, self.model_hidden, 8)
        return [
            (("model_lengths", "model_hidden"), "Newton over the models' longest sequence", longest),
            (paths, "Newton training on the parallel paths", parallel),
            (("train_length", "model_hidden"), "the training batch", batch),
        ]


def solved(y, info, sequential) -> dict:
    """A solve's record: iterations, status, residual and, if it converged, the max error against the scan's
    trajectory ``sequential()`` (else, with the fallback, its outputs are the scan's: no error to report)."""
    record = outcome(info)
    converged = record["status"] == "converged"
    return record | {"max_error_vs_sequential": float(jnp.max(jnp.abs(y - sequential()))) if converged else None}


@functools.cache
def programs(cell, method, tol):
    """The jitted Newton solve and sequential scan of ``cell`` (one compile per shape)."""
    path, extra = METHODS[method]
    options = NewtonOptions(tol=tol, fallback=True, **extra)  # the record says if it converged
    solve = jax.jit(lambda p, x: unroll(cell, p, x, path=path, newton_options=options, return_info=True))
    scan = jax.jit(lambda p, x: unroll(cell, p, x, path="autodiff")[0])
    return solve, scan


@functools.cache
def exponent(cell):
    """lambda_1 of ``cell`` along one sequence ``x [T, I]`` (``diagnostics.lyapunov_exponents``)."""
    return jax.jit(lambda p, x_ti: diagnostics.lyapunov_exponents(cell, p, x_ti, count=1)[0])


def readout_mse(p, h_bth, y_b):
    """The main job's loss: the MSE of a linear readout ``w, b`` of the last state."""
    return jnp.mean((h_bth[:, -1] @ p["w"] + p["b"] - y_b) ** 2)


def adam(loss):
    """The main job's optimiser, Adam lr 1e-3, on ``loss(state, *batch) -> (value, aux)``: ``(optimizer,
    step)``, ``step(state, opt_state, *batch) -> (state, opt_state, value, aux)`` one jitted update."""
    optimizer = optax.adam(1e-3)

    @jax.jit
    def step(state, opt_state, *batch):
        (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(state, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, state)
        return optax.apply_updates(state, updates), opt_state, value, aux

    return optimizer, step


@functools.cache  # one compiled step for every seed of a model
def main_job_step(layer):
    return adam(lambda p, x, y: (readout_mse(p, layer.apply(p["rnn"], x)[0], y), None))


def train(cfg, seed, layer, params):
    """The main job's training: Adam lr 1e-3 on the adding problem, MSE of a linear readout (float64)."""
    optimizer, step = main_job_step(layer)
    state = {"rnn": params, "w": jnp.zeros((cfg.model_hidden,), jnp.float64), "b": jnp.zeros((), jnp.float64)}
    opt_state = optimizer.init(state)
    for k in range(cfg.steps):
        batch = synthetic.adding_problem((seed, k), 10, cfg.train_length)
        state, opt_state, *_ = step(state, opt_state, *(jnp.asarray(batch[key], jnp.float64) for key in ("x", "y")))
    PROGRESS.finish(f"{layer.cell.__class__.__name__} seed {seed}", saved=False)  # Ctrl-C's line: trained, not saved
    return state["rnn"]


def main_models(cfg, say):
    """Part 1: the main job's models and ParaRNN's, at init and trained, per seed."""
    out = []
    for name in cfg.models:
        for seed in cfg.seeds:
            layer = zoo.make_layer(name, cfg.model_hidden, path="autodiff")
            params = layer.init(jax.random.key(seed), 2, jnp.float64)
            for phase, p in (("init", params), ("trained", train(cfg, seed, layer, params))):
                for T in cfg.model_lengths:
                    x = jnp.asarray(synthetic.adding_problem((seed, 10**6), 1, T)["x"], jnp.float64)
                    cell, p_cell = layer.cell, p["l0"]["fwd"]
                    lam = float(exponent(cell)(p_cell, x[0]))
                    for method in cfg.methods:
                        t0 = time.perf_counter()
                        solve, scan = programs(cell, method, cfg.tol)
                        record = dict(model=name, seed=seed, T=T, phase=phase, lambda_1=lam, method=method)
                        y, _, info = solve(p_cell, x)
                        out.append(record | solved(y, info, lambda: scan(p_cell, x)))
                        r = out[-1]
                        say(
                            f"{name:8s} seed={seed} T={T:5d} {phase:7s} lambda_1={lam:+.3f} {method:12s} "
                            f"{r['iterations']:4d} iterations, {r['status']} ({time.perf_counter() - t0:.1f} s)"
                        )
    return out


def train_in_parallel(cfg, say):
    """Part 2: the same training on the sequential and the parallel paths (float32)."""
    out = []
    T, H, B = cfg.parallel_length, cfg.parallel_hidden, cfg.parallel_batch
    variants = (("autodiff", False), ("newton", False), ("quasi_newton", False), ("quasi_newton", True))
    for name in cfg.parallel_models:
        cell = zoo.make_cell(name, H)
        init = cell.init(jax.random.key(cfg.seed), 2)
        for path, warm in variants:

            def loss(p, x, y, guess):
                kwargs = {} if path == "autodiff" else {"return_info": True, "initial_guess": guess}
                h, _, *info = unroll(cell, p["rnn"], x, path=path, **kwargs)
                return readout_mse(p, h, y), (h, info)

            optimizer, step = adam(loss)
            state = {"rnn": init, "w": jnp.zeros((H,)), "b": jnp.zeros(())}
            opt_state = optimizer.init(state)
            losses, iterations, guess, t0 = [], [], None, time.perf_counter()
            for k in range(cfg.parallel_steps):
                batch = synthetic.adding_problem((cfg.seed, 7, k), B, T)
                state, opt_state, value, (h, info) = step(state, opt_state, batch["x"], batch["y"], guess)
                guess = h if warm else None  # the carry is h for these cells: the previous step's trajectory
                losses.append(float(value))
                if info:
                    iterations.append([int(i) for i in np.asarray(info[0].iterations)])
            wall = time.perf_counter() - t0
            out.append(dict(model=name, path=path, warm_start=warm, losses=losses, iterations=iterations, seconds=wall))
            median = f", median iterations per step {np.median(iterations):.0f}" if iterations else ""
            label = path + (" warm" if warm else "")
            say(f"{name:8s} {label:17s} final loss {losses[-1]:.4f}{median} ({wall:.1f} s)")
    sequential = {r["model"]: r["losses"] for r in out if r["path"] == "autodiff"}
    for r in out:
        r["max_loss_difference"] = float(np.max(np.abs(np.subtract(r["losses"], sequential[r["model"]]))))
    return out


def elk_against_deer(cfg, say):
    """Part 3: a predictable linear RNN whose Jacobian's diagonal expands (1.5 on one unit)."""
    T = cfg.elk_length
    cell = ElmanCell(2, activation="linear")
    params = cell.init(jax.random.key(0), 1, jnp.float64) | {"w_hh": jnp.array([[1.5, -1.0], [1.2, -1.0]])}
    x = jax.random.normal(jax.random.key(1), (1, T, 1), jnp.float64)
    reference = unroll(cell, params, x, path="autodiff")[0]
    lam = float(exponent(cell)(params, x[0]))
    out = []
    for label, options in (
        ("quasi-DEER", {}),
        ("quasi-DEER, Jacobians clipped to [-1, 1]", {"clip": True}),
        ("quasi-ELK, sigmasq 1e2 (elk's Fig. 4 value)", {"method": "elk"}),
        ("quasi-ELK, sigmasq 1", {"method": "elk", "trust": 1.0}),
    ):
        options = NewtonOptions(tol=cfg.tol, fallback=True, **options)
        y, _, info = unroll(cell, params, x, path="quasi_newton", return_info=True, newton_options=options)
        out.append(dict(solver=label, T=T, lambda_1=lam) | solved(y, info, lambda: reference))
        r = out[-1]
        say(f"{label:42s} T={T} {r['iterations']:4d} iterations, {r['status']} (residual {r['residual']:.2g})")
    return out


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run, t_start = RunDir(cfg), time.perf_counter()
    say = (lambda *a: None) if cfg.quiet else (lambda *a: print(*a, flush=True))
    with jax.enable_x64(True):
        runs = main_models(cfg, say)
        elk = elk_against_deer(cfg, say)
    training = train_in_parallel(cfg, say)
    part_2 = dict(T=cfg.parallel_length, hidden=cfg.parallel_hidden, batch=cfg.parallel_batch, steps=cfg.parallel_steps)
    results = {
        "settings": {
            "dtype": "float64 (parts 1 and 3), float32 (part 2)",
            "tol": cfg.tol,
            "criterion": "max |h_t - f(h_{t-1}, x_t)| over t and units (ours)",
            "max_iter": "T",
            "initial_guess": "zeros",
            "seeds": list(cfg.seeds),
            "model_hidden": cfg.model_hidden,
            "inputs": "adding problem",
            "parallel_training": part_2 | {"optimizer": "adam 1e-3"},
        },
        "runs": runs,
        "training": training,
        "elk": elk,
        "runtime_s": time.perf_counter() - t_start,
    }
    run.write_results(results)
    run.save_figure(figure(cfg, runs, training), "iterations_vs_lambda")
    say(f"wrote {run.path}/results.json and iterations_vs_lambda.png in {results['runtime_s']:.0f} s")
    return results


def figure(cfg, runs, training):
    """Left: iterations against lambda_1 (every model, seed, phase and T; hollow: not converged).
    Right: the training losses on each path, and the iterations per step."""
    fig, (ax, bx) = plots.panels(2, width=5.5, sharey=False)
    for method, marker in zip(cfg.methods, "os^"):
        for name in cfg.models:
            pts = [r for r in runs if r["model"] == name and r["method"] == method]
            for ok in (True, False):
                sel = [r for r in pts if (r["status"] == "converged") == ok]
                if sel:
                    ax.plot([r["lambda_1"] for r in sel], [r["iterations"] for r in sel], marker, mfc=None if ok else "none",
                            color=plots.model_color(name), alpha=0.7,
                            label=f"{name}, {method}" if ok else None)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel(r"largest Lyapunov exponent $\lambda_1$ (per step)")
    ax.set_ylabel("iterations (cap T)")
    ax.set_title(f"main job's models, H={cfg.model_hidden}, T={cfg.model_lengths}, seeds {cfg.seeds}", fontsize=8)
    ax.legend(fontsize=5, ncol=2)
    for r in training:
        style = {"autodiff": "-", "newton": "--", "quasi_newton": ":"}[r["path"]]
        label = f"{r['model']} {r['path']}{' warm' if r['warm_start'] else ''}"
        bx.plot(r["losses"], style, color=plots.model_color(r["model"]), label=label, alpha=0.8)
    bx.set_xlabel("training step")
    bx.set_ylabel("loss (MSE)")
    bx.set_title(f"training on each path, T={cfg.parallel_length} (float32)", fontsize=8)
    bx.legend(fontsize=5)
    return fig


if __name__ == "__main__":
    cli(main)
