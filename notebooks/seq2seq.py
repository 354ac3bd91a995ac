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
# # Sequence to sequence: an encoder, a decoder, teacher forcing, greedy and beam search
#
# The translation shape from the source material, on a task that needs no download: writing the sum of
# two numbers ("12+34" -> "46"), one character at a time. An encoder RNN reads the source; its final
# state starts a decoder RNN that writes the target. `experiments/seq2seq.py` does the same for a
# two-column CSV of real translation pairs.

# %%
CELL, HIDDEN, STEPS, DIGITS = "lstm", 96, 600, 2

from collections import Counter

import jax
import numpy as np
import optax

from rnnlab import RNN
from rnnlab.data import CharVocab, pad_sequences
from rnnlab.data.synthetic import addition_pairs
from rnnlab.decode import beam_search, greedy_decode
from rnnlab.linen import Seq2Seq
from rnnlab.metrics import character_error_rate, exact_match
from rnnlab.plots import learning_curves
from rnnlab.train import OptimConfig, fit, init_state, make_optimizer, make_train_step
from rnnlab.zoo import make_cell

# %% [markdown]
# ## The data as it looks
#
# Each pair is a source string and a target string. The decoder is trained with *teacher forcing*: it
# reads the true target shifted right behind a start token `<s>` and must write the target followed by
# an end token `</s>`; a mask hides the padding from the loss.

# %%
pairs = addition_pairs(0, 4000, DIGITS)
train, val = pairs[300:], pairs[:300]
print(train[:5])
src_vocab = CharVocab.build("0123456789+", specials=("<pad>",))
tgt_vocab = CharVocab.build("0123456789", specials=("<pad>", "<s>", "</s>"))
S, E = tgt_vocab.id("<s>"), tgt_vocab.id("</s>")


def encode(pairs):
    src, src_len = pad_sequences([src_vocab.encode(s) for s, _ in pairs])
    tgt_in, _ = pad_sequences([np.r_[S, tgt_vocab.encode(t)] for _, t in pairs])
    tgt_out, tgt_len = pad_sequences([np.r_[tgt_vocab.encode(t), E] for _, t in pairs])
    return dict(
        src=src, src_len=src_len, tgt_in=tgt_in, tgt_out=tgt_out, mask=np.arange(tgt_out.shape[1]) < tgt_len[:, None]
    )


data, val_data = encode(train), encode(val)
for k, v in data.items():
    print(f"{k:>8s} {str(v.shape):>10s}  first pair: {v[0].astype(int).tolist()}")

# %% [markdown]
# ## The model in a few lines

# %%
layer = RNN(make_cell(CELL, HIDDEN))
model = Seq2Seq(src_vocab.size, tgt_vocab.size, 16, layer, layer)


def loss_fn(params, b, key):  # teacher forcing: the decoder reads the true previous character
    logits = model.apply(params, b["src"], b["src_len"], b["tgt_in"])
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, b["tgt_out"])
    return (losses * b["mask"]).sum() / b["mask"].sum(), {}


# %% [markdown]
# ## Training


# %%
def batches(step):
    idx = np.random.default_rng((0, step)).integers(0, len(train), 128)
    return {k: v[idx] for k, v in data.items()}


opt = make_optimizer(OptimConfig("adam", 3e-3, clip_norm=1.0), STEPS)
state = init_state(
    opt, model.init(jax.random.key(0), data["src"][:1], data["src_len"][:1], data["tgt_in"][:1]), jax.random.key(0)
)
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
learning_curves(
    {CELL: ([r["step"] for r in log], np.array([[r["loss"] for r in log]]))},
    baseline=float(np.log(10)),
    baseline_label="a uniform guess over 10 digits",
    ylabel="cross-entropy per target character",
    title=f"{CELL.upper()} {HIDDEN} encoder-decoder, {STEPS} Adam steps",
)

# %% [markdown]
# ## The result against its baseline
#
# At test time the decoder reads its own previous character. *Greedy* decoding takes the likeliest
# character each step; *beam search* keeps the 4 likeliest prefixes. The baseline always writes the most
# common training sum.


# %%
def strip(ids):
    ids = list(ids)
    return ids[: ids.index(E)] if E in ids else ids


refs = [t for _, t in val]
max_len = DIGITS + 3
greedy = [
    tgt_vocab.decode(strip(r))
    for r in greedy_decode(model, state.params, val_data["src"], val_data["src_len"], start_id=S, max_len=max_len)
]
most_common = Counter(t for _, t in train).most_common(1)[0][0]
print(
    f"greedy: exact match {exact_match(greedy, refs):.3f}, character error rate {character_error_rate(greedy, refs):.3f}"
)
print(f"always {most_common!r}: exact match {exact_match([most_common] * len(refs), refs):.3f}")
for (s, t), g in list(zip(val, greedy))[:5]:
    best, logp = beam_search(
        model, state.params, src_vocab.encode(s), len(s), start_id=S, end_id=E, max_len=max_len, beam=4
    )
    print(f"{s:>7s} = {t:>4s}   greedy {g:>4s}   beam {tgt_vocab.decode(best):>4s} (log p {logp:.2f})")

# %% [markdown]
# ## One thing to try
#
# Train longer (`STEPS = 3000`) and watch the exact match climb; then make the problem harder with
# `DIGITS = 3` (longer sources and carries across more digits), or set `CELL = "rnn"`: the encoder
# must squeeze the whole source into its final state: see how much of the first digits a tanh RNN's keeps.
