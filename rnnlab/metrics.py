"""Evaluation metrics on the host (NumPy): summaries over seeds, confusion, exact match, edit distance."""

from __future__ import annotations

import jax
import numpy as np


def over_seeds(values, *, per_seed: bool = True) -> dict:
    """Values over seeds (``[S]``, or ``[S, ...]`` for curves) as JSON: the one summary of seeds.

    ``{"median", "q25", "q75", "diverged", "diverged_seeds", "per_seed"}``: a seed with any
    non-finite value (its training diverged) is named in ``diverged_seeds``, counted in
    ``diverged`` and left out of the median and quartiles (NaN if every seed diverged);
    ``per_seed`` keeps every value (left out with ``per_seed=False``)."""
    values = np.asarray(values, np.float64)
    finite_s = np.all(np.isfinite(values.reshape(len(values), -1)), axis=1)
    kept = values[finite_s]
    stat = lambda f: (f(kept, axis=0) if len(kept) else np.full(values.shape[1:], np.nan)).tolist()
    out = {
        "median": stat(np.median),
        "q25": stat(lambda v, axis: np.percentile(v, 25, axis=axis)),
        "q75": stat(lambda v, axis: np.percentile(v, 75, axis=axis)),
        "diverged": int(np.sum(~finite_s)),
        "diverged_seeds": np.flatnonzero(~finite_s).tolist(),
    }
    if per_seed:
        out["per_seed"] = values.tolist()
    return out


def curve_summary(steps_n, values_sn) -> dict:
    """A metric evaluated along training, higher better (a test accuracy), per seed ``values_sn [S, N]``
    at ``steps_n [N]``: ``by_step[str(step)]``, the seeds at each step (``over_seeds``); ``peak``, each
    seed's best finite value ``max_n values_sn[s, n]`` (``over_seeds``); ``peak_step``, the first step
    where each seed reached it."""
    values_sn = np.asarray(values_sn, np.float64)
    best_s = np.argmax(np.where(np.isfinite(values_sn), values_sn, -np.inf), axis=1)
    return {
        "by_step": {str(step): over_seeds(values_sn[:, n]) for n, step in enumerate(steps_n)},
        "peak": over_seeds(values_sn[np.arange(len(values_sn)), best_s]),
        "peak_step": [steps_n[n] for n in best_s],
    }


def first_nonfinite_step(steps_n, *values_sn) -> list:
    """For each row (a seed): the first logged step where any of ``values_sn [S, N]`` is not
    finite, or None."""
    ok_sn = np.all([np.isfinite(np.asarray(v, np.float64)) for v in values_sn], axis=0)
    return [None if ok.all() else int(np.asarray(steps_n)[np.argmin(ok)]) for ok in ok_sn]


def divergence_summary(steps_n, loss_sn, grad_norm_sn, seeds_s) -> dict:
    """How a group of seeds' training went, from its logged losses and gradient norms ``[S, N]``:
    where each seed first went non-finite (``diverged_at_step``, None if never, and in words),
    the largest gradient norm (inf once one overflowed), the median final loss and the steps
    every seed completed."""
    first_bad = first_nonfinite_step(steps_n, loss_sn, grad_norm_sn)
    diverged = ", ".join(f"seed {s} at step {b}" for s, b in zip(seeds_s, first_bad) if b)
    return {
        "diverged": f"non-finite loss or gradient: {diverged}" if diverged else None,
        "diverged_at_step": first_bad,
        "max_grad_norm": float(np.nanmax(grad_norm_sn)),
        "final_loss_median": float(np.median(np.asarray(loss_sn)[:, -1])),
        "steps_completed": min((b - 1 for b in first_bad if b), default=int(np.asarray(steps_n)[-1])),
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


def perturb_weights(params, scale: float, perturbation: int, seed):
    """Perturbation 0: ``params`` as drawn; k > 0: every weight times ``1 + scale * N(0, 1)``,
    a draw of its own from NumPy's generator seeded with ``seed`` (e.g. ``(base, k, seed)``):
    rounding-level when the scale is 1e-7, to tell a result from float32 rounding's amplification."""
    if perturbation == 0:
        return params
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda w: (w * (1 + scale * rng.standard_normal(w.shape))).astype(w.dtype), params)


def perturbation_ranges(summaries: list[dict]) -> dict:
    """What holds over the weights as drawn and every perturbation of them: for each seed the
    earliest and latest step it went non-finite (None if it never did in any), the range of the
    largest gradient norm and of the median final loss, and the fewest steps completed."""
    steps_ps = [s["diverged_at_step"] for s in summaries]
    per_seed = []
    for column in zip(*steps_ps):
        bad = [b for b in column if b]
        per_seed.append(
            None if not bad else {"first": min(bad), "last": max(bad), "diverged": len(bad), "of": len(column)}
        )
    span = lambda key: [float(f([s[key] for s in summaries])) for f in (np.min, np.max)]  # NaN (diverged) spreads
    return {
        "diverged_at_step": steps_ps,
        "per_seed": per_seed,
        "max_grad_norm": span("max_grad_norm"),
        "final_loss_median": span("final_loss_median"),
        "steps_completed_min": min(s["steps_completed"] for s in summaries),
    }
