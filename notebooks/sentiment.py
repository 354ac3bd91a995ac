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
# # Sentiment analysis with a bidirectional RNN
#
# "not good" is negative, and "good, but not great" is negative too: a word's meaning depends on the words
# on both sides of it. A bidirectional RNN reads each review both ways; its backward direction ends at the
# first word, so whatever sits at the start of a long review is fresh in its final state. We train it
# beside a unidirectional RNN of the same size, both classifying from their final states.
# `experiments/sentiment.py` does the same on a CSV/JSON file (labels `0..C-1` or names like `pos`/`neg`)
# or a Hugging Face dataset.

# %%
CELL, HIDDEN, STEPS, MIN_WORDS, MAX_WORDS = "lstm", 32, 250, 16, 40

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

from rnnlab import RNN
from rnnlab.data import WordVocab, pad_sequences
from rnnlab.data.synthetic import negation_reviews
from rnnlab.linen import SequenceClassifier
from rnnlab.metrics import confusion_matrix
from rnnlab.plots import learning_curves
from rnnlab.train import OptimConfig, fit, init_state, make_optimizer, make_train_step
from rnnlab.zoo import make_cell

# %% [markdown]
# ## The data as it looks
#
# Generated reviews (no download): a sentiment phrase near the start, sometimes negated or overridden by
# a "but" clause, then filler words. Reviews have different lengths, so they are padded to the longest
# and each carries its length: the RNN stops at each review's last word, and the backward direction
# starts there.

# %%
NAMES = ("negative", "positive")
train_texts, train_labels = negation_reviews(0, 2000, MIN_WORDS, MAX_WORDS)
test_texts, test_labels = negation_reviews(1, 500, MIN_WORDS, MAX_WORDS)
for t, l in zip(train_texts[:4], train_labels[:4]):
    print(f"{NAMES[l]:>8s} | {t}")
vocab = WordVocab.build(train_texts)
train_ids, train_lengths = pad_sequences([vocab.encode(t) for t in train_texts])
test_ids, test_lengths = pad_sequences([vocab.encode(t) for t in test_texts])
print(f"\n{vocab.size} words; padded to {train_ids.shape[1]} tokens; {np.mean(train_labels):.0%} positive")
print("first review as ids:", train_ids[0, :12], "... length", train_lengths[0])

fig, ax = plt.subplots(figsize=(5, 2.5), constrained_layout=True)
ax.hist(train_lengths, bins=20)
ax.set_xlabel("review length, words")
ax.set_ylabel("reviews")
ax.set_title("training reviews")

# %% [markdown]
# ## The model in a few lines
#
# Embed the words, run the (bi)directional RNN over each review's valid words, concatenate the top
# layer's final states (both directions), and map them to two logits.


# %%
def classifier(bidirectional):
    return SequenceClassifier(vocab.size, 32, RNN(make_cell(CELL, HIDDEN), bidirectional=bidirectional), 2)


def train(model):
    def loss_fn(params, batch, key):
        logits = model.apply(params, batch["ids"], batch["lengths"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean(), {}

    def batches(step):
        idx = np.random.default_rng((0, step)).integers(0, len(train_ids), 64)
        return {"ids": train_ids[idx], "lengths": train_lengths[idx], "labels": train_labels[idx]}

    opt = make_optimizer(OptimConfig("adam", 3e-3, clip_norm=1.0), STEPS)
    state = init_state(opt, model.init(jax.random.key(0), train_ids[:1], train_lengths[:1]), jax.random.key(0))
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
    return state.params, log


# %% [markdown]
# ## Training both

# %%
runs = {}
for direction in ("bidirectional", "unidirectional"):
    model = classifier(direction == "bidirectional")
    params, log = train(model)
    runs[direction] = (model, params, log)
learning_curves(
    {d: ([r["step"] for r in log], np.array([[r["loss"] for r in log]])) for d, (_, _, log) in runs.items()},
    baseline=float(np.log(2)),
    baseline_label="chance (log 2)",
    ylabel="cross-entropy",
    title=f"{CELL.upper()} {HIDDEN}, {STEPS} Adam steps, batch 64",
)
# %% [markdown]
# ## The result against its baseline
#
# Accuracy on 500 held-out reviews, against always answering the more common class.

# %%
majority = max(np.mean(test_labels), 1 - np.mean(test_labels))
fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), constrained_layout=True)
for ax, (direction, (model, params, _)) in zip(axes, runs.items()):
    predictions = np.asarray(jnp.argmax(model.apply(params, test_ids, test_lengths), -1))
    matrix = confusion_matrix(test_labels, predictions, 2)
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks([0, 1], NAMES)
    ax.set_yticks([0, 1], NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{direction}: accuracy {np.mean(predictions == test_labels):.3f}")
    print(f"{direction:>15s}: accuracy {np.mean(predictions == test_labels):.3f} (majority class {majority:.3f})")

# %% [markdown]
# ## One thing to try
#
# Make the reviews longer (`MIN_WORDS, MAX_WORDS = 40, 80` in the first cell): the sentiment phrase moves
# further from the end, where the unidirectional model has to carry it from. Or swap the cell
# (`CELL = "rnn"` or `"gru"`), or pool the outputs instead of the final states
# (`SequenceClassifier(..., pooling="mean")`).
