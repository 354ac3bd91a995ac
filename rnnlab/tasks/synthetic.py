"""The synthetic long-range tasks, drawn by ``rnnlab.data.synthetic``'s generators.

* ``adding:T=`` (Hochreiter & Schmidhuber 1997; Le et al. 2015's form): the sum of the two marked
  values of T, read out of the last state; metric MSE (memoryless: the targets' variance, 1/6).
* ``copy:T=`` (Arjovsky et al. 2016): 10 symbols, a delay of T steps, recall them.  The loss is
  the cross-entropy over all T + 20 steps (as the papers train it; memoryless
  ``10 ln 8 / (T + 20)``); the metric is the recall accuracy of the last 10 steps (chance 1/8).
* ``selective_copy:T=,tokens=,symbols=`` (Gu & Dao 2023, section 4.1), scaled down: the paper's
  T = 4096 with 16 tokens becomes T = 100-200 with 8; loss and metric on the answer steps.
* ``mqar:T=,pairs=,keys=,values=`` (Arora et al. 2023, zoology's multi-query associative recall),
  small: 8 pairs, 16 keys and 16 values instead of a vocabulary of 8192; loss and metric on the
  queries.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
import numpy as np
import optax

from rnnlab.data import synthetic
from rnnlab.tasks.base import RegressionTask, SyntheticTask, TokenTask
from rnnlab.validation import InputError


def _at_least(task: str, name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{task}:{name} must be a whole number >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class Adding(SyntheticTask, RegressionTask):
    """The adding problem: ``x [B, T, 2]`` (value ~ U[0, 1], marker), ``y [B]`` the marked sum."""

    T: int = 100

    name: ClassVar[str] = "adding"
    title: ClassVar[str] = "adding"
    solved: ClassVar[float] = 0.01  # an MSE 6% of the memoryless 1/6

    def __post_init__(self):
        _at_least(self.name, "T", self.T, 2)

    @property
    def sequence_length(self) -> int:
        return self.T

    def input_shape(self):
        return (self.T, 2)

    def draw(self, key, batch_size):
        return synthetic.adding_problem(key, batch_size, self.T)


@dataclasses.dataclass(frozen=True)
class Copy(SyntheticTask, TokenTask):
    """The copy task: ``x [B, T + 20]`` tokens, ``y`` blanks then the 10 symbols; ``T`` is the delay."""

    T: int = 100

    name: ClassVar[str] = "copy"
    title: ClassVar[str] = "copy"
    loss_on_every_step: ClassVar[bool] = True
    vocab_size: ClassVar[int] = synthetic.COPY_SYMBOLS + 2

    def __post_init__(self):
        _at_least(self.name, "T", self.T, 1)

    @property
    def sequence_length(self) -> int:
        return self.T + 2 * synthetic.COPY_LENGTH

    def draw(self, key, batch_size):
        raw = synthetic.copy_memory(key, batch_size, self.T)
        answer = np.zeros(raw["targets"].shape, bool)
        answer[:, -synthetic.COPY_LENGTH :] = True
        return self.checked({"x": raw["tokens"], "y": raw["targets"], "answer": answer})

    @staticmethod
    def batch_metrics(logits_blv, y_bl) -> dict:
        r"""What a copy model learned, as means over one batch: ``experiments/copy_memory.py``'s
        training loss and held-out metrics.  Each is one mean over the batch's elements, the order
        its committed runs summed in; the means of ``per_example`` agree to float32 rounding.

        With :math:`\ell_{bt} = -\log p_{bt}(y_{bt})`: ``loss`` :math:`= \frac{1}{B(T+20)}\sum_{b,t} \ell_{bt}`, nats per
        step over all T + 20 steps (memoryless ``10 ln 8 / (T + 20)``); ``recall_loss``, the same mean
        over the 10 answer steps alone (memoryless ``ln 8`` at every T); ``recall_accuracy``, the
        share of the 10 symbols whose most likely output is right (chance 1/8)."""
        ce_bl = optax.softmax_cross_entropy_with_integer_labels(logits_blv, y_bl)
        recall = slice(-synthetic.COPY_LENGTH, None)
        hits_bl = jnp.argmax(logits_blv[:, recall], axis=-1) == y_bl[:, recall]
        return {
            "loss": jnp.mean(ce_bl),
            "recall_loss": jnp.mean(ce_bl[:, recall]),
            "recall_accuracy": jnp.mean(hits_bl),
        }


@dataclasses.dataclass(frozen=True)
class SelectiveCopy(SyntheticTask, TokenTask):
    """Selective copying: ``x [B, T + tokens]``, the symbols at random positions, recalled in order."""

    T: int = 100
    tokens: int = synthetic.SELECTIVE_TOKENS
    symbols: int = synthetic.SELECTIVE_SYMBOLS

    name: ClassVar[str] = "selective_copy"
    title: ClassVar[str] = "selective copy"

    def __post_init__(self):
        _at_least(self.name, "tokens", self.tokens, 1)
        _at_least(self.name, "symbols", self.symbols, 2)
        _at_least(self.name, "T", self.T, self.tokens)

    @property
    def vocab_size(self) -> int:  # blank, the symbols, the marker
        return self.symbols + 2

    @property
    def sequence_length(self) -> int:
        return self.T + self.tokens

    def draw(self, key, batch_size):
        raw = synthetic.selective_copy(key, batch_size, self.T, self.tokens, self.symbols)
        answer = np.zeros(raw["targets"].shape, bool)
        answer[:, self.T :] = True
        return self.checked({"x": raw["tokens"], "y": raw["targets"], "answer": answer})


@dataclasses.dataclass(frozen=True)
class AssociativeRecall(SyntheticTask, TokenTask):
    """MQAR: ``x [B, T]``, the pairs then the queries; ``y`` the queried values."""

    T: int = 64
    pairs: int = 8
    keys: int = 16
    values: int = 16

    name: ClassVar[str] = "mqar"
    title: ClassVar[str] = "associative recall"

    def __post_init__(self):
        _at_least(self.name, "pairs", self.pairs, 1)
        _at_least(self.name, "keys", self.keys, self.pairs)
        _at_least(self.name, "values", self.values, 2)
        _at_least(self.name, "T", self.T, 3 * self.pairs)

    @property
    def vocab_size(self) -> int:
        return 1 + self.keys + self.values

    @property
    def sequence_length(self) -> int:
        return self.T

    def draw(self, key, batch_size):
        raw = synthetic.associative_recall(key, batch_size, self.T, self.pairs, self.keys, self.values)
        return self.checked({"x": raw["tokens"], "y": raw["targets"], "answer": raw["answer"]})

    def memoryless_context(self, batch):
        """A memoryless model sees that a query is asked, not which value its key was paired with:
        one context for every query position (the queries' positions are random)."""
        return np.zeros(batch["y"].shape, int)
