r"""What a task is: its streams, its model's readout, its loss and metrics, its memoryless reference.

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
* ``memoryless(split)``: the metrics on ``split`` of the predictor that has no memory of earlier
  inputs, fitted on training data (``reference_sample()``: ``reference_size`` sequences of the
  training stream, or the training split) and never on the set it is scored on.  For each
  *context* c it may see (the position, for the copy tasks; nothing, for a classifier or a
  regressor) it predicts the fitted frequencies of the targets,
  :math:`\hat p(v \mid c) = n_{fit}(c, v) / n_{fit}(c)`, or their mean :math:`\bar y_{fit}`.
  On unseen data its expected cross-entropy is the entropy of the targets given the context plus
  :math:`KL(p \| \hat p) \approx (V - 1) / (2 n_{fit}(c))` nats per scored step, its MSE the
  targets' variance plus :math:`(\bar y - \bar y_{fit})^2`, and its accuracy that of a fixed
  guess (1/8 on the copy task's symbols): what a model with no memory scores on data it has not
  seen.  Fitted on the scored set itself it would beat that value by fitting the set's own noise
  (the argmax of 128 sequences' frequencies is right about 0.17 of their symbols; chance is 0.125).
  It is computed by running the task's own ``per_example`` on that predictor's outputs;
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
    reference_size: ClassVar[int] = 4096  # training sequences the memoryless predictor is fitted on

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

    def reference_sample(self) -> dict:
        """The training data the memoryless predictor is fitted on (disjoint from the held-out sets)."""
        raise NotImplementedError

    @property
    def reference_fit(self) -> str:
        """What ``reference_sample`` is, in words (results files record it)."""
        return "training data"

    def memoryless_outputs(self, fit: dict, batch: dict) -> np.ndarray:
        """The outputs on ``batch`` of the memoryless predictor fitted on ``fit``."""
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
        """The metrics on ``split`` of the memoryless predictor fitted on ``reference_sample()``
        (module docstring)."""
        return dict(_memoryless(self, split))

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


@functools.cache
def _memoryless(task: Task, split: str) -> tuple:
    check_split(split)
    if split == "train":
        raise ValueError("the memoryless reference is scored on a held-out split: 'validation' or 'test'")
    batch = task.held_out(split)
    metrics = task.per_example(jnp.asarray(task.memoryless_outputs(task.reference_sample(), batch)), batch)
    return tuple((k, float(np.mean(np.asarray(v, np.float64)))) for k, v in metrics.items())


def positions_memoryless(y_bl, weight_bl, context_bl, num_classes: int, context_out=None) -> np.ndarray:
    r"""Log-probabilities ``[*context_out.shape, V]`` of the memoryless classifier fitted on one set
    (``y``, ``weight``, ``context``: ``[B, L]``): for each context (an int per position, e.g. the
    position itself), the frequency of every target among the fitted set's scored positions
    (``weight > 0``) of that context, :math:`\hat p(v \mid c) = n(c, v) / n(c)`, read at the
    contexts ``context_out`` of the positions to predict (default: the fitted set's own).  A
    context the fitted set never scores gets the uniform distribution; a target it never shows
    in a context, probability 0 (log 1e-30)."""
    y, w, c = (np.asarray(a).ravel() for a in (y_bl, weight_bl, context_bl))
    context_out = np.asarray(context_bl if context_out is None else context_out)
    counts = np.zeros((max(int(c.max()), int(context_out.max())) + 1, num_classes))
    np.add.at(counts, (c, y), w)
    total = counts.sum(axis=1, keepdims=True)
    probs = np.divide(counts, total, out=np.full_like(counts, 1.0 / num_classes), where=total > 0)
    return np.log(np.maximum(probs, 1e-30))[context_out].astype(np.float32)


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

    def memoryless_outputs(self, fit, batch):
        weight = np.ones(fit["y"].shape) if self.loss_on_every_step else fit["answer"]
        context = self.memoryless_context(fit)
        return positions_memoryless(fit["y"], weight, context, self.vocab_size, self.memoryless_context(batch))


@dataclasses.dataclass(frozen=True)
class ClassificationTask(Task):
    """A sequence in, one class out of the last state (``SequenceRegressor``):
    ``loss`` cross-entropy, ``accuracy``.  The memoryless predictor is the training split's class
    frequencies."""

    metric: ClassVar[str] = "accuracy"
    metric_label: ClassVar[str] = "test accuracy"
    higher_is_better: ClassVar[bool] = True
    num_classes: ClassVar[int] = 10

    def model(self, layer):
        return SequenceRegressor(layer, self.num_classes, readout="last")

    def per_example(self, logits_bk, batch) -> dict:
        ce_b = optax.softmax_cross_entropy_with_integer_labels(logits_bk, batch["y"])
        return {"loss": ce_b, "accuracy": (jnp.argmax(logits_bk, -1) == batch["y"]).astype(ce_b.dtype)}

    def memoryless_outputs(self, fit, batch):
        y = np.asarray(fit["y"])[:, None]
        out = np.zeros((len(batch["y"]),), int)
        return positions_memoryless(y, np.ones(y.shape), np.zeros(y.shape, int), self.num_classes, out)


@dataclasses.dataclass(frozen=True)
class RegressionTask(Task):
    """A sequence in, one number out of the last state: ``loss`` = ``mse``, the squared error.
    The memoryless predictor is the mean training target (its MSE: the targets' variance, plus the
    square of the difference of the two means)."""

    metric: ClassVar[str] = "mse"
    metric_label: ClassVar[str] = "test MSE"

    def model(self, layer):
        return SequenceRegressor(layer, 1, readout="last")

    def per_example(self, out_b1, batch) -> dict:
        se_b = (out_b1[:, 0] - batch["y"]) ** 2
        return {"loss": se_b, "mse": se_b}

    def memoryless_outputs(self, fit, batch):
        mean = np.mean(np.asarray(fit["y"], np.float64))
        return np.full((len(batch["y"]), 1), mean, np.float32)


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

    def reference_sample(self) -> dict:
        """``reference_size`` sequences of the training stream: run 0's step-0 key, drawn at once."""
        return self.train_batch(0, 0, self.reference_size)

    @property
    def reference_fit(self) -> str:
        return f"{self.reference_size} sequences of the training stream (train_batch(0, 0, {self.reference_size}))"


@functools.cache
def _held_out(task: SyntheticTask, split: str) -> dict:
    if split not in ("validation", "test"):
        raise ValueError(f"held-out split must be 'validation' or 'test', got {split!r}")
    size = task.validation_size if split == "validation" else task.test_size
    return task.draw((task.seed, 1 if split == "validation" else 2), size)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise InputError(f"a split is one of {', '.join(SPLITS)}, got {split!r}")
