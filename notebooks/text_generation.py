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
# # Text generation with a character-level language model
#
# A language model predicts the next character from the ones before it. Here: an embedding, a recurrent
# layer and a dense layer over the vocabulary, trained on next-character cross-entropy, then sampled one
# character at a time with the hidden state carried forward. The full script is
# `experiments/text_generation.py` (checkpoints, `--resume`, `--mode sample`, several devices).
#
# The knobs are in the first cell; the sizes are small so that the notebook runs in under a minute.

# %%
CELL, HIDDEN, STEPS, SEQ_LEN = "gru", 128, 300, 64  # raise STEPS to a few thousand for readable text

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab import RNN
from rnnlab.data import CharVocab, default_corpus, random_windows, sequential_windows
from rnnlab.decode import sample_text
from rnnlab.linen import LanguageModel
from rnnlab.plots import learning_curves
from rnnlab.train import OptimConfig, fit, init_state, make_optimizer, make_train_step
from rnnlab.zoo import make_cell

# %% [markdown]
# ## The data as it looks
#
# Python's own help topics (`pydoc_data`, present on every installation): English prose with code in it.
# The last 5% is held out. Every character seen in training gets an id; a training example is a window
# of the text, and its targets are the same window shifted by one character.

# %%
text = default_corpus()
cut = int(0.95 * len(text))
vocab = CharVocab.build(text[:cut])
train_ids = vocab.encode(text[:cut])
val_ids = vocab.encode(text[cut:], skip_unknown=True)  # drop symbols training never saw
print(f"{len(text):,} characters, {vocab.size} distinct; {len(train_ids):,} for training, {len(val_ids):,} held out")
print(repr(text[1000:1200]))
counts = np.bincount(train_ids, minlength=vocab.size)
print("most frequent:", [(vocab.tokens[i], int(counts[i])) for i in np.argsort(-counts)[:8]])
window = random_windows(train_ids, 1, 30, (0, 0))
print("inputs :", repr(vocab.decode(window["inputs"][0])))
print("targets:", repr(vocab.decode(window["targets"][0])))

# %% [markdown]
# ## The model in a few lines

# %%
model = LanguageModel(vocab.size, 32, RNN(make_cell(CELL, HIDDEN)))


def loss_fn(params, batch, key=None):
    logits, _ = model.apply(params, batch["inputs"])  # [B, T, V]
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean(), {}


params = model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
print(f"{CELL.upper()} {HIDDEN}: {sum(a.size for a in jax.tree.leaves(params)):,} parameters")

# %% [markdown]
# ## Training
#
# Adam with gradient clipping; each step reads 32 random windows. Two baselines on the curve: the
# *unigram entropy* is what a model that ignores context scores, and a *bigram* table (the next
# character given only the previous one, counted on the training text) is what one character of context buys.

# %%
opt = make_optimizer(OptimConfig("adam", 3e-3, clip_norm=1.0), STEPS)
state = init_state(opt, params, jax.random.key(0))
log = []
state = fit(
    jax.jit(make_train_step(loss_fn, opt)),
    state,
    lambda s: random_windows(train_ids, 32, SEQ_LEN, (0, s)),
    num_steps=STEPS,
    log_every=10,
    log=log.append,
    progress="none",
)

p = counts / counts.sum()
unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())
pairs = np.ones((vocab.size, vocab.size))  # add-one smoothing
np.add.at(pairs, (train_ids[:-1], train_ids[1:]), 1)
bigram_p = pairs / pairs.sum(1, keepdims=True)
bigram = float(-np.mean(np.log(bigram_p[val_ids[:-1], val_ids[1:]])))
fig = learning_curves(
    {CELL: ([r["step"] for r in log], np.array([[r["loss"] for r in log]]))},
    baseline=unigram,
    baseline_label="unigram entropy",
    ylabel="cross-entropy, nats/char",
    title=f"{CELL.upper()} {HIDDEN}, {STEPS} Adam steps on Python's help topics",
)
fig.axes[0].axhline(bigram, color="tab:green", ls="--", label="bigram table (validation)")
fig.axes[0].legend()
# %% [markdown]
# ## The result against its baselines
#
# Validation loss on the held-out text, in nats and bits per character.

# %%
val = sequential_windows(val_ids, SEQ_LEN)
eval_loss = jax.jit(lambda p, b: loss_fn(p, b)[0])
val_loss = float(
    np.mean(
        [eval_loss(state.params, {k: v[i : i + 64] for k, v in val.items()}) for i in range(0, len(val["inputs"]), 64)]
    )
)
print(f"validation {val_loss:.3f} nats/char = {val_loss / np.log(2):.3f} bits/char")
print(f"unigram entropy {unigram:.3f}, bigram table {bigram:.3f} nats/char")

# %% [markdown]
# ## Sampling
#
# Temperature divides the logits before sampling: low temperatures pick the likeliest characters, high
# ones flatten the distribution. The prime is read once; then each sampled character is fed back with
# the carried state (nothing re-reads the prefix).

# %%
prime = vocab.encode("The ")
for temperature in (0.5, 1.0, 1.5):
    ids = sample_text(model, state.params, prime, 120, jax.random.key(1), temperature=temperature)
    print(f"--- temperature {temperature} ---\nThe {vocab.decode(ids)}\n")

# %% [markdown]
# ## One thing to try
#
# Set `CELL = "rnn"` (a tanh Elman RNN) in the first cell and run all cells again, and compare where its
# curve ends against the bigram line: context further back than a few characters reaches a tanh RNN
# only through a gradient that shrinks with every step (the `vanishing_gradients` notebook measures by
# how much). Then try `CELL = "lstm"`, or `STEPS = 3000` for text that starts to look like English.
