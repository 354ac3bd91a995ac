"""The predictability paper's Figure 2 in its authors' setting: DEER's iterations against the
largest Lyapunov exponent of a mean-field RNN as its gain g crosses the edge of chaos.

Gonzalez, Kozachkov et al., "Predictability Enables Parallelization of Nonlinear State Space
Models" (NeurIPS 2025), lindermanlab/predictability_enables_parallelization
``experiments/fig2.py``, ``experiments/configs/fig2.yaml``, ``src/examples/dmf_rnn.py``,
``src/deer.py``, ``src/lle.py``.  Their setting, as their code runs it:

  * the discretised mean-field RNN ``s_t = W tanh(s_{t-1}) + u_t`` (``when="before"``), D = 100,
    ``W = g N(0, 1)/sqrt(D)`` with a zero diagonal (``self_couple=False`` for tanh), one ``W``
    draw per seed shared by every g;
  * sinusoidal inputs ``u_t = a sin(omega t + phi)``, ``a ~ U(0, 0.2)``, ``omega ~ U(0.5, 3)``,
    ``phi ~ U(0, 2 pi)`` per unit; ``s_0 ~ U(-1, 1)``; the keys split from ``PRNGKey(seed)`` as theirs;
  * g = linspace(0.5, 2, 10); T from 10 to 3000 (their proto config: logspace(10, 3000, 3) and
    1000, i.e. 10, 173, 1000, 3000);
  * the initial guess U(-1, 1) (their docstring: "DO NOT INIT FROM ZERO"), full DEER (Newton),
    their merit ``½ mean_t ‖r_t‖²`` to 1e-10, the cap T (theirs: T_max), float64;
  * lambda_1 from the Jacobians along the sequential trajectory, ``step_logs[T] / (T + 1)``
    averaged over 3 random unit vectors (their ``wrapper_estimate_lle_from_jacobians``): T + 1
    log-growths over T + 1, for which the trajectory runs two steps past T (their code gets
    that for every T but its longest, where JAX clamps the index to the last Jacobian: T - 1
    log-growths over T + 1);
  * seeds: their sweep config (``wandb_sweep_configs/fig2.yaml``) runs seeds 0..19.

Ours is ``rnnlab``'s ``newton`` path (a three-method cell: Jacobians by ``jax.jacfwd``) with
``NewtonOptions(criterion="merit", tol=1e-10)``, run at each T (DEER is causal: the iterates on a
prefix are the prefix of the iterates, which is how their code reads every T off one run).  We
count linear solves; their loop counts one more (it tests the merit of the iterate before the
update it has just made), so ``theirs = ours + 1``, recorded as ``iterations_their_count``.
A run that ends at the cap is "not converged" when its merit is finite and below the ±1e8 clip,
"diverged" otherwise.

Full DEER on D = 100 costs ~2·T·D³ per iteration, and chaotic g take ~T iterations: the default
here keeps their 20 seeds and shortens T to ``--lengths 10 30 100 300`` (about 25 minutes on 2
shared CPU cores; at T = 1000 one chaotic g alone takes ~5 minutes per seed here);
``--lengths 10 173 1000 3000`` is the authors' setting.

    python experiments/newton_figure2.py --out runs/newton_figure2
    python experiments/newton_figure2.py --quick

``--resume`` keeps every finished record's DEER solve and recomputes its lambda_1 (one scan per
seed and g: seconds), so a finished sweep's exponents follow a corrected estimator.
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import plots, unroll
from rnnlab.experiment import RunDir, cli, option, parse_config, refuse_unused, setup
from rnnlab.experiment.cli import BaseConfig
from rnnlab.newton import STATUS_NAMES, NewtonOptions


@dataclasses.dataclass(frozen=True)
class MeanFieldRNN:
    """``s_t = W tanh(s_{t-1}) + u_t``: dmf_rnn.py's ``deer_fxn`` with ``when="before"`` and
    ``scale=1``, as a three-method rnnlab cell (params ``{"w": W}``, inputs ``u_t`` of width D)."""

    hidden_size: int

    def init(self, key, input_size, dtype=jnp.float64):
        return {"w": jnp.zeros((self.hidden_size, self.hidden_size), dtype)}

    def initial_carry(self, batch_shape, dtype=jnp.float64):
        return jnp.zeros(tuple(batch_shape) + (self.hidden_size,), dtype)

    def step(self, params, s, u):
        new = jnp.tanh(s) @ params["w"].T + u
        return new, new


def setting(seed: int, D: int, T_max: int):
    """Their fig2.py: ``(W / g, u [T_max + 2, D], s_0 [D], guess [T_max, D], lle key)``; the inputs
    run two steps past T_max for lambda_1 at T_max (DEER reads the first T)."""
    k1, k2, k3, k4, k5, k6, k7 = jax.random.split(jax.random.PRNGKey(seed), 7)
    a = jax.random.uniform(k1, (D,), minval=0, maxval=0.2)
    omega = jax.random.uniform(k2, (D,), minval=0.5, maxval=3.0)
    phi = jax.random.uniform(k3, (D,), minval=0, maxval=2 * jnp.pi)
    s0 = jax.random.uniform(k4, (D,), minval=-1.0, maxval=1.0)
    inputs = jax.vmap(lambda t: a * jnp.sin(omega * t + phi))(jnp.arange(T_max + 2))
    w_unit = jax.random.normal(k5, (D, D)) / jnp.sqrt(D)
    w_unit = w_unit.at[jnp.diag_indices(D)].set(0.0)  # self_couple=False
    guess = jax.random.uniform(k6, (T_max, D), minval=-1.0, maxval=1.0)
    return w_unit, inputs, s0, guess, k7


def lyapunov(w, inputs, s0, key, lengths, numkeys=3):
    """Their ``wrapper_estimate_lle_from_jacobians(Js, k7, Ts)``: Js along the sequential
    trajectory (``seq_states[:-1]``, ``inputs[1:]``), ``step_logs[T] / (T + 1)`` averaged over 3
    random unit vectors.  ``step_logs[T]`` sums T + 1 log-growths, so the inputs must run to
    T + 2 (a shorter trajectory would have JAX clamp the index and divide too few by T + 1)."""
    if inputs.shape[0] < max(lengths) + 2:
        raise ValueError(f"lambda_1 at T = {max(lengths)} needs {max(lengths) + 2} inputs, got {inputs.shape[0]}")
    step = lambda s, u: (jnp.tanh(s) @ w.T + u,) * 2
    _, states = jax.lax.scan(step, s0, inputs)
    jacobians = jax.vmap(lambda s: w * (1.0 - jnp.tanh(s) ** 2)[None, :])(states[:-1])

    def one(k):
        v = jax.random.uniform(k, (w.shape[0],), minval=-1.0, maxval=1.0)
        v = v / jnp.linalg.norm(v)

        def body(carry, J):
            v, logsum = carry
            v = J @ v
            n = jnp.linalg.norm(v)
            logsum = logsum + jnp.log(n)
            return (v / n, logsum), logsum

        _, logs = jax.lax.scan(body, (v, 0.0), jacobians)
        index = jnp.asarray(lengths)
        return logs[index] / (index + 1)

    return jnp.mean(jax.vmap(one)(jax.random.split(key, numkeys)), axis=0)


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/newton_figure2"
    hidden: int = option(100, ge=2)  # D
    gains: tuple[float, ...] = option(tuple(float(g) for g in np.linspace(0.5, 2.0, 10)), gt=0.0)
    lengths: tuple[int, ...] = option((10, 30, 100, 300), ge=2)
    seeds: tuple[int, ...] = option(tuple(range(20)), ge=0)  # their sweep's 0..19
    tol: float = option(1e-10, gt=0.0)  # their merit tolerance (configs/fig2.yaml)

    def apply_quick(self):
        self.hidden, self.gains, self.lengths, self.seeds = 16, (0.5, 1.25, 2.0), (10, 30), (0,)

    def check(self):
        super().check()
        refuse_unused(self, {"steps": (False, "nothing trains here (each run is one Newton solve)")})


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run, t_start = RunDir(cfg), time.perf_counter()
    say = (lambda *a: None) if cfg.quiet else (lambda *a: print(*a, flush=True))
    # every record is written as it comes: --resume continues an interrupted sweep where it stopped
    records = json.loads(run.results_path.read_text())["runs"] if cfg.resume and run.results_path.exists() else []
    done = {(r["seed"], r["g"], r["T"]): r for r in records}
    with jax.enable_x64(True):
        cell = MeanFieldRNN(cfg.hidden)
        T_max = max(cfg.lengths)
        options = NewtonOptions(criterion="merit", tol=cfg.tol, fallback=True)  # the record says if it converged
        solve = jax.jit(  # one program per T
            lambda p, x, s0, guess: unroll(
                cell,
                p,
                x,
                initial_carry=s0,
                path="newton",
                newton_options=options,
                initial_guess=guess,
                return_info=True,
            )  # fmt: skip
        )
        exponents = jax.jit(lyapunov, static_argnames=("lengths", "numkeys"))
        for seed in cfg.seeds:
            w_unit, inputs, s0, guess, key = setting(seed, cfg.hidden, T_max)
            for g in cfg.gains:
                w = g * w_unit
                lams = np.asarray(exponents(w, inputs, s0, key, tuple(cfg.lengths)))
                for T, lam in zip(cfg.lengths, lams):
                    if (seed, float(g), T) in done:  # solved: its exponent alone is recomputed
                        done[seed, float(g), T]["lambda_1"] = float(lam)
                        continue
                    t0 = time.perf_counter()
                    y, _, info = solve({"w": w}, inputs[None, :T], s0[None], guess[None, :T])
                    status = STATUS_NAMES[int(info.status[0])]
                    k = int(info.iterations[0])
                    records.append(
                        dict(
                            seed=seed,
                            g=float(g),
                            T=T,
                            lambda_1=float(lam),
                            iterations=k,
                            iterations_their_count=k + 1 if k else 0,
                            status=status,
                            merit=float(info.residual[0]),
                            seconds=time.perf_counter() - t0,
                        )  # fmt: skip
                    )
                    say(f"seed {seed} g={g:.3f} T={T:5d} lambda_1={lam:+.3f} {k:5d} iterations, {status} "
                        f"({records[-1]['seconds']:.1f} s)")  # fmt: skip
                    run.write_results({"runs": records})
    results = {
        "settings": {
            "model": "s_t = W tanh(s_{t-1}) + u_t, W = g N(0,1)/sqrt(D), zero diagonal (dmf_rnn.py, when=before)",
            "D": cfg.hidden,
            "gains": list(cfg.gains),
            "lengths": list(cfg.lengths),
            "seeds": list(cfg.seeds),
            "solver": "rnnlab path='newton' (full DEER, jax.jacfwd Jacobians), float64",
            "criterion": "merit = 0.5 mean_t |r_t|^2 (theirs)",
            "tol": cfg.tol,
            "max_iter": "T",
            "initial_guess": "U(-1, 1) from their key k6",
            "their_count": "ours + 1 (their loop tests the iterate before its update)",
        },
        "runs": records,
        "runtime_s": time.perf_counter() - t_start,
    }
    run.write_results(results)
    run.save_figure(figure(cfg, records), "newton_figure2")
    say(f"wrote {run.path}/results.json and newton_figure2.png in {results['runtime_s']:.0f} s")
    return results


def summary(records, key="iterations"):
    """``{(g, T): (median, q25, q75, lambda_1 median, statuses)}`` over seeds."""
    out = {}
    for g in sorted({r["g"] for r in records}):
        for T in sorted({r["T"] for r in records}):
            sel = [r for r in records if r["g"] == g and r["T"] == T]
            values = np.array([r[key] for r in sel], float)
            lam = np.median([r["lambda_1"] for r in sel])
            out[(g, T)] = (*np.percentile(values, [50, 25, 75]), lam, [r["status"] for r in sel])
    return out


def figure(cfg, records):
    """Left: iterations (their count) against lambda_1, every seed, one colour per T; right: the
    median over seeds and the interquartile range against g, one curve per T."""
    fig, (ax, bx) = plots.panels(2, width=5.5, sharey=False)
    shades = dict(zip(cfg.lengths, ("#9ecae1", "#4292c6", "#2171b5", "#08306b", "#000000")))
    for T in cfg.lengths:
        sel = [r for r in records if r["T"] == T]
        for ok in (True, False):
            pts = [r for r in sel if (r["status"] == "converged") == ok]
            ax.plot([r["lambda_1"] for r in pts], [r["iterations_their_count"] for r in pts], "o",
                    mfc=None if ok else "none", color=shades.get(T), alpha=0.7, label=f"T={T}" if ok else None)  # fmt: skip
        stats = summary(sel, "iterations_their_count")
        gs = sorted({g for g, _ in stats})
        med = [stats[(g, T)][0] for g in gs]
        bx.fill_between(
            gs, [stats[(g, T)][1] for g in gs], [stats[(g, T)][2] for g in gs], color=shades.get(T), alpha=0.2
        )
        bx.plot(gs, med, "o-", color=shades.get(T), label=f"T={T}")
        ax.axhline(T, color=shades.get(T), lw=0.6, ls=":")
    ax.axvline(0.0, color="grey", lw=0.8, ls=":")
    for a in (ax, bx):
        a.set_yscale("log")
        a.set_ylabel("DEER iterations (their count; cap T)")
        a.legend(fontsize=6)
    ax.set_xlabel(r"largest Lyapunov exponent $\lambda_1$")
    bx.set_xlabel("g")
    ax.set_title("every seed (hollow: not converged within T)", fontsize=8)
    bx.set_title(f"median over {len(cfg.seeds)} seeds, IQR shaded", fontsize=8)
    fig.suptitle(
        f"Predictability paper, Figure 2 setting: mean-field tanh RNN D={cfg.hidden}, merit tol {cfg.tol:g}, "
        "float64, U(-1,1) guess",
        fontsize=8,
    )
    return fig


if __name__ == "__main__":
    cli(main)
