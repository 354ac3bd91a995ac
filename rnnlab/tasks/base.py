"""What a task is: its streams, its model's readout, its loss and metrics, its memoryless reference.

A task is a frozen dataclass whose fields are its parameters (``copy:T=200`` is ``Copy(T=200)``).
It owns

* three streams, disjoint by construction: ``train_batch(run, step, B)`` (a pure function of the
  task's ``seed``, the run and the step), and the fixed ``held_out("validation")`` and
  ``held_out("test")`` sets.  Synthetic tasks draw them from distinct keys of one counter-based
  generator, ``(seed, 0, run, step)``, ``(seed, 1)`` and ``(seed, 2)``; datasets split by index
  (validation: the last examples of the training split, never trained on; test: the test split);
* its readout: ``"every"`` (a token model's logits at every step, ``rnnlab.linen.LanguageModel``
  on one-hot inputs) or ``"last"`` (a linear readout of the last state,
  ``rnnlab.linen.SequenceRegressor``);
* ``per_example(outputs, batch) -> {name: [B]}``: the loss and the metrics of each example, so a
  set's metric is their mean (the training loss is ``mean(per_example(...)["loss"])``);
* ``memoryless(split)``: the metrics of the best predictor that has no memory of earlier inputs,
  fitted on that very set: for each *context* it may see (the position, for the copy tasks;
  nothing, for a classifier or a regressor), it predicts the set's distribution of targets in
  that context (or their mean).  Its cross-entropy is the entropy of the targets given the
  context, its MSE their variance: no memoryless model scores better on that set.  It is
  computed by running the task's own ``per_example`` on that predictor's outputs;
* ``metric`` (what is learned: recall accuracy, accuracy, MSE), whether higher is better, and
  ``solved``, the value of ``metric`` at which the task counts as solved.

Every batch is ``{"x": inputs, "y": targets}`` (token tasks add ``"answer"``: the positions
that are scored as recalled).  ``x`` is ``[B, L] int32`` tokens or ``[B, L, I] float32``;
``y`` is ``[B, L] int32`` (every step), ``[B] int32`` (a class) or ``[B] float32`` (a value).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnlab.linen import Recurrent, SequenceRegressor
from rnnlab.validation import InputError, check_token_ids

SPLITS = ("train", "validation", "test")
READOUTS = ("every", "last")


@dataclasses.dataclass(frozen=True)
class Task:
    """The fields shared by every task; subclasses add their parameters and set the ClassVars."""

    seed: int = 0  # the data streams' seed

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""  # how tables and figures call the task
    readout: ClassVar[str] = "last"
    metric: ClassVar[str] = "loss"
    metric_label: ClassVar[str] = "loss"
    higher_is_better: ClassVar[bool] = False
    solved: ClassVar[float] = 0.0
    # reached the memoryless reference: validation loss <= reference * (1 + reference_tolerance)
    reference_tolerance: ClassVar[float] = 0.02

    # -- what a subclass provides --------------------------------------------
    @property
    def sequence_length(self) -> int:
        raise NotImplementedError

    def train_batch(self, run: int, step: int, batch_size: int) -> dict:
        raise NotImplementedError

    def held_out(self, split: str) -> dict:
        raise NotImplementedError

    def input_shape(self) -> tuple[int, ...]:
        """One example's ``x`` shape: ``(L,)`` tokens or ``(L, I)`` features."""
        raise NotImplementedError

    def model(self, layer):
        """The task's model around a recurrent ``layer`` (its readout)."""
        raise NotImplementedError

    def inputs(self, x):
        """What the model reads of a batch's ``x`` (token tasks: one-hot vectors)."""
        return x

    def init(self, model, key, x):
        """The model's params, from a batch's ``x``."""
        return model.init(key, self.inputs(x))

    def apply(self, model, params, x):
        """The model's outputs on a batch's ``x``: ``[B, L, V]`` logits or ``[B, out]``."""
        return model.apply(params, self.inputs(x))

    def per_example(self, outputs, batch) -> dict:
        raise NotImplementedError

    def memoryless_outputs(self, batch) -> np.ndarray:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------
    @property
    def spec(self) -> str:
        """The task as ``name:key=value,...``: its length ``T`` (where it has one) and the parameters
        that differ from their defaults, the task's own before the shared ones (``parse`` reads it)."""
        shared = {f.name for cls in (Task, SyntheticTask) for f in dataclasses.fields(cls)} | {"validation_size"}
        fields = sorted(dataclasses.fields(self), key=lambda f: f.name in shared)
        shown = [
            f"{f.name}={_format(getattr(self, f.name))}"
            for f in fields
            if f.name == "T" or getattr(self, f.name) != f.default
        ]
        return self.name + (":" + ",".join(shown) if shown else "")

    def batch_size_check(self, batch_size: int) -> None:
        """Hook for tasks with a finite training split."""

    def memoryless(self, split: str) -> dict:
        """The metrics of the best memoryless predictor of ``split`` (module docstring)."""
        batch = self.held_out(split)
        metrics = self.per_example(jnp.asarray(self.memoryless_outputs(batch)), batch)
        return {k: float(np.mean(np.asarray(v, np.float64))) for k, v in metrics.items()}

    def dummy_input(self):
        shape = (1, *self.input_shape())
        return np.zeros(shape, np.int32 if len(shape) == 2 else np.float32)

    def is_better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b

    def reached(self, value: float, threshold: float) -> bool:
        return value >= threshold if self.higher_is_better else value <= threshold


def _format(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def positions_memoryless(y_bl, weight_bl, context_bl, num_classes: int) -> np.ndarray:
    """Log-probabilities ``[B, L, V]`` of the best memoryless classifier of one set: for each
    context (an int per position, e.g. the position itself), the set's frequency of every target
    among the scored positions (``weight > 0``) of that context.  A target the set never shows
    in a context gets probability 0 (log 1e-30): it is never scored there."""
    y, w, c = (np.asarray(a).ravel() for a in (y_bl, weight_bl, context_bl))
    counts = np.zeros((int(c.max()) + 1, num_classes))
    np.add.at(counts, (c, y), w)
    total = counts.sum(axis=1, keepdims=True)
    probs = np.divide(counts, total, out=np.full_like(counts, 1.0 / num_classes), where=total > 0)
    return np.log(np.maximum(probs, 1e-30))[np.asarray(context_bl)].astype(np.float32)


class EveryStep(nn.Module):
    """``Recurrent(layer)`` then ``Dense(out_features)`` at every step: ``[B, L, I] -> [B, L, out]``.

    The token tasks feed it one-hot vectors: ``LanguageModel(V, None, layer)`` (the same params,
    ``recurrent`` and ``head``) without its traced check of the ids, a host callback that keeps
    a program out of the persistent compilation cache; a task's ids are checked on the host,
    where they are drawn (``TokenTask.checked``)."""

    layer: object
    out_features: int

    @nn.compact
    def __call__(self, x_bli):
        outputs_blh, _ = Recurrent(self.layer, name="recurrent")(x_bli)
        return nn.Dense(self.out_features, name="head")(outputs_blh)


@dataclasses.dataclass(frozen=True)
class TokenTask(Task):
    """A token sequence in, a token out at every step (one-hot inputs, ``LanguageModel``).

    ``loss``: cross-entropy in nats per scored step (every step when ``loss_on_every_step``,
    else the answer steps only); ``recall_loss``: the cross-entropy of the answer steps;
    ``accuracy``: the share of answer steps whose most likely token is the target."""

    readout: ClassVar[str] = "every"
    metric: ClassVar[str] = "accuracy"
    metric_label: ClassVar[str] = "recall accuracy"
    higher_is_better: ClassVar[bool] = True
    solved: ClassVar[float] = 0.99
    loss_on_every_step: ClassVar[bool] = False
    vocab_size: ClassVar[int] = 0

    def input_shape(self):
        return (self.sequence_length,)

    def model(self, layer):
        return EveryStep(layer, self.vocab_size)

    def inputs(self, x_bl):
        return jax.nn.one_hot(x_bl, self.vocab_size)

    def checked(self, batch: dict) -> dict:
        """``batch`` once its tokens and targets are known to lie in ``0..vocab_size-1``."""
        for key in ("x", "y"):
            check_token_ids(batch[key], self.vocab_size, f"{self.name} {'inputs' if key == 'x' else 'targets'}")
        return batch

    def per_example(self, logits_blv, batch) -> dict:
        ce_bl = optax.softmax_cross_entropy_with_integer_labels(logits_blv, batch["y"])
        answer_bl = jnp.asarray(batch["answer"], ce_bl.dtype)
        per_answer = lambda v_bl: jnp.sum(v_bl * answer_bl, axis=1) / jnp.sum(answer_bl, axis=1)
        hits_bl = (jnp.argmax(logits_blv, axis=-1) == batch["y"]).astype(ce_bl.dtype)
        recall_loss_b = per_answer(ce_bl)
        loss_b = jnp.mean(ce_bl, axis=1) if self.loss_on_every_step else recall_loss_b
        return {"loss": loss_b, "recall_loss": recall_loss_b, "accuracy": per_answer(hits_bl)}

    def memoryless_context(self, batch) -> np.ndarray:
        """What a memoryless model may condition on, per position: the position itself."""
        return np.broadcast_to(np.arange(batch["y"].shape[1]), batch["y"].shape)

    def memoryless_outputs(self, batch):
        weight = np.ones(batch["y"].shape) if self.loss_on_every_step else batch["answer"]
        return positions_memoryless(batch["y"], weight, self.memoryless_context(batch), self.vocab_size)


@dataclasses.dataclass(frozen=True)
class ClassificationTask(Task):
    """A sequence in, one class out of the last state (``SequenceRegressor``):
    ``loss`` cross-entropy, ``accuracy``.  The memoryless predictor is the set's class frequencies."""

    metric: ClassVar[str] = "accuracy"
    metric_label: ClassVar[str] = "test accuracy"
    higher_is_better: ClassVar[bool] = True
    num_classes: ClassVar[int] = 10

    def model(self, layer):
        return SequenceRegressor(layer, self.num_classes, readout="last")

    def per_example(self, logits_bk, batch) -> dict:
        ce_b = optax.softmax_cross_entropy_with_integer_labels(logits_bk, batch["y"])
        return {"loss": ce_b, "accuracy": (jnp.argmax(logits_bk, -1) == batch["y"]).astype(ce_b.dtype)}

    def memoryless_outputs(self, batch):
        y = np.asarray(batch["y"])[:, None]
        return positions_memoryless(y, np.ones(y.shape), np.zeros(y.shape, int), self.num_classes)[:, 0]


@dataclasses.dataclass(frozen=True)
class RegressionTask(Task):
    """A sequence in, one number out of the last state: ``loss`` = ``mse``, the squared error.
    The memoryless predictor is the set's mean target (its MSE: the targets' variance)."""

    metric: ClassVar[str] = "mse"
    metric_label: ClassVar[str] = "test MSE"

    def model(self, layer):
        return SequenceRegressor(layer, 1, readout="last")

    def per_example(self, out_b1, batch) -> dict:
        se_b = (out_b1[:, 0] - batch["y"]) ** 2
        return {"loss": se_b, "mse": se_b}

    def memoryless_outputs(self, batch):
        y = np.asarray(batch["y"], np.float64)
        return np.full((len(y), 1), np.mean(y), np.float32)


@dataclasses.dataclass(frozen=True)
class SyntheticTask(Task):
    """A task drawn from a generator ``draw(seed, batch_size)``: the training batch of
    ``(run, step)`` is ``draw((seed, 0, run, step), B)``, the validation set ``draw((seed, 1), n)``
    and the test set ``draw((seed, 2), n)``: three keys of one generator, so no stream is another's."""

    validation_size: int = 128  # selects the step and the setting
    test_size: int = 256

    def draw(self, key, batch_size: int) -> dict:
        raise NotImplementedError

    def train_batch(self, run: int, step: int, batch_size: int) -> dict:
        return self.draw((self.seed, 0, int(run), int(step)), batch_size)

    def held_out(self, split: str) -> dict:
        return _held_out(self, split)


@functools.cache
def _held_out(task: SyntheticTask, split: str) -> dict:
    if split not in ("validation", "test"):
        raise ValueError(f"held-out split must be 'validation' or 'test', got {split!r}")
    size = task.validation_size if split == "validation" else task.test_size
    return task.draw((task.seed, 1 if split == "validation" else 2), size)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"a split is one of {', '.join(SPLITS)}, got {split!r}")
