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
# # An RNN from scratch, then the LSTM's gates
#
# First the simple RNN written by hand with `jax.numpy`: parameters, an initial state, one step, one-hot
# inputs, an output layer, and `lax.scan` over time:
#
# $$H_t = \tanh(X_t W_{xh} + H_{t-1} W_{hh} + b_h), \qquad O_t = H_t W_{ho} + b_o.$$
#
# Then we check it against rnnlab's `ElmanCell`, which stores the same weights in PyTorch's layout
# (`w_ih = W_xh^T`, with a second bias `b_hh`).

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from rnnlab import RNN, ElmanCell, LSTMCell, unroll
from rnnlab.data import CharVocab, default_corpus

text = default_corpus()[:2000]
vocab = CharVocab.build(text)
ids = vocab.encode(text)
V, H = vocab.size, 16
print(f"{V} characters; first line: {text.splitlines()[0]!r}")


# %%
def init_params(key, vocab_size, hidden):
    k1, k2, k3 = jax.random.split(key, 3)
    scale = 0.1
    return {
        "W_xh": scale * jax.random.normal(k1, (vocab_size, hidden)),
        "W_hh": scale * jax.random.normal(k2, (hidden, hidden)),
        "b_h": jnp.zeros(hidden),
        "W_ho": scale * jax.random.normal(k3, (hidden, vocab_size)),
        "b_o": jnp.zeros(vocab_size),
    }


def init_state(batch_size, hidden):
    return jnp.zeros((batch_size, hidden))


def rnn_step(params, H, X):
    H = jnp.tanh(X @ params["W_xh"] + H @ params["W_hh"] + params["b_h"])
    return H, H @ params["W_ho"] + params["b_o"]


def rnn(params, X_tbv, H):
    return jax.lax.scan(lambda H, X: rnn_step(params, H, X), H, X_tbv)


params = init_params(jax.random.key(0), V, H)
X_tbv = jax.nn.one_hot(ids[:50], V)[:, None, :]  # time-major, batch of one
H_T, O_tbv = rnn(params, X_tbv, init_state(1, H))
print("outputs", O_tbv.shape, "final state", H_T.shape)

# %% [markdown]
# The same network with rnnlab: the hidden states must agree to float precision.

# %%
cell = ElmanCell(H)
cell_params = {"w_ih": params["W_xh"].T, "w_hh": params["W_hh"].T, "b_ih": params["b_h"], "b_hh": jnp.zeros(H)}
hidden_tbh, final = unroll(cell, cell_params, X_tbv, time_major=True)
O_rnnlab = hidden_tbh @ params["W_ho"] + params["b_o"]
print("largest difference:", float(jnp.max(jnp.abs(O_rnnlab - O_tbv))))
assert jnp.allclose(O_rnnlab, O_tbv, atol=1e-5)

# %% [markdown]
# ## The LSTM's gates on a real sentence
#
# An LSTM has an input gate $i_t$, a forget gate $f_t$, a candidate $g_t$ and an output gate $o_t$
# (`LSTMCell`'s docstring has the equations). We train a small character model for a few hundred steps,
# then run its cell over a sentence and look at the gates, unit by unit.

# %%
import optax

from rnnlab.data import random_windows
from rnnlab.linen import LanguageModel, recurrent_params
from rnnlab.train import OptimConfig, fit, make_optimizer, make_train_step
from rnnlab.train import init_state as init_train_state

model = LanguageModel(V, 16, RNN(LSTMCell(32, forget_bias=1.0)))


def loss_fn(p, batch, key):
    logits, _ = model.apply(p, batch["inputs"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean(), {}


opt = make_optimizer(OptimConfig("adam", 1e-2), 300)
state = init_train_state(opt, model.init(jax.random.key(1), jnp.zeros((1, 8), jnp.int32)), jax.random.key(1))
state = fit(
    jax.jit(make_train_step(loss_fn, opt)),
    state,
    lambda step: random_windows(ids, 32, 40, (0, step)),
    num_steps=300,
    progress="none",
)

# %%
sentence = text.splitlines()[3][:60]
lstm = model.layer.cell
p = recurrent_params(state.params)["l0"]["fwd"]
x = state.params["params"]["embed"]["embedding"][vocab.encode(sentence)][None]  # embedded characters [1, T, E]


def gates_step(carry, xp):
    g = xp + lstm.project_recurrent(p, carry)
    i, f, gg, o = jnp.split(g, 4, axis=-1)
    new_carry, _ = lstm.gates(carry, (g,), {})
    return new_carry, (jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(gg), jax.nn.sigmoid(o))


_, gates = jax.lax.scan(gates_step, lstm.initial_carry((1,)), lstm.project_inputs(p, x[0])[:, None])
fig, axes = plt.subplots(4, 1, figsize=(12, 7), sharex=True, constrained_layout=True)
for ax, name, g in zip(axes, ["input gate i", "forget gate f", "candidate g", "output gate o"], gates):
    im = ax.imshow(
        np.asarray(g[:, 0]).T, aspect="auto", cmap="viridis", vmin=-1 if name.startswith("cand") else 0, vmax=1
    )
    ax.set_ylabel(f"{name}\nunit")
    fig.colorbar(im, ax=ax)
axes[-1].set_xticks(range(len(sentence)))
axes[-1].set_xticklabels(list(sentence))
axes[0].set_title(f"LSTM gates (32 units, after 300 Adam steps) on: {sentence!r}")
