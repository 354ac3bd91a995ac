"""Writes the tutorial notebooks from the cells below (run it after editing them).

Notebooks import rnnlab and never copy its code; the test suite executes them
with their small default sizes.
"""

import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = pathlib.Path(__file__).parent


def write(name, cells):
    nb = new_notebook(cells=[new_markdown_cell(c[3:]) if c.startswith("md:") else new_code_cell(c.strip()) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, HERE / name)


VANISHING = [
    """md:# Vanishing and exploding gradients, step by step

Backpropagation through time multiplies the gradient by one Jacobian per step:

$$\\frac{\\partial L}{\\partial h_t} = \\Big(\\frac{\\partial h_{t+1}}{\\partial h_t}\\Big)^{\\!\\top} \\frac{\\partial L}{\\partial h_{t+1}},
\\qquad \\frac{\\partial h_{t+1}}{\\partial h_t} = \\mathrm{diag}(1 - h_{t+1}^2)\\, W_{hh} \\;\\text{(tanh RNN)}.$$

If those Jacobians have norm below 1 the gradient shrinks geometrically with the distance $T-1-t$
(it *vanishes*); above 1 it can grow (*explode*). The LSTM's cell state adds a path whose Jacobian is the
forget gate $f_t$, close to 1 when the forget-gate bias is large.

This notebook measures $\\|\\partial L/\\partial h_t\\|$ on the adding problem with rnnlab, for every $t$ in one
backward pass: a zero perturbation $\\epsilon_t$ is added to each hidden state inside the scan, and
$\\partial L/\\partial \\epsilon_t = \\partial L/\\partial h_t$. The full experiment is
`python experiments/vanishing_gradients.py`; the sizes below are small so the notebook runs in seconds.""",
    """
# Sizes: small by default (the test suite runs this notebook); raise them for the real picture.
LENGTHS = (20, 50)
HIDDEN = 32
SEEDS = 3
EXAMPLES = 8
""",
    """
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import RNN, diagnostics, plots
from rnnlab.cells import NAMED_CELLS, make_cell
from rnnlab.data import adding_problem, seeded_batches
from rnnlab.models import SequenceRegressor

for name in ("rnn", "lstm", "gru"):
    print(f"{name:5s} {NAMED_CELLS[name]}")
""",
    """md:## One model, one backward pass

`diagnostics.regressor_gradient_profile` runs a sequence regressor on a batch, takes the squared error at the
last step, and returns $\\|\\partial L/\\partial h_t\\|$ for every $t$ (averaged over the batch) and the Jacobian
norm $\\|\\partial h_T/\\partial h_t\\|_2$. We vmap it over seeds. Measurements run in float64, because in
float32 the tanh RNN's gradient underflows to exactly zero within about a hundred steps.""",
    """
def profile(name, T, **cell_options):
    model = SequenceRegressor(RNN(make_cell(name, HIDDEN, **cell_options)))
    keys = jax.random.split(jax.random.key(0), SEEDS)
    batch = seeded_batches(adding_problem, 0, SEEDS, EXAMPLES, T)(0)
    with jax.enable_x64(True):
        params = jax.vmap(lambda k: model.init(k, jnp.zeros((1, T, 2))))(keys)
        params, x, y = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), (params, batch["x"], batch["y"]))
        grad_st, jac_st = jax.jit(jax.vmap(lambda p, x, y: diagnostics.regressor_gradient_profile(model, p, x, y)))(params, x, y)
    return diagnostics.summarize(diagnostics.by_distance(grad_st)), diagnostics.summarize(diagnostics.by_distance(jac_st))

results = {T: {name: profile(name, T) for name in ("rnn", "lstm", "gru")} for T in LENGTHS}
""",
    """
fig, axes = plots.panels(len(LENGTHS))
for ax, T in zip(axes, LENGTHS):
    plots.norms_by_distance({name: r[0] for name, r in results[T].items()}, ax=ax,
                            title=f"at init, T={T}, H={HIDDEN}, {SEEDS} seeds (LSTM forget bias 1)")
""",
    """md:The tanh RNN's curve is a straight line on the log scale: a constant factor lost per step. The LSTM with
forget bias 1 loses far less per step. The same picture for the Jacobian norm $\\|\\partial h_T/\\partial h_t\\|_2$:""",
    """
T = LENGTHS[-1]
plots.norms_by_distance({name: r[1] for name, r in results[T].items()}, ylabel=r"$\\|\\partial h_T/\\partial h_t\\|_2$",
                        title=f"Jacobian norms at init, T={T}, H={HIDDEN}, {SEEDS} seeds");
""",
    """md:## Initialisation decides the picture

Rescale the tanh RNN's recurrent matrix to spectral radius $\\rho$ (Pascanu, Mikolov & Bengio 2013: for tanh,
a largest singular value below 1 is sufficient for vanishing), and vary the LSTM's forget-gate bias
(0 is Flax's default). Each sweep is `rnnlab.sweep`: the swept value is a traced argument of one jitted
init, and all values x seeds are measured by one vmapped program (spread over every device you have).""",
    """
from rnnlab.sweep import Sweep, grid, init_params

def init_sweep(name, option, values, T):
    sweep = Sweep(grid(**{option: values}, seed=range(SEEDS)))      # values x seeds, one row each
    init = jax.jit(lambda key, v: SequenceRegressor(RNN(make_cell(name, HIDDEN, **{option: v}))).init(
        key, jnp.zeros((1, 1, 2))))                                  # one compile for every value
    keys = jax.random.split(jax.random.key(0), SEEDS)[sweep.column("seed")]
    params = init_params(sweep, lambda key, point: init(key, point[option]), keys)
    batch = seeded_batches(adding_problem, 0, sweep.column("seed"), EXAMPLES, T)(0)
    model = SequenceRegressor(RNN(make_cell(name, HIDDEN)))        # init options do not change apply
    grad_of = lambda p, x, y: diagnostics.regressor_gradient_profile(model, p, x, y, jacobian=False)[0]
    with jax.enable_x64(True):
        grad_st = sweep.run(grad_of, *jax.tree.map(lambda a: np.asarray(a, np.float64), (params, batch["x"], batch["y"])))
    column = sweep.column(option)
    return {f"{option} {v}": diagnostics.summarize(diagnostics.by_distance(grad_st[column == v])) for v in values}

T = LENGTHS[-1]
radius_sweep = init_sweep("rnn", "spectral_radius", (0.5, 1.0, 1.5), T)
bias_sweep = init_sweep("lstm", "forget_bias", (0.0, 1.0, 3.0), T)
fig, axes = plots.panels(2, sharey=False, width=5.5)
plots.norms_by_distance(radius_sweep, ax=axes[0], title=f"tanh RNN at init, T={T}, spectral radius of W_hh")
plots.norms_by_distance(bias_sweep, ax=axes[1], title=f"LSTM at init, T={T}, forget-gate bias");
for label, s in {**radius_sweep, **bias_sweep}.items():
    print(f"{label:20s} ||dL/dh_1|| / ||dL/dh_T|| = {s['median'][-1] / s['median'][0]:.2e}")
""",
    """md:## The full experiment's results

`experiments/vanishing_gradients.py` writes everything above (and more: after-training curves, gradient
clipping in the exploding regime) to `results.json`. If you have run it, this cell plots its main figure
from that file with the same plotting function.""",
    """
import json, pathlib

path = pathlib.Path("../runs/vanishing_gradients/results.json")
if path.exists():
    saved = json.loads(path.read_text())
    lengths = list(saved["gradient_norms"]["rnn"])
    fig, axes = plots.panels(len(lengths))
    for ax, T in zip(axes, lengths):
        plots.norms_by_distance({f"{m} {phase}": saved["gradient_norms"][m][T][phase]
                                 for m in saved["gradient_norms"] for phase in ("init", "trained")},
                                ax=ax, title=f"T = {T}")
else:
    print("run `python experiments/vanishing_gradients.py` first to see its results here")
""",
]


FROM_SCRATCH = [
    """md:# An RNN from scratch, then the LSTM's gates

First the simple RNN written by hand with `jax.numpy`: parameters, an initial state, one step, one-hot
inputs, an output layer, and `lax.scan` over time:

$$H_t = \\tanh(X_t W_{xh} + H_{t-1} W_{hh} + b_h), \\qquad O_t = H_t W_{ho} + b_o.$$

Then we check it against rnnlab's `ElmanCell`, which stores the same weights in PyTorch's layout
(`w_ih = W_xh^T`, with a second bias `b_hh`).""",
    """
import jax
import jax.numpy as jnp
import numpy as np
import matplotlib.pyplot as plt

from rnnlab import ElmanCell, LSTMCell, RNN, unroll
from rnnlab.data import CharVocab, default_corpus

text = default_corpus()[:2000]
vocab = CharVocab.build(text)
ids = vocab.encode(text)
V, H = vocab.size, 16
print(f"{V} characters; first line: {text.splitlines()[0]!r}")
""",
    """
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
X_tbv = jax.nn.one_hot(ids[:50], V)[:, None, :]          # time-major, batch of one
H_T, O_tbv = rnn(params, X_tbv, init_state(1, H))
print("outputs", O_tbv.shape, "final state", H_T.shape)
""",
    """md:The same network with rnnlab: the hidden states must agree to float precision.""",
    """
cell = ElmanCell(H)
cell_params = {"w_ih": params["W_xh"].T, "w_hh": params["W_hh"].T, "b_ih": params["b_h"], "b_hh": jnp.zeros(H)}
hidden_tbh, final = unroll(cell, cell_params, X_tbv, time_major=True)
O_rnnlab = hidden_tbh @ params["W_ho"] + params["b_o"]
print("largest difference:", float(jnp.max(jnp.abs(O_rnnlab - O_tbv))))
assert jnp.allclose(O_rnnlab, O_tbv, atol=1e-5)
""",
    """md:## The LSTM's gates on a real sentence

An LSTM has an input gate $i_t$, a forget gate $f_t$, a candidate $g_t$ and an output gate $o_t$
(`LSTMCell`'s docstring has the equations). We train a small character model for a few hundred steps,
then run its cell over a sentence and look at the gates, unit by unit.""",
    """
from rnnlab.models import LanguageModel, recurrent_params
from rnnlab.data import random_windows
from rnnlab.train import OptimConfig, make_optimizer, init_state as init_train_state, make_train_step, fit
import optax

model = LanguageModel(V, 16, RNN(LSTMCell(32, forget_bias=1.0)))
def loss_fn(p, batch, key):
    logits, _ = model.apply(p, batch["inputs"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean(), {}

opt = make_optimizer(OptimConfig("adam", 1e-2), 300)
state = init_train_state(opt, model.init(jax.random.key(1), jnp.zeros((1, 8), jnp.int32)), jax.random.key(1))
state = fit(jax.jit(make_train_step(loss_fn, opt)), state, lambda step: random_windows(ids, 32, 40, (0, step)),
            num_steps=300, progress="none")
""",
    """
sentence = text.splitlines()[3][:60]
lstm = model.layer.cell
p = recurrent_params(state.params)["l0"]["fwd"]
x = state.params["params"]["embed"]["embedding"][vocab.encode(sentence)][None]   # embedded characters [1, T, E]

def gates_step(carry, xp):
    g = xp + lstm.recurrent_projection(p, carry.h)
    i, f, gg, o = jnp.split(g, 4, axis=-1)
    new_carry, _ = lstm.step_projected(p, carry, xp)
    return new_carry, (jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(gg), jax.nn.sigmoid(o))

_, gates = jax.lax.scan(gates_step, lstm.initial_carry((1,)), lstm.project_inputs(p, x[0])[:, None])
fig, axes = plt.subplots(4, 1, figsize=(12, 7), sharex=True, constrained_layout=True)
for ax, name, g in zip(axes, ["input gate i", "forget gate f", "candidate g", "output gate o"], gates):
    im = ax.imshow(np.asarray(g[:, 0]).T, aspect="auto", cmap="viridis", vmin=-1 if name.startswith("cand") else 0, vmax=1)
    ax.set_ylabel(f"{name}\\nunit")
    fig.colorbar(im, ax=ax)
axes[-1].set_xticks(range(len(sentence)))
axes[-1].set_xticklabels(list(sentence))
axes[0].set_title(f"LSTM gates (32 units, after 300 Adam steps) on: {sentence!r}");
""",
]

TEXT_GENERATION = [
    """md:# Text generation with a character-level language model

Embed, a recurrent layer, a Dense layer over the vocabulary; trained on next-character cross-entropy;
sampled one character at a time with the hidden state carried forward. The full script is
`experiments/text_generation.py` (it also saves checkpoints and has a `--mode sample`).""",
    """
STEPS = 300     # raise to a few thousand for readable text
HIDDEN = 128

import jax, jax.numpy as jnp, numpy as np, optax
from rnnlab import RNN
from rnnlab.cells import make_cell
from rnnlab.data import CharVocab, default_corpus, random_windows, sequential_windows
from rnnlab.decode import sample_text
from rnnlab.models import LanguageModel
from rnnlab.plots import learning_curves
from rnnlab.train import OptimConfig, fit, init_state, make_optimizer, make_train_step

text = default_corpus()
cut = int(0.95 * len(text))
vocab = CharVocab.build(text[:cut])
train_ids = vocab.encode(text[:cut])
val_ids = vocab.encode(text[cut:], skip_unknown=True)   # drop symbols training never saw
model = LanguageModel(vocab.size, 32, RNN(make_cell("gru", HIDDEN)))

def loss_fn(params, batch, key=None):
    logits, _ = model.apply(params, batch["inputs"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean(), {}

opt = make_optimizer(OptimConfig("adam", 3e-3), STEPS)
state = init_state(opt, model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)), jax.random.key(0))
log = []
state = fit(jax.jit(make_train_step(loss_fn, opt)), state, lambda s: random_windows(train_ids, 32, 64, (0, s)),
            num_steps=STEPS, log_every=10, log=log.append, progress="none")
""",
    """
val = sequential_windows(val_ids, 64)
val_loss = float(jax.jit(lambda p: loss_fn(p, {k: v[:200] for k, v in val.items()})[0])(state.params))
p = np.bincount(train_ids, minlength=vocab.size) / len(train_ids)
unigram = float(-(p[p > 0] * np.log(p[p > 0])).sum())
print(f"validation {val_loss:.3f} nats/char = {val_loss / np.log(2):.3f} bits/char; unigram entropy {unigram:.3f} nats")
learning_curves({"gru": ([r["step"] for r in log], np.array([[r["loss"] for r in log]]))}, baseline=unigram,
                baseline_label="unigram entropy", ylabel="cross-entropy, nats/char",
                title=f"GRU {HIDDEN}, {STEPS} Adam steps on Python's help topics");
""",
    """md:Temperature divides the logits before sampling: low temperatures pick the likeliest characters,
high ones flatten the distribution. `top_k` keeps only the k likeliest.""",
    """
prime = vocab.encode("The ")
for temperature in (0.5, 1.0, 1.5):
    ids = sample_text(model, state.params, prime, 120, jax.random.key(1), temperature=temperature)
    print(f"--- temperature {temperature} ---\\nThe {vocab.decode(ids)}\\n")
""",
]

SENTIMENT = [
    """md:# Sentiment analysis with a bidirectional RNN

"not good" is negative and "good, but not great" is negative too: the meaning of a word depends on words
on both sides of it. A bidirectional RNN reads the review both ways; its backward direction's final state
has just seen the beginning of the review. We compare it with a unidirectional RNN of the same size, both
pooling their final states, on generated reviews whose sentiment phrase sits near the start.""",
    """
STEPS = 250
import jax, jax.numpy as jnp, numpy as np, optax
from rnnlab import RNN
from rnnlab.cells import make_cell
from rnnlab.data import WordVocab, pad_sequences
from rnnlab.data.synthetic import negation_reviews
from rnnlab.metrics import confusion_matrix
from rnnlab.models import SequenceClassifier
from rnnlab.train import OptimConfig, fit, init_state, make_optimizer, make_train_step

train_texts, train_labels = negation_reviews(0, 2000)
test_texts, test_labels = negation_reviews(1, 500)
for t, l in zip(train_texts[:3], train_labels[:3]):
    print("positive" if l else "negative", "|", t)
vocab = WordVocab.build(train_texts)
train_ids, train_lengths = pad_sequences([vocab.encode(t) for t in train_texts])
test_ids, test_lengths = pad_sequences([vocab.encode(t) for t in test_texts])
""",
    """
def train_classifier(bidirectional):
    model = SequenceClassifier(vocab.size, 32, RNN(make_cell("lstm", 32), bidirectional=bidirectional), 2)
    def loss_fn(params, batch, key):
        logits = model.apply(params, batch["ids"], batch["lengths"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean(), {}
    def batches(step):
        idx = np.random.default_rng((0, step)).integers(0, len(train_ids), 64)
        return {"ids": train_ids[idx], "lengths": train_lengths[idx], "labels": train_labels[idx]}
    opt = make_optimizer(OptimConfig("adam", 3e-3), STEPS)
    state = init_state(opt, model.init(jax.random.key(0), train_ids[:1], train_lengths[:1]), jax.random.key(0))
    state = fit(jax.jit(make_train_step(loss_fn, opt)), state, batches, num_steps=STEPS, progress="none")
    predictions = np.asarray(jnp.argmax(model.apply(state.params, test_ids, test_lengths), -1))
    return predictions

import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), constrained_layout=True)
for ax, bidirectional in zip(axes, (True, False)):
    predictions = train_classifier(bidirectional)
    name = "bidirectional" if bidirectional else "unidirectional"
    ax.imshow(confusion_matrix(test_labels, predictions, 2), cmap="Blues")
    for (i, j), v in np.ndenumerate(confusion_matrix(test_labels, predictions, 2)):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xlabel("predicted (0 negative, 1 positive)"); ax.set_ylabel("true")
    ax.set_title(f"{name} LSTM 32: accuracy {np.mean(predictions == test_labels):.3f}")
""",
]

SEQ2SEQ = [
    """md:# Sequence to sequence: an encoder, a decoder, teacher forcing, greedy and beam search

The translation shape from the source material, on a task that needs no download: writing the sum of two
numbers ("12+345" -> "357"), one character at a time. The encoder's final state starts the decoder.""",
    """
STEPS = 600
import jax, jax.numpy as jnp, numpy as np, optax
from rnnlab import RNN
from rnnlab.cells import make_cell
from rnnlab.data import CharVocab, pad_sequences
from rnnlab.data.synthetic import addition_pairs
from rnnlab.decode import beam_search, greedy_decode
from rnnlab.metrics import character_error_rate, exact_match
from rnnlab.models import Seq2Seq
from rnnlab.train import OptimConfig, fit, init_state, make_optimizer, make_train_step

pairs = addition_pairs(0, 4000)
train, val = pairs[300:], pairs[:300]
src_vocab = CharVocab.build("0123456789+", specials=("<pad>",))
tgt_vocab = CharVocab.build("0123456789", specials=("<pad>", "<s>", "</s>"))
S, E = tgt_vocab.id("<s>"), tgt_vocab.id("</s>")

def encode(pairs):
    src, src_len = pad_sequences([src_vocab.encode(s) for s, _ in pairs])
    tgt_in, _ = pad_sequences([np.r_[S, tgt_vocab.encode(t)] for _, t in pairs])
    tgt_out, tgt_len = pad_sequences([np.r_[tgt_vocab.encode(t), E] for _, t in pairs])
    return dict(src=src, src_len=src_len, tgt_in=tgt_in, tgt_out=tgt_out,
                mask=np.arange(tgt_out.shape[1]) < tgt_len[:, None])

data, val_data = encode(train), encode(val)
layer = RNN(make_cell("lstm", 96))
model = Seq2Seq(src_vocab.size, tgt_vocab.size, 16, layer, layer)
""",
    """
def loss_fn(params, b, key):   # teacher forcing: the decoder reads the true previous character
    logits = model.apply(params, b["src"], b["src_len"], b["tgt_in"])
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, b["tgt_out"])
    return (losses * b["mask"]).sum() / b["mask"].sum(), {}

def batches(step):
    idx = np.random.default_rng((0, step)).integers(0, len(train), 128)
    return {k: v[idx] for k, v in data.items()}

opt = make_optimizer(OptimConfig("adam", 3e-3), STEPS)
state = init_state(opt, model.init(jax.random.key(0), data["src"][:1], data["src_len"][:1], data["tgt_in"][:1]),
                   jax.random.key(0))
log = []
state = fit(jax.jit(make_train_step(loss_fn, opt)), state, batches, num_steps=STEPS, log_every=10, log=log.append,
            progress="none")
from rnnlab.plots import learning_curves
learning_curves({"lstm": ([r["step"] for r in log], np.array([[r["loss"] for r in log]]))},
                ylabel="cross-entropy per target character", title=f"LSTM 96 encoder-decoder, {STEPS} Adam steps");
""",
    """
def strip(ids):
    ids = list(ids)
    return ids[: ids.index(E)] if E in ids else ids

greedy = [tgt_vocab.decode(strip(r)) for r in greedy_decode(model, state.params, val_data["src"], val_data["src_len"],
                                                             start_id=S, max_len=5)]
refs = [t for _, t in val]
print(f"greedy exact match {exact_match(greedy, refs):.3f}, character error rate {character_error_rate(greedy, refs):.3f}")
for (s, t), g in list(zip(val, greedy))[:5]:
    best, logp = beam_search(model, state.params, src_vocab.encode(s), len(s), start_id=S, end_id=E, max_len=5, beam=4)
    print(f"{s:>7s} = {t:>4s}   greedy {g:>4s}   beam {tgt_vocab.decode(best):>4s} (log p {logp:.2f})")
""",
]

FORECASTING = [
    """md:# Forecasting a time series (the stock-price scenario)

An RNN reads a window of past values and predicts the next one. We train on the past of a Mackey-Glass
series and test on its future, against the naive forecast "next = last", then forecast many steps ahead by
feeding predictions back in. `experiments/forecast.py` does the same for any CSV column (e.g. closing prices).""",
    """
STEPS = 300
import jax, jax.numpy as jnp, numpy as np
import matplotlib.pyplot as plt
from rnnlab import RNN
from rnnlab.cells import make_cell
from rnnlab.data import mackey_glass, make_windows, split_by_time, standardize
from rnnlab.decode import recursive_forecast
from rnnlab.models import SequenceRegressor
from rnnlab.train import OptimConfig, fit, init_state, make_optimizer, make_train_step

WINDOW = 30
past, future = split_by_time(mackey_glass(1200), 0.2)
mean, std, past_s, future_s = standardize(past, future)
x_train, y_train = make_windows(past_s, WINDOW)
x_val, y_val = make_windows(np.concatenate([past_s[-WINDOW:], future_s]), WINDOW)
model = SequenceRegressor(RNN(make_cell("lstm", 16)))

def loss_fn(params, b, key):
    return jnp.mean((model.apply(params, b["x"]) - b["y"]) ** 2), {}

def batches(step):
    idx = np.random.default_rng((0, step)).integers(0, len(x_train), 64)
    return {"x": x_train[idx], "y": y_train[idx]}

opt = make_optimizer(OptimConfig("adam", 3e-3), STEPS)
state = init_state(opt, model.init(jax.random.key(0), x_train[:1]), jax.random.key(0))
state = fit(jax.jit(make_train_step(loss_fn, opt)), state, batches, num_steps=STEPS, progress="none")
""",
    """
pred = np.asarray(model.apply(state.params, x_val))[:, 0]
mse, naive = np.mean((pred - y_val[:, 0]) ** 2), np.mean((x_val[:, -1, 0] - y_val[:, 0]) ** 2)
print(f"one-step MSE (standardised): LSTM {mse:.2e}, last value {naive:.2e}")

# each prediction becomes the newest input of the next window
recursive = recursive_forecast(lambda x: model.apply(state.params, x), past_s[-WINDOW:], 40)

fig, ax = plt.subplots(figsize=(10, 3.5), constrained_layout=True)
t = np.arange(len(past), len(past) + 120)
ax.plot(t, future[:120], "k", label="truth")
ax.plot(t, pred[:120] * std + mean, label=f"one-step LSTM (MSE {mse:.1e})")
ax.plot(t[:40], np.array(recursive) * std + mean, label="recursive 40-step forecast")
ax.set_xlabel("time step"); ax.set_ylabel("value"); ax.legend()
ax.set_title("Mackey-Glass (tau=17): forecasts on the held-out future");
""",
]

NOTEBOOKS = {
    "vanishing_gradients": VANISHING,
    "rnn_from_scratch": FROM_SCRATCH,
    "text_generation": TEXT_GENERATION,
    "sentiment": SENTIMENT,
    "seq2seq": SEQ2SEQ,
    "forecasting": FORECASTING,
}

if __name__ == "__main__":
    for stem, cells in NOTEBOOKS.items():
        write(f"{stem}.ipynb", cells)
