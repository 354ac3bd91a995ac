"""A fixed dataset as a script's flags cut it: ``--train-size``, ``--test-size`` and ``--validation-size``."""

from __future__ import annotations

from rnnlab.experiment.cli import ConfigError
from rnnlab.tasks import hold_out


def cut_splits(arrays: dict, train_size: int = 0, test_size: int = 0, validation_size: int = 0) -> dict:
    """``arrays`` (``x_train``, ``y_train``, ``x_test``, ``y_test``) as splits ``{"x": [N, ...], "y": [N]}``:
    ``train`` and ``test`` their first ``train_size`` and ``test_size`` examples (0: all of them), and,
    given ``validation_size``, ``valid``: the last that many training examples, held out of ``train``.
    A size the split cannot give is a ``ConfigError`` naming its flag."""
    splits = {s: {"x": arrays[f"x_{s}"], "y": arrays[f"y_{s}"]} for s in ("train", "test")}
    for split, size in (("train", train_size), ("test", test_size)):
        if size > len(splits[split]["y"]):
            raise ConfigError(f"--{split}-size {size} exceeds the {len(splits[split]['y'])} examples of the split")
        splits[split] = {k: v[: size or None] for k, v in splits[split].items()}
    if validation_size:
        if validation_size >= len(splits["train"]["y"]):
            raise ConfigError(
                f"--validation-size {validation_size} leaves no training examples (the split has "
                f"{len(splits['train']['y'])})"
            )
        splits["train"], splits["valid"] = hold_out(splits["train"], validation_size)
    return splits
