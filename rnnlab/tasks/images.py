"""Images read as sequences, classified from the last state (``rnnlab.data.sequences``).

* ``mnist1d:shuffled=`` (Greydanus 2020): 4000 training and 1000 test digits of 40 steps from
  the ``mnist1d`` package's own generator (``data_seed`` 42 is the published dataset;
  ``shuffled=1`` its ``shuffle_seq`` variant).  The last ``validation_size`` training digits are
  the validation set and are never trained on; the test split is the test set.
* ``pixel_mnist`` and ``psmnist`` (Le et al. 2015): 28 x 28 digits one pixel per step (T = 784),
  row by row or in one fixed permutation drawn from ``permutation_seed``; from local files
  (``data_dir``: the Hub's parquet files or an ``.npz``) or the Hugging Face Hub (``hub_name``).
  The last ``validation_size`` of the 60000 training digits are the validation set.

Training batches walk each run's own permutation of the training examples, one epoch after
another: batch ``step`` of run ``r`` is a pure function of ``(seed, r, step)``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import numpy as np

from rnnlab.data import sequences
from rnnlab.tasks.base import ClassificationTask
from rnnlab.validation import InputError


@dataclasses.dataclass(frozen=True)
class DatasetTask(ClassificationTask):
    """A classification task over a fixed dataset: ``arrays()`` gives ``x_train, y_train,
    x_test, y_test``; the last ``validation_size`` training examples are held out."""

    validation_size: int = 500

    def arrays(self) -> dict:
        raise NotImplementedError

    def _splits(self) -> dict:
        return _splits(self)

    def batch_size_check(self, batch_size: int) -> None:
        n = len(self._splits()["train"]["y"])
        if batch_size > n:
            raise InputError(f"{self.spec}: a batch of {batch_size} exceeds the {n} training examples")

    def train_batch(self, run: int, step: int, batch_size: int) -> dict:
        train = self._splits()["train"]
        n = len(train["y"])
        per_epoch = n // batch_size  # the last partial batch of an epoch is dropped
        epoch, position = divmod(int(step), per_epoch)
        order = np.random.default_rng((self.seed, 0, int(run), epoch)).permutation(n)
        rows = order[position * batch_size : (position + 1) * batch_size]
        return {"x": train["x"][rows], "y": train["y"][rows]}

    def held_out(self, split: str) -> dict:
        if split not in ("validation", "test"):
            raise ValueError(f"held-out split must be 'validation' or 'test', got {split!r}")
        return self._splits()[split]

    def reference_sample(self) -> dict:
        """The training split (the validation examples held out of it)."""
        return self._splits()["train"]

    @property
    def reference_fit(self) -> str:
        return f"the training split ({len(self._splits()['train']['y'])} examples, the validation set held out)"

    def input_shape(self):
        return self._splits()["test"]["x"].shape[1:]

    @property
    def sequence_length(self) -> int:
        return int(self.input_shape()[0])


@functools.cache
def _splits(task: DatasetTask) -> dict:
    data = task.arrays()
    n = len(data["y_train"])
    if isinstance(task.validation_size, bool) or not isinstance(task.validation_size, int):
        raise InputError(f"{task.name}:validation_size must be a whole number, got {task.validation_size!r}")
    if not 1 <= task.validation_size < n:
        raise InputError(
            f"{task.name}:validation_size must be in 1..{n - 1} (the training split holds {n}), got {task.validation_size}"
        )
    cut = n - task.validation_size
    return {
        "train": {"x": data["x_train"][:cut], "y": data["y_train"][:cut]},
        "validation": {"x": data["x_train"][cut:], "y": data["y_train"][cut:]},
        "test": {"x": data["x_test"], "y": data["y_test"]},
    }


@dataclasses.dataclass(frozen=True)
class MNIST1D(DatasetTask):
    """MNIST-1D, sequential or shuffled."""

    shuffled: bool = False
    data_seed: int = 42

    name: ClassVar[str] = "mnist1d"
    title: ClassVar[str] = "MNIST-1D"

    @property
    def solved(self) -> float:
        """The MNIST-1D authors' GRU: 91% sequential, 57% shuffled (their README), rounded down."""
        return 0.55 if self.shuffled else 0.9

    def arrays(self):
        return sequences.mnist1d(self.data_seed, shuffle=self.shuffled)


@dataclasses.dataclass(frozen=True)
class PixelMNIST(DatasetTask):
    """Pixel-by-pixel MNIST, row by row (sMNIST)."""

    validation_size: int = 5000
    data_dir: str = ""
    hub_name: str = "ylecun/mnist"

    name: ClassVar[str] = "pixel_mnist"
    title: ClassVar[str] = "pixel MNIST"
    solved: ClassVar[float] = 0.98

    def permutation(self):
        return None

    def arrays(self):
        images = sequences.load_mnist(self.hub_name, self.data_dir or None)
        permutation = self.permutation()
        return {
            "x_train": sequences.pixel_sequences(images["x_train"], permutation),
            "y_train": images["y_train"],
            "x_test": sequences.pixel_sequences(images["x_test"], permutation),
            "y_test": images["y_test"],
        }


@dataclasses.dataclass(frozen=True)
class PermutedPixelMNIST(PixelMNIST):
    """psMNIST: the 784 pixels in one fixed order drawn from ``permutation_seed``."""

    permutation_seed: int = 0

    name: ClassVar[str] = "psmnist"
    title: ClassVar[str] = "psMNIST"
    solved: ClassVar[float] = 0.9

    def permutation(self):
        return sequences.fixed_permutation(self.permutation_seed, sequences.MNIST_SIDE**2)
