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
# # Vanishing and exploding gradients, step by step
#
# Backpropagation through time multiplies the gradient by one Jacobian per step:
#
# $$\frac{\partial L}{\partial h_t} = \Big(\frac{\partial h_{t+1}}{\partial h_t}\Big)^{\!\top} \frac{\partial L}{\partial h_{t+1}},
# \qquad \frac{\partial h_{t+1}}{\partial h_t} = \mathrm{diag}(1 - h_{t+1}^2)\, W_{hh} \;\text{(tanh RNN)}.$$
#
# If those Jacobians have norm below 1 the gradient shrinks geometrically with the distance $T-1-t$
# (it *vanishes*); above 1 it can grow (*explode*). The LSTM's cell state adds a path whose Jacobian is the
# forget gate $f_t$, close to 1 when the forget-gate bias is large.
#
# This notebook measures $\|\partial L/\partial h_t\|$ on the adding problem with rnnlab, for every $t$ in one
# backward pass: a zero perturbation $\epsilon_t$ is added to each hidden state inside the scan, and
# $\partial L/\partial \epsilon_t = \partial L/\partial h_t$. The full experiment is
# `python experiments/vanishing_gradients.py`; the sizes below are small so the notebook runs in seconds.

# %%
# Sizes: small by default (the test suite runs this notebook); raise them for the real picture.
LENGTHS = (20, 50)
HIDDEN = 32
SEEDS = 3
EXAMPLES = 8

# %%
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import RNN, diagnostics, plots
from rnnlab.data import adding_problem, seeded_batches
from rnnlab.linen import SequenceRegressor, regressor_gradient_profile
from rnnlab.zoo import MODELS, make_cell

for name in ("rnn", "lstm", "gru"):
    print(f"{name:5s} {MODELS[name].description}")


# %% [markdown]
# ## One model, one backward pass
#
# `regressor_gradient_profile` runs a sequence regressor on a batch, takes the squared error at the
# last step, and returns $\|\partial L/\partial h_t\|$ for every $t$ (averaged over the batch) and the Jacobian
# norm $\|\partial h_T/\partial h_t\|_2$. We vmap it over seeds. Measurements run in float64, because in
# float32 the tanh RNN's gradient underflows to exactly zero within about a hundred steps.


# %%
def profile(name, T, **cell_options):
    model = SequenceRegressor(RNN(make_cell(name, HIDDEN, **cell_options)))
    keys = jax.random.split(jax.random.key(0), SEEDS)
    batch = seeded_batches(adding_problem, 0, SEEDS, EXAMPLES, T)(0)
    with jax.enable_x64(True):
        params = jax.vmap(lambda k: model.init(k, jnp.zeros((1, T, 2))))(keys)
        params, x, y = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, batch["x"], batch["y"]))
        grad_st, jac_st = jax.jit(jax.vmap(lambda p, x, y: regressor_gradient_profile(model, p, x, y)))(params, x, y)
    return diagnostics.summarize(grad_st), diagnostics.summarize(jac_st)


results = {T: {name: profile(name, T) for name in ("rnn", "lstm", "gru")} for T in LENGTHS}

# %%
fig, axes = plots.panels(len(LENGTHS))
for ax, T in zip(axes, LENGTHS):
    plots.norms_by_distance(
        {name: r[0] for name, r in results[T].items()},
        ax=ax,
        title=f"at init, T={T}, H={HIDDEN}, {SEEDS} seeds (LSTM forget bias 1)",
    )

# %% [markdown]
# The tanh RNN's curve is a straight line on the log scale: a constant factor lost per step. The LSTM with
# forget bias 1 loses far less per step. The same picture for the Jacobian norm $\|\partial h_T/\partial h_t\|_2$:

# %%
T = LENGTHS[-1]
plots.norms_by_distance(
    {name: r[1] for name, r in results[T].items()},
    ylabel=r"$\|\partial h_T/\partial h_t\|_2$",
    title=f"Jacobian norms at init, T={T}, H={HIDDEN}, {SEEDS} seeds",
)
# %% [markdown]
# ## Initialisation decides the picture
#
# Rescale the tanh RNN's recurrent matrix to spectral radius $\rho$ (Pascanu, Mikolov & Bengio 2013: for tanh,
# a largest singular value below 1 is sufficient for vanishing), and vary the LSTM's forget-gate bias
# (0 is Flax's default). Each sweep is `rnnlab.sweep`: the swept value is a traced argument of one jitted
# init, and all values x seeds are measured by one vmapped program (spread over every device you have).

# %%
from rnnlab.sweep import Sweep, grid, init_params


def init_sweep(name, option, values, T):
    sweep = Sweep(grid(**{option: values}, seed=range(SEEDS)))  # values x seeds, one row each
    init = jax.jit(
        lambda key, v: SequenceRegressor(RNN(make_cell(name, HIDDEN, **{option: v}))).init(key, jnp.zeros((1, 1, 2)))
    )  # one compile for every value
    keys = jax.random.split(jax.random.key(0), SEEDS)[sweep.column("seed")]
    params = init_params(sweep, lambda key, point: init(key, point[option]), keys)
    batch = seeded_batches(adding_problem, 0, sweep.column("seed"), EXAMPLES, T)(0)
    model = SequenceRegressor(RNN(make_cell(name, HIDDEN)))  # init options do not change apply
    grad_of = lambda p, x, y: regressor_gradient_profile(model, p, x, y, jacobian=False)[0]
    with jax.enable_x64(True):
        grad_st = sweep.run(
            grad_of, *jax.tree.map(lambda a: np.asarray(a, np.float64), (params, batch["x"], batch["y"]))
        )
    column = sweep.column(option)
    return {f"{option} {v}": diagnostics.summarize(grad_st[column == v]) for v in values}


T = LENGTHS[-1]
radius_sweep = init_sweep("rnn", "spectral_radius", (0.5, 1.0, 1.5), T)
bias_sweep = init_sweep("lstm", "forget_bias", (0.0, 1.0, 3.0), T)
fig, axes = plots.panels(2, sharey=False, width=5.5)
plots.norms_by_distance(radius_sweep, ax=axes[0], title=f"tanh RNN at init, T={T}, spectral radius of W_hh")
plots.norms_by_distance(bias_sweep, ax=axes[1], title=f"LSTM at init, T={T}, forget-gate bias")
for label, s in {**radius_sweep, **bias_sweep}.items():
    print(f"{label:20s} ||dL/dh_1|| / ||dL/dh_T|| = {s['median'][-1] / s['median'][0]:.2e}")

# %% [markdown]
# ## The full experiment's results
#
# `experiments/vanishing_gradients.py` writes everything above (and more: after-training curves, gradient
# clipping in the exploding regime) to `results.json`. If you have run it, this cell plots its main figure
# from that file with the same plotting function.

# %%
import json
import pathlib

path = pathlib.Path("../runs/vanishing_gradients/results.json")
if path.exists():
    saved = json.loads(path.read_text())
    lengths = list(saved["gradient_norms"]["rnn"])
    fig, axes = plots.panels(len(lengths))
    for ax, T in zip(axes, lengths):
        plots.norms_by_distance(
            {
                f"{m} {phase}": saved["gradient_norms"][m][T][phase]
                for m in saved["gradient_norms"]
                for phase in ("init", "trained")
            },
            ax=ax,
            title=f"T = {T}",
        )
else:
    print("run `python experiments/vanishing_gradients.py` first to see its results here")
