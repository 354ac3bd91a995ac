"""Images read as sequences, classified from the last state (``rnnlab.data.sequences``).

* ``mnist1d:shuffled=`` (Greydanus 2020): 4000 training and 1000 test digits of 40 steps from
  the ``mnist1d`` package's own generator (``data_seed`` 42 is the published dataset;
  ``shuffled=1`` its ``shuffle_seq`` variant; ``length=1000`` its ``final_seq_length``, the same
  digits stretched, not a published benchmark).  The last ``validation_size`` training digits are
  the validation set and are never trained on; the test split is the test set.
* ``pixel_mnist`` and ``psmnist`` (Le et al. 2015): 28 x 28 digits one pixel per step (T = 784),
  row by row or in one fixed permutation drawn from ``permutation_seed``; from local files
  (``data_dir``: the Hub's parquet files or an ``.npz``) or the Hugging Face Hub (``hub_name``).
  The last ``validation_size`` of the 60000 training digits are the validation set.

Training batches walk each run's own permutation of the training examples, one epoch after
another: batch ``step`` of run ``r`` is a pure function of ``(seed, r, step)``.  ``in_order``
walks a split in its own order instead, as the MNIST-1D authors train.
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

    def describe(self) -> dict:
        """The dataset in words, for a results file (subclasses add its source and order)."""
        return {"name": self.title}

    def published(self) -> dict:
        """What its authors report on this very dataset: ``{"readme": {model: test accuracy}, "runs": {run:
        {step: test accuracy}}}``, or ``{}`` where nothing is recorded here."""
        return {}

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


def in_order(split: dict, step: int, batch_size: int) -> dict:
    """Batch ``step`` of a fixed split ``{"x": [N, ...], "y": [N], ...}`` walked in its own order,
    wrapping around: examples ``(step * B + i) mod N``, ``i < B`` (the MNIST-1D authors'
    ``train_model``; ``DatasetTask.train_batch`` draws each epoch's order instead)."""
    rows = (step * batch_size + np.arange(batch_size)) % len(split["y"])
    return {k: v[rows] for k, v in split.items()}


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
    train, validation = hold_out({"x": data["x_train"], "y": data["y_train"]}, task.validation_size)
    return {"train": train, "validation": validation, "test": {"x": data["x_test"], "y": data["y_test"]}}


def hold_out(split: dict, n: int) -> tuple[dict, dict]:
    """``(kept, held)``: a split ``{"x": [N, ...], "y": [N], ...}`` without its last ``n >= 1``
    examples, and those ``n``: a training split and the validation set it never trains on."""
    return {k: v[:-n] for k, v in split.items()}, {k: v[-n:] for k, v in split.items()}


# shuffled -> (what the MNIST-1D authors' README reports, greydanus/mnist1d README.md "Comparing MNIST and MNIST-1D";
# their runs of GRUBase (6000 steps): the test accuracy the notebook building_mnist1d.ipynb prints every 1000 steps,
# as committed in 2020 (d18aed1, seed 42; its printed 91.1 at step 6000 and 57.2 at step 1000 match the README's GRU
# column) and as the authors reran the notebook in 2024 (9e0b8f1, "Rerun and debug notebooks"; its set_seed, from
# mnist1d/utils.py, does not seed torch, so its initial weights are an independent draw))
MNIST1D_PUBLISHED = {
    False: (
        {"GRU (bidirectional, 6 units, flattened readout)": 0.91, "CNN": 0.94},
        {
            "2020 (d18aed1)": [0.880, 0.883, 0.897, 0.878, 0.901, 0.911],
            "2024 rerun (9e0b8f1)": [0.852, 0.872, 0.854, 0.886, 0.905, 0.908],
        },
    ),
    True: (
        {"GRU (bidirectional, 6 units, flattened readout)": 0.57, "CNN": 0.56},
        {
            "2020 (d18aed1)": [0.572, 0.550, 0.540, 0.547, 0.538, 0.541],
            "2024 rerun (9e0b8f1)": [0.530, 0.535, 0.532, 0.534, 0.517, 0.508],
        },
    ),
}


@dataclasses.dataclass(frozen=True)
class MNIST1D(DatasetTask):
    """MNIST-1D, sequential or shuffled."""

    shuffled: bool = False
    data_seed: int = 42
    length: int = 40  # the generator's final_seq_length: T

    name: ClassVar[str] = "mnist1d"
    title: ClassVar[str] = "MNIST-1D"

    @property
    def solved(self) -> float:
        """The MNIST-1D authors' GRU: 91% sequential, 57% shuffled (their README, ``MNIST1D_PUBLISHED``), rounded down."""
        return 0.55 if self.shuffled else 0.9

    def arrays(self):
        return sequences.mnist1d(self.data_seed, shuffle=self.shuffled, sequence_length=self.length)

    def describe(self) -> dict:
        """The dataset in words, for a results file."""
        name, order = "MNIST-1D (Greydanus 2020), generated by the mnist1d package", "shuffled (shuffle_seq)"
        return {"name": name, "order": order if self.shuffled else "sequential", "generator_seed": self.data_seed}

    def published(self) -> dict:
        """The authors' test accuracies (``MNIST1D_PUBLISHED``), for the published dataset only: 40 steps
        from generator seed 42.  ``runs``: at steps 1000 to 6000 of their notebook's GRU."""
        if (self.length, self.data_seed) != (40, 42):
            return {}
        readme, runs = MNIST1D_PUBLISHED[self.shuffled]
        steps = [str(k) for k in range(1000, 7000, 1000)]
        return {"readme": readme, "runs": {who: dict(zip(steps, v)) for who, v in runs.items()}}


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

    def describe(self) -> dict:
        """The dataset in words, for a results file: where it came from and how its pixels were read."""
        source, order = self.data_dir or self.hub_name, "sequential (row by row)"
        return {"name": "MNIST, pixel by pixel", "source": source, "order": order, "pixels": self.pixels()}

    def images(self) -> dict:
        """The digits as ``sequences.load_mnist`` reads them: ``x_train [N, 28, 28]`` uint8 (or
        float32 in [0, 1], as the files hold them), ``y_train``, ``x_test``, ``y_test``; read once."""
        return _images(self.hub_name, self.data_dir)

    def pixels(self) -> dict:
        """How each split's pixels are read (``sequences.pixel_scale``): ``{"train": ..., "test": ...}``."""
        return {s: sequences.pixel_scale(self.images()[f"x_{s}"]) for s in sequences.SPLITS}

    def arrays(self):
        images = self.images()
        permutation = self.permutation()
        return {
            "x_train": sequences.pixel_sequences(images["x_train"], permutation),
            "y_train": images["y_train"],
            "x_test": sequences.pixel_sequences(images["x_test"], permutation),
            "y_test": images["y_test"],
        }


@functools.cache
def _images(hub_name: str, data_dir: str) -> dict:
    return sequences.load_mnist(hub_name, data_dir or None)


@dataclasses.dataclass(frozen=True)
class PermutedPixelMNIST(PixelMNIST):
    """psMNIST: the 784 pixels in one fixed order drawn from ``permutation_seed``."""

    permutation_seed: int = 0

    name: ClassVar[str] = "psmnist"
    title: ClassVar[str] = "psMNIST"
    solved: ClassVar[float] = 0.9

    def permutation(self):
        return sequences.fixed_permutation(self.permutation_seed, sequences.MNIST_SIDE**2)

    def describe(self) -> dict:
        return super().describe() | {"order": f"permuted (seed {self.permutation_seed})"}
