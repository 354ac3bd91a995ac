"""Evaluation metrics on the host (NumPy): accuracy, confusion, exact match, edit distance."""

from __future__ import annotations

import numpy as np


def over_seeds(values) -> dict:
    """One number per seed as JSON: ``{"median", "q25", "q75", "per_seed", "diverged"}``.

    A seed whose value is not finite (its training diverged) is counted in ``diverged``
    and left out of the median and quartiles (NaN if every seed diverged); ``per_seed``
    keeps every value."""
    values = np.asarray(values, np.float64)
    finite = values[np.isfinite(values)]
    stat = lambda f: float(f(finite)) if finite.size else float("nan")
    return {
        "median": stat(np.median),
        "q25": stat(lambda v: np.percentile(v, 25)),
        "q75": stat(lambda v: np.percentile(v, 75)),
        "per_seed": values.tolist(),
        "diverged": int(values.size - finite.size),
    }


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """``[true class, predicted class]`` counts."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def character_error_rate(predictions, references) -> float:
    """Total edit distance over total reference length."""
    total = sum(len(r) for r in references)
    return sum(edit_distance(p, r) for p, r in zip(predictions, references)) / max(total, 1)


def exact_match(predictions, references) -> float:
    return float(np.mean([p == r for p, r in zip(predictions, references)]))
