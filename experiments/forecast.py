"""Time-series forecasting (the stock-price scenario): an RNN regressor over a sliding window.

Each window of --window past values predicts the next value. The model is
trained on the past part of the series and judged on the future part, against
the naive forecast "tomorrow = today" (the last value), which is hard to beat
on price-like series:

* one-step: every validation window predicts its next value;
* multi-step (recursive): from the start of the validation part, each
  prediction is fed back as the newest input for --horizon steps.

    python experiments/forecast.py                                 # Mackey-Glass (tau = 17)
    python experiments/forecast.py --series sine
    python experiments/forecast.py --csv prices.csv --column Close # any CSV column, via `datasets`
    python experiments/forecast.py --csv sunspots.csv --column Sunspots --time-column Year   # dates on the x-axis
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rnnlab import RNN
from rnnlab.data import load_csv_series, mackey_glass, make_windows, sine_mixture, split_by_time, standardize
from rnnlab.decode import recursive_forecast
from rnnlab.experiment import (
    BaseConfig,
    ConfigError,
    RunDir,
    cli,
    option,
    parse_config,
    readable,
    refuse_unused,
    setup,
    train_seeds,
)
from rnnlab.linen import SequenceRegressor
from rnnlab.sweep import training_bytes
from rnnlab.train import OptimConfig, make_optimizer
from rnnlab.zoo import CELLS, make_cell


@dataclasses.dataclass
class Config(BaseConfig):
    out: str = "runs/forecast"
    series: str = option("mackey_glass", choices=("mackey_glass", "sine"))  # ignored with --csv
    csv: str = ""
    column: str = "Close"
    time_column: str = ""  # a CSV column (dates, years) to label the time axis with; empty: step numbers
    length: int = option(3000, ge=4)  # generated series
    val_fraction: float = option(0.2, gt=0.0, lt=1.0)
    window: int = option(50, ge=1)
    horizon: int = option(50, ge=1)
    cell: str = option("lstm", choices=CELLS)
    hidden: int = option(32, ge=1)
    batch_size: int = option(64, ge=1)
    steps: int = option(1500, ge=1)
    learning_rate: float = option(3e-3, gt=0.0)
    clip_norm: float = option(1.0, ge=0.0)  # 0: no clipping

    def apply_quick(self):
        self.length, self.window, self.horizon, self.hidden, self.steps = 1200, 30, 30, 16, 300
        self.checkpoint_every = 100

    def check(self):
        super().check()
        generated = (not self.csv, "--csv gives the series")
        from_csv = (bool(self.csv), "it names a column of --csv; give --csv too")
        refuse_unused(self, {"series": generated, "length": generated, "column": from_csv})

    def memory_needs(self):
        """The generated series (Mackey-Glass integrates 10 float64 steps a sample), its windows of
        window + horizon values, and a training batch."""
        series = 0 if self.csv else self.length * 10 * 8
        windows = self.length * (self.window + self.horizon) * 4
        batch = training_bytes(1, self.batch_size, self.window, 1, self.hidden)
        return [
            (("length", "window", "horizon", "batch_size", "hidden"), "the series' windows", series + windows + batch)
        ]


def load_series(cfg: Config) -> tuple[np.ndarray, str, list[str] | None]:
    """``(values [T], name, time labels [T] or None)``."""
    if cfg.csv:
        values, times = load_csv_series(cfg.csv, cfg.column, cfg.time_column or None)
        return values, f"{cfg.csv}:{cfg.column}", times
    if cfg.time_column:
        raise ConfigError("--time-column names a column of --csv; give --csv too")
    if cfg.series == "mackey_glass":
        return mackey_glass(cfg.length), "Mackey-Glass (tau=17)", None
    return sine_mixture(cfg.length, seed=cfg.seed), "noisy sine mixture", None


def label_time_axis(ax, times: list[str] | None, name: str, num_ticks: int = 6) -> None:
    """Row positions on the x-axis become the CSV's own time labels (dates, years), or step numbers."""
    if times is None:
        ax.set_xlabel("time step")
        return
    lo, hi = ax.get_xlim()
    ticks = np.unique(np.linspace(max(lo, 0), min(hi, len(times) - 1), num_ticks).round().astype(int))
    ax.set_xticks(ticks, [times[i] for i in ticks])
    ax.set_xlabel(name)


def main(argv=None):
    cfg = setup(parse_config(Config, argv, __doc__))
    run = RunDir(cfg)
    t0 = time.perf_counter()
    series, name, times = load_series(cfg)
    past, future = split_by_time(series, cfg.val_fraction)
    mean, std, past_s, future_s = standardize(past, future)
    x_train, y_train = make_windows(past_s, cfg.window)
    # validation windows end inside the future part; their inputs may reach back into the past
    context = np.concatenate([past_s[-cfg.window :], future_s])
    x_val, y_val = make_windows(context, cfg.window)

    model = SequenceRegressor(RNN(make_cell(cfg.cell, cfg.hidden)))
    mse = lambda params, x, y: jnp.mean((model.apply(params, x) - y) ** 2)

    def batches(step, examples):  # a pure function of the step; leading axis: one seed
        idx = np.random.default_rng((cfg.seed, step)).integers(0, len(x_train), cfg.batch_size)[examples]
        return {"x": x_train[idx][None], "y": y_train[idx][None]}

    state = train_seeds(
        run,
        cfg.cell,
        cfg,
        init_fn=lambda k: model.init(k, jnp.zeros((1, cfg.window, 1))),
        loss_fn=lambda params, batch, key: (mse(params, batch["x"], batch["y"]), {}),
        optimizer=make_optimizer(OptimConfig("adam", cfg.learning_rate, clip_norm=cfg.clip_norm), cfg.steps),
        batch_fn=batches,
        batch_size=cfg.batch_size,
        init_keys=jax.random.key(cfg.seed)[None],
    )
    params = jax.tree.map(lambda a: a[0], state.params)
    predict = jax.jit(lambda x: model.apply(params, x))

    one_step = np.asarray(predict(x_val))[:, 0]
    naive = x_val[:, -1, 0]
    horizon = min(cfg.horizon, len(future_s))
    multi = recursive_forecast(predict, past_s[-cfg.window :], horizon)
    truth = future_s[:horizon]
    unscale = lambda a: np.asarray(a) * std + mean
    results = {
        "series": name,
        "train_points": len(past),
        "val_points": len(future),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "one_step_mse": float(np.mean((one_step - y_val[:, 0]) ** 2) * std**2),
        "one_step_naive_mse": float(np.mean((naive - y_val[:, 0]) ** 2) * std**2),
        "multi_step_horizon": horizon,
        "multi_step_mse": float(np.mean((multi - truth) ** 2) * std**2),
        "multi_step_naive_mse": float(np.mean((past_s[-1] - truth) ** 2) * std**2),
        "runtime_s": time.perf_counter() - t0,
    }
    results["beats_naive_one_step"] = results["one_step_mse"] < results["one_step_naive_mse"]
    run.write_results(results)

    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), constrained_layout=True)
    shown = min(300, len(y_val))
    t_val = np.arange(len(past), len(past) + len(y_val))
    axes[0].plot(t_val[:shown], unscale(y_val[:shown, 0]), "k", lw=1.2, label="truth")
    axes[0].plot(
        t_val[:shown],
        unscale(one_step[:shown]),
        "tab:blue",
        lw=1.2,
        label=f"{cfg.cell.upper()} one-step (MSE {results['one_step_mse']:.2e})",
    )
    axes[0].plot(
        t_val[:shown],
        unscale(naive[:shown]),
        "tab:gray",
        lw=1,
        ls=":",
        label=f"last value (MSE {results['one_step_naive_mse']:.2e})",
    )
    axes[0].set_title(
        f"{name}: one-step forecasts on the held-out future ({cfg.cell.upper()} {cfg.hidden}, "
        f"window {cfg.window}, {cfg.steps} Adam steps)"
    )
    t_hist = np.arange(len(past) - cfg.window, len(past))
    axes[1].plot(t_hist, unscale(past_s[-cfg.window :]), "k", lw=1, alpha=0.5, label="history (model input)")
    axes[1].plot(t_val[:horizon], unscale(truth), "k", lw=1.2, label="truth")
    axes[1].plot(
        t_val[:horizon],
        unscale(multi),
        "tab:red",
        lw=1.2,
        label=f"recursive {horizon}-step forecast (MSE {results['multi_step_mse']:.2e})",
    )
    axes[1].axhline(
        unscale(past_s[-1]), color="tab:gray", ls=":", label=f"last value (MSE {results['multi_step_naive_mse']:.2e})"
    )
    axes[1].set_title("multi-step: each prediction fed back as input")
    for ax in axes:
        label_time_axis(ax, times, cfg.time_column)
        ax.set_ylabel("value")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    run.save_figure(fig, "forecast")
    if not cfg.quiet:
        print(readable(results))
    return results


if __name__ == "__main__":
    cli(main)
