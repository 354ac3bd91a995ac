"""The long-range tasks as data: streams, readout, loss, metrics, memoryless reference
(``rnnlab.tasks.base`` says what a task owns; the reference is fitted on training data and
scored on the validation or test set).

    task = parse("copy:T=200")            # Copy(T=200); parse("mnist1d:shuffled=1"), parse("adding:T=200")
    batch = task.train_batch(run=0, step=0, batch_size=32)     # {"x": [32, 220], "y": ..., "answer": ...}
    model = task.model(zoo.make_layer("lstm", 64, t_max=task.sequence_length))
    task.memoryless("validation")         # {"loss": 0.0945..., "recall_loss": 2.078..., "accuracy": 0.121...}

A spec is ``name`` or ``name:key=value,key=value``; the keys are the task's dataclass fields.
``register(cls)`` adds a task of your own (a ``Task`` subclass with a ``name``).
"""

from __future__ import annotations

import dataclasses
import typing

from rnnlab.tasks.base import (
    ClassificationTask,
    RegressionTask,
    SyntheticTask,
    Task,
    TokenTask,
    positions_memoryless,
)
from rnnlab.tasks.images import MNIST1D, DatasetTask, PermutedPixelMNIST, PixelMNIST, hold_out, in_order
from rnnlab.tasks.synthetic import Adding, AssociativeRecall, Copy, SelectiveCopy
from rnnlab.validation import InputError

TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Adding, Copy, SelectiveCopy, AssociativeRecall, MNIST1D, PixelMNIST, PermutedPixelMNIST)
}


def register(cls: type[Task]) -> type[Task]:
    """Add a task class under its ``name`` (a name already taken is an error)."""
    if not (isinstance(cls, type) and issubclass(cls, Task) and cls.name):
        raise TypeError("register takes a rnnlab.tasks.Task subclass with a name")
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} is already registered")
    TASKS[cls.name] = cls
    return cls


def parameters(cls: type[Task]) -> dict[str, type]:
    """A task's parameters and their types."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _value(task: str, key: str, kind: type, text: str):
    try:
        if kind is bool:
            if text.lower() not in ("0", "1", "true", "false"):
                raise ValueError
            return text.lower() in ("1", "true")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        word = {bool: "0 or 1", int: "a whole number", float: "a number"}[kind]
        raise InputError(f"task {task}: {key} must be {word}, got {text!r}") from None


def parse(spec: str) -> Task:
    """``"copy:T=200"`` -> ``Copy(T=200)``; one-line ``InputError`` for an unknown task, an unknown
    parameter or a bad value."""
    name, _, rest = spec.strip().partition(":")
    if name not in TASKS:
        raise InputError(f"unknown task {name!r} in {spec!r}; choose one of {', '.join(TASKS)}")
    cls, known = TASKS[name], parameters(TASKS[name])
    values = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep:
            raise InputError(f"task {spec!r}: parameters are key=value, got {item!r}")
        if key not in known:
            raise InputError(f"task {name} has no parameter {key!r}; it takes {', '.join(known)}")
        if key in values:
            raise InputError(f"task {spec!r} sets {key} twice")
        values[key] = _value(name, key, known[key], text.strip())
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise InputError(f"task {spec!r}: {e}") from None


__all__ = [
    "MNIST1D",
    "TASKS",
    "Adding",
    "AssociativeRecall",
    "ClassificationTask",
    "Copy",
    "DatasetTask",
    "PermutedPixelMNIST",
    "PixelMNIST",
    "RegressionTask",
    "SelectiveCopy",
    "SyntheticTask",
    "Task",
    "TokenTask",
    "hold_out",
    "in_order",
    "parameters",
    "parse",
    "positions_memoryless",
    "register",
]
