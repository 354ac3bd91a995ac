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
# # Benchmark your own cell, fairly
#
# A comparison of recurrent models says something only if every model gets the same care. rnnlab's
# benchmark (`experiments/benchmark.py`, rules in `rnnlab.protocol`) gives each one:
#
# * the same **budget** in sequences seen, and a hidden size matched to the same **parameter count** (±10%);
# * a **learning-rate grid** that grows past an edge when the best rate sits there (a rate still at an
#   edge is flagged), **clipping** off and at global norm 1, and **3 seeds** at every setting;
# * **model selection on a validation set**: the test metric is read at the step of the lowest
#   validation loss, and at the last step, both recorded;
# * the **steps to the memoryless reference** (what a model without memory scores on data it has not
#   seen) and **to "solved"**, which tell "did not learn" from "learned slowly".
#
# Here we write a cell, register it by name, and benchmark it against a GRU and an LRU at `--quick` size
# (seconds of training per model; the committed leaderboard in `docs/benchmark.md` is larger).

# %%
import dataclasses
import importlib.util
import pathlib
import sys
import tempfile

import jax.numpy as jnp
import numpy as np
from IPython.display import Markdown, display

from rnnlab import protocol, tasks, zoo
from rnnlab.cells import DenseCell

# %% [markdown]
# ## A task is data
#
# `tasks.parse` reads a spec such as `copy:T=10`. The task owns three disjoint streams (training batches
# drawn from one key of a generator, fixed validation and test sets from two others), its loss and its
# metric (here the recall accuracy of the 10 answer steps), and its **memoryless reference**: the
# metrics of the predictor that sees only the position, fitted on 4096 training sequences and scored
# on the validation (or test) set, never fitted on the set it is scored on. For the copy task that is
# "blank, then a guess among the 8 symbols": cross-entropy about $10 \ln 8 / (T + 20)$ per step and
# recall accuracy about 1/8.

# %%
copy = tasks.parse("copy:T=10")
batch = copy.train_batch(run=0, step=0, batch_size=2)
print("inputs ", batch["x"][0])
print("targets", batch["y"][0])
reference = copy.memoryless("validation")
print({k: round(v, 4) for k, v in reference.items()}, "vs 10 ln 8 / 30 =", round(10 * np.log(8) / 30, 4))

# %% [markdown]
# ## Your cell
#
# A leaky tanh RNN, $h_t = (1 - \alpha) h_{t-1} + \alpha \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})$:
# a `DenseCell` subclass that writes only its `gates`, registered under a name (docs/extending.md).


# %%
@dataclasses.dataclass(frozen=True)
class LeakyCell(DenseCell):
    r"""h_t = (1 - alpha) h_{t-1} + alpha tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)"""

    alpha: float = 0.5

    def gates(self, h, proj, elementwise):
        (z,) = proj
        h = (1.0 - self.alpha) * h + self.alpha * jnp.tanh(z)
        return h, h


if "leaky" not in zoo.MODELS:  # the notebook may run twice in one kernel
    zoo.register(
        "leaky",
        zoo.NamedModel(
            label="leaky tanh RNN",
            description="leaky tanh RNN, alpha 0.5",
            cell=lambda H, **o: LeakyCell(H, **o),
            color="tab:olive",
        ),
    )

# %% [markdown]
# ## One command
#
# The script's `main` takes the command line as a list. `--quick` runs the copy task at T = 10 and
# MNIST-1D, a 1000-parameter target and 640 sequences per run; every (model, task) pair is one compiled
# program over learning rate x clipping x seeds.

# %%
spec = importlib.util.spec_from_file_location("benchmark", pathlib.Path("..") / "experiments" / "benchmark.py")
benchmark = sys.modules["benchmark"] = importlib.util.module_from_spec(spec)  # a script, not a package
spec.loader.exec_module(benchmark)

out = pathlib.Path(tempfile.mkdtemp()) / "benchmark"
results = benchmark.main(["--quick", "--models", "leaky", "gru", "lru", "--out", str(out), "--quiet"])

# %% [markdown]
# ## The leaderboard
#
# Rows are models, columns tasks; each cell the median test metric over 3 seeds with its quartiles, at the
# validation-selected step, then at the final step. `lr↑`/`lr↓` flag a best learning rate still at the
# edge of its grown grid. At this size nothing is solved; on the copy task the steps to the memoryless
# reference tell which models learned at least what needs no memory. On MNIST-1D the memoryless
# reference is the class prior, chance, which a model reaches by learning its readout's bias: there
# reaching it says nothing.

# %%
display(Markdown(protocol.render(results)))

# %%
for task in results["pairs"]:
    protocol.curves_figure(results, task)
