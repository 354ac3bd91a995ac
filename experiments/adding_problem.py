"""The adding problem: can a tanh RNN, an LSTM and a GRU carry two numbers across T steps?

Each model reads T pairs (value ~ U[0,1], marker) and must output the sum of
the two marked values, one marker in each half.  Always answering 1 scores
MSE 0.167 (the dashed line); a model below it has learned to remember.
Seeds are trained side by side with ``jax.vmap``.

    python experiments/adding_problem.py --seq-len 100 --steps 3000 --seeds 3
    python experiments/adding_problem.py --quick          # a 1-minute look

Writes config.json, metrics.jsonl, results.json and learning_curves.png to --out.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import RNN
from rnnlab.cells import make_cell
from rnnlab.data import synthetic
from rnnlab.experiment import BaseConfig, RunDir, parse_config, train_seeds
from rnnlab.models import SequenceRegressor
from rnnlab.plots import learning_curves
from rnnlab.train import OptimConfig, make_optimizer


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/adding_problem"
    steps: int = 3000
    seq_len: int = 100
    variant: str = "adding"  # "adding" or "adding_hs97" (Hochreiter & Schmidhuber 1997)
    models: tuple[str, ...] = ("rnn", "lstm", "gru")
    hidden: int = 64
    batch_size: int = 50
    seeds: int = 3
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    clip_norm: float = 1.0
    forget_bias: float = 1.0
    test_size: int = 1000

    def apply_quick(self):
        self.seq_len, self.steps, self.hidden, self.seeds = 30, 300, 32, 2
        self.test_size, self.checkpoint_every, self.log_every = 200, 100, 10


def mse(model, params, batch):
    pred = model.apply(params, batch["x"], batch.get("lengths"))[:, 0]
    return jnp.mean((pred - batch["y"]) ** 2)


def train_model(name: str, cfg: Config, run: RunDir):
    """Train ``cfg.seeds`` copies of one model; returns the model and final params ``[S, ...]``."""
    model = SequenceRegressor(RNN(make_cell(name, cfg.hidden, forget_bias=cfg.forget_bias)))
    key = jax.random.key(cfg.seed)
    dummy_x = synthetic.TASKS[cfg.variant](0, 1, cfg.seq_len)["x"]
    optimizer = make_optimizer(
        OptimConfig(name=cfg.optimizer, learning_rate=cfg.learning_rate, clip_norm=cfg.clip_norm), cfg.steps
    )
    state = train_seeds(
        run, name, cfg,
        init_fn=lambda k: model.init(k, dummy_x),
        loss_fn=lambda params, batch, key: (mse(model, params, batch), {}),
        optimizer=optimizer,
        batch_fn=synthetic.seeded_batches(synthetic.TASKS[cfg.variant], cfg.seed, cfg.seeds, cfg.batch_size, cfg.seq_len),
        init_keys=jax.random.split(jax.random.fold_in(key, 1), cfg.seeds),
    )
    return model, state.params


def main(argv=None):
    cfg = parse_config(Config, argv, __doc__)
    run = RunDir(cfg)
    test = synthetic.TASKS[cfg.variant]((cfg.seed, 10**9), cfg.test_size, cfg.seq_len)  # a stream no training batch uses
    baseline = float(jnp.mean((1.0 - test["y"]) ** 2)) if cfg.variant == "adding" else float(jnp.var(test["y"]))
    results = {"variant": cfg.variant, "seq_len": cfg.seq_len, "steps": cfg.steps, "seeds": cfg.seeds,
               "baseline_test_mse": baseline, "models": {}}
    for name in cfg.models:
        model, params_s = train_model(name, cfg, run)
        test_mse_s = np.asarray(jax.vmap(lambda p: mse(model, p, test))(params_s))
        results["models"][name] = {
            "test_mse_per_seed": test_mse_s.tolist(),
            "test_mse_median": float(np.median(test_mse_s)),
            "test_mse_min": float(test_mse_s.min()),
            "test_mse_max": float(test_mse_s.max()),
        }
        if not cfg.quiet:
            print(f"{name}: test MSE per seed {np.round(test_mse_s, 4).tolist()} (baseline {baseline:.3f})")

    curves = {}
    for name in cfg.models:
        curves[name] = run.curve(name)
    init_note = f"tanh RNN: PyTorch init; LSTM forget bias {cfg.forget_bias:g}"
    fig = learning_curves(
        curves, baseline=baseline, baseline_label="predict 1" if cfg.variant == "adding" else "predict mean",
        title=f"{cfg.variant} problem, T={cfg.seq_len}, H={cfg.hidden}, {cfg.seeds} seeds\n"
              f"{cfg.optimizer} lr {cfg.learning_rate:g}, clip {cfg.clip_norm:g}, batch {cfg.batch_size}; {init_note}",
    )
    fig.savefig(run.figure("learning_curves"), dpi=120)
    run.write_results(results)
    if not cfg.quiet:
        print(f"wrote {run.path}/results.json and learning_curves.png")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
