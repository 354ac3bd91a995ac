# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Forecasting a time series (the stock-price scenario)
#
# An RNN reads a window of past values and predicts the next one. We train on the past of a series and
# judge on its future, against the naive forecast "next = last", which is hard to beat on price-like
# series; then we forecast many steps ahead by feeding each prediction back in.
# `experiments/forecast.py` does the same for any CSV column (`--csv prices.csv --column Close
# --time-column Date`).

# %%
CELL, HIDDEN, STEPS, WINDOW = "lstm", 16, 300, 30

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rnnlab import RNN
from rnnlab.data import mackey_glass, make_windows, split_by_time, standardize
from rnnlab.decode import recursive_forecast
from rnnlab.linen import SequenceRegressor
from rnnlab.plots import learning_curves
from rnnlab.train import OptimConfig, fit, init_state, make_optimizer, make_train_step
from rnnlab.zoo import make_cell

# %% [markdown]
# ## The data as it looks
#
# The Mackey-Glass delay equation with `tau = 17`: chaotic, so it never repeats, yet predictable a few
# steps ahead. The last 20% is the future. Both parts are scaled by the *past's* mean and standard
# deviation only (no peeking), and cut into windows of `WINDOW` values followed by the value to predict.

# %%
series = mackey_glass(1200)
past, future = split_by_time(series, 0.2)
mean, std, past_s, future_s = standardize(past, future)
x_train, y_train = make_windows(past_s, WINDOW)
# validation windows end inside the future; their inputs may reach back into the past
x_val, y_val = make_windows(np.concatenate([past_s[-WINDOW:], future_s]), WINDOW)
print(f"{len(past)} past and {len(future)} future values; windows: train {x_train.shape}, validation {x_val.shape}")

fig, ax = plt.subplots(figsize=(10, 2.8), constrained_layout=True)
ax.plot(np.arange(len(past)), past, "k", lw=1, label="past (training)")
ax.plot(np.arange(len(past), len(series)), future, "tab:orange", lw=1, label="future (validation)")
ax.axvspan(len(past) - WINDOW, len(past), color="tab:blue", alpha=0.2, label=f"one window of {WINDOW}")
ax.set_xlabel("time step")
ax.set_ylabel("x(t)")
ax.set_title("Mackey-Glass, tau = 17")
ax.legend(fontsize=8)
# %% [markdown]
# ## The model in a few lines
#
# The RNN runs over the window; a dense layer reads its last output.

# %%
model = SequenceRegressor(RNN(make_cell(CELL, HIDDEN)))


def loss_fn(params, b, key):
    return jnp.mean((model.apply(params, b["x"]) - b["y"]) ** 2), {}


# %% [markdown]
# ## Training


# %%
def batches(step):
    idx = np.random.default_rng((0, step)).integers(0, len(x_train), 64)
    return {"x": x_train[idx], "y": y_train[idx]}


opt = make_optimizer(OptimConfig("adam", 3e-3, clip_norm=1.0), STEPS)
state = init_state(opt, model.init(jax.random.key(0), x_train[:1]), jax.random.key(0))
log = []
state = fit(
    jax.jit(make_train_step(loss_fn, opt)),
    state,
    batches,
    num_steps=STEPS,
    log_every=10,
    log=log.append,
    progress="none",
)
naive_train = float(np.mean((x_train[:, -1, 0] - y_train[:, 0]) ** 2))
learning_curves(
    {CELL: ([r["step"] for r in log], np.array([[r["loss"] for r in log]]))},
    baseline=naive_train,
    baseline_label="next = last (training windows)",
    ylabel="MSE, standardised",
    title=f"{CELL.upper()} {HIDDEN}, window {WINDOW}, {STEPS} Adam steps",
)
# %% [markdown]
# ## The result against its baseline
#
# One step ahead on every validation window, then 40 steps ahead from the end of the past, each
# prediction becoming the newest input of the next window.

# %%
pred = np.asarray(model.apply(state.params, x_val))[:, 0]
mse, naive = np.mean((pred - y_val[:, 0]) ** 2), np.mean((x_val[:, -1, 0] - y_val[:, 0]) ** 2)
print(f"one-step MSE (standardised): {CELL.upper()} {mse:.2e}, next = last {naive:.2e}")
recursive = np.asarray(recursive_forecast(lambda x: model.apply(state.params, x), past_s[-WINDOW:], 40))
print(
    f"40-step MSE: {CELL.upper()} {np.mean((recursive - future_s[:40]) ** 2):.2e}, "
    f"next = last {np.mean((past_s[-1] - future_s[:40]) ** 2):.2e}"
)

fig, ax = plt.subplots(figsize=(10, 3.5), constrained_layout=True)
t = np.arange(len(past), len(past) + 120)
ax.plot(t, future[:120], "k", label="truth")
ax.plot(t, pred[:120] * std + mean, label=f"one-step {CELL.upper()} (MSE {mse:.1e})")
ax.plot(t[:40], recursive * std + mean, label="recursive 40-step forecast")
ax.axhline(past[-1], color="tab:gray", ls=":", label="last value")
ax.set_xlabel("time step")
ax.set_ylabel("x(t)")
ax.legend(fontsize=8)

# %% [markdown]
# ## One thing to try
#
# A longer window (`WINDOW = 60`) gives the model more history than the 17-step delay that drives the
# series; a shorter one (`WINDOW = 10`) gives it less. Or swap the series for a noisy one,
# `from rnnlab.data import sine_mixture; series = sine_mixture(1200)`, and see whether the model still
# beats next = last.
