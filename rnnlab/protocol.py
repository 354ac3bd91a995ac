r"""The fair comparison: one protocol for every (model, task) pair of a benchmark.

* **Budget** in sequences seen, the same for every model: ``steps = budget // batch_size``.
* **Size**: each model's hidden size H is the one whose parameter count (the whole task model:
  embedding or input weights, the recurrent layer, the readout) lies closest to a target, and
  within :math:`\pm 10\%` of it (``match_hidden``); no such H is a one-line error.
* **Learning rate**: a log-spaced grid per model, :math:`\eta_k = \eta_{min} r^k`.  If the best
  validation score sits at an edge of the grid, the grid grows one point past that edge
  (:math:`\eta_{min}/r` or :math:`\eta_{max} r`) and those runs train, up to ``lr_grow`` times
  (``bracket``); a best rate still at an edge is flagged.
* **Clipping** is a sweep axis: off and global norm 1 (``clip_by_global_norm``), unless fixed.
* **Seeds**: at least 3 at every setting; results are the median and quartiles over seeds.
* **Model selection**: validation every ``eval_every`` steps; for each run the step of its
  lowest validation loss is the selected checkpoint, and the setting (rate, clipping) is the
  one whose median over seeds of that lowest validation loss is lowest.  The test metric is
  reported at each seed's selected step *and* at the final step (the test set never chooses).
* **Time to threshold**: the first validation step at which the loss reaches the task's
  memoryless reference, :math:`L_{val} \le L_{mem} (1 + 0.02)` (``steps_to_reference``), and the
  first at which the metric reaches the task's "solved" value: "did not learn" and "learned
  slowly" are told apart.  :math:`L_{mem}` is the validation loss of the memoryless predictor
  fitted on training data (``Task.memoryless``), never on the validation set: fitted there it
  would sit below what any memoryless model scores on unseen data.  Where that predictor is a
  constant (of the built-in tasks, all but copy: a class or symbol prior, the mean target),
  reaching it means a model learned its outputs' marginal distribution, nothing about its inputs.
* **Compute**: each round of a pair (the grid, then each grown point) is one vmapped program
  over learning rate x clipping x seeds (``rnnlab.sweep``), with the run folder's checkpoints
  and ``--resume`` (``rnnlab.experiment.train_sweep``).  The evaluations are logged in
  ``metrics.jsonl``, so a finished round is read back, not retrained.

``leaderboard`` renders a results file as markdown tables (rows models, columns tasks);
``refresh_references`` recomputes a results file's memoryless references and steps to them
from its stored curves, without training.
``train_rates`` trains a script's own recipe at a few learning rates on fixed splits, the rate
picked on validation (``experiments/pixel_mnist.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import pathlib
import re
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import parallel
from rnnlab.experiment.models import ModelSpec
from rnnlab.experiment.rundir import read_metrics
from rnnlab.experiment.runner import train_sweep
from rnnlab.linen import constrain_recurrent
from rnnlab.metrics import curve_summary, over_seeds
from rnnlab.sweep import Sweep, dataset_sums, grid, init_params, named_keys, rows_where
from rnnlab.tasks import Task, in_order
from rnnlab.train import NonFiniteError, OptimConfig, make_optimizer
from rnnlab.validation import InputError

EVAL_CHUNK = 256  # held-out examples per evaluation program call
PARAM_TOLERANCE = 0.10
MAX_HIDDEN = 4096


def parse_count(text: str, what: str = "a count") -> int:
    """``"20k"`` -> 20000, ``"1.5M"`` -> 1500000, ``"640"`` -> 640; ``InputError`` otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", str(text))
    if not match:
        raise InputError(f"{what} is a number with an optional k or M suffix (20k, 1.5M), got {text!r}")
    value = float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[match.group(2).lower()]
    if value != int(value) or value < 1:
        raise InputError(f"{what} must be a whole number >= 1, got {text!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """The settings every pair of a comparison shares."""

    budget: int  # sequences seen per run
    batch_size: int
    params: int  # the parameter target
    seeds: int = 3
    lr_min: float = 1e-3
    lr_max: float = 1e-2
    lr_points: int = 3
    lr_grow: int = 2  # the most points the grid may grow by
    clip_norms: tuple[float, ...] = (0.0, 1.0)  # 0: off
    eval_every: int = 0  # 0: a tenth of the steps
    seed: int = 0  # the models' initial draws

    def __post_init__(self):
        if self.budget < self.batch_size:
            raise InputError(
                f"a budget of {self.budget} sequences is under one batch of {self.batch_size}: no step would train"
            )
        if self.seeds < 3:
            raise InputError(f"the protocol reports medians and quartiles over >= 3 seeds, got {self.seeds}")
        if not 0 < self.lr_min <= self.lr_max or self.lr_points < 1:
            raise InputError(
                "the learning-rate grid needs 0 < --lr-min <= --lr-max and --lr-points >= 1, got "
                f"--lr-min {self.lr_min:g} --lr-max {self.lr_max:g} --lr-points {self.lr_points}"
            )
        if self.lr_points == 1 and self.lr_min != self.lr_max:
            raise InputError(
                f"--lr-points 1 needs --lr-min equal to --lr-max (the one rate), got {self.lr_min:g} and {self.lr_max:g}"
            )
        if self.eval_every > self.steps:
            raise InputError(
                f"--eval-every {self.eval_every} is past the run's {self.steps} steps (--budget / --batch-size): "
                "no evaluation would select a step"
            )

    @property
    def steps(self) -> int:
        return self.budget // self.batch_size

    @property
    def every(self) -> int:
        return self.eval_every or max(1, self.steps // 10)

    def rates(self) -> list[float]:
        return [float(r) for r in np.geomspace(self.lr_min, self.lr_max, self.lr_points)]

    @property
    def ratio(self) -> float:
        """The grid's spacing, by which it grows (a one-point grid grows by sqrt(10))."""
        return (self.lr_max / self.lr_min) ** (1 / (self.lr_points - 1)) if self.lr_points > 1 else 10**0.5

    def as_dict(self) -> dict:
        return dataclasses.asdict(self) | {
            "steps": self.steps,
            "sequences_seen": self.steps * self.batch_size,
            "eval_every": self.every,
            "learning_rates": self.rates(),
            "lr_ratio": self.ratio,
            "param_tolerance": PARAM_TOLERANCE,
            "optimizer": "adam, constant learning rate",
            "selection": "validation loss: per run its best evaluated step; per model the setting whose median "
            "over seeds of that loss is lowest",
        }


# -- parameter matching ------------------------------------------------------------


def spec_of(name: str, hidden: int, cell_options=(), path=None) -> ModelSpec:
    return ModelSpec(name, hidden, tuple(sorted(dict(cell_options).items())), path)


def _layer(task: Task, spec: ModelSpec):
    return spec.layer(t_max=task.sequence_length)


@functools.cache
def count_params(task: Task, spec: ModelSpec, check_apply: bool = False) -> int:
    """The parameter count of ``task``'s model around ``spec``'s layer (shapes only, nothing
    allocated); ``InputError`` naming both when the model cannot be built for the task's inputs
    or, with ``check_apply``, cannot run on them."""
    try:
        model = task.model(_layer(task, spec))
        x = task.dummy_input()
        shapes = jax.eval_shape(lambda key: task.init(model, key, x), jax.random.key(0))
        if check_apply:
            jax.eval_shape(lambda p: task.apply(model, p, x), shapes)
    except InputError:
        raise
    except Exception as e:  # a registered cell's refusal, whatever it raises
        reason = " ".join(str(e).split()) or type(e).__name__
        raise InputError(f"model {spec.name} cannot run task {task.spec}: {reason}") from None
    return int(sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes)))


def match_hidden(
    count: Callable[[int], int], target: int, *, tolerance: float = PARAM_TOLERANCE, max_hidden: int = MAX_HIDDEN
) -> tuple[int, int]:
    """``(H, count(H))``: the hidden size whose parameter count ``count(H)`` (increasing in H)
    is closest to ``target``; ``InputError`` if it is not within ``tolerance`` of it."""
    if count(1) >= target:
        hidden = 1
    elif count(max_hidden) < target:
        hidden = max_hidden
    else:  # the smallest H with count(H) >= target, then the closer of it and H - 1
        hi = _first_reaching(count, target, max_hidden)
        hidden = hi if abs(count(hi) - target) <= abs(count(hi - 1) - target) else hi - 1
    got = count(hidden)
    if abs(got - target) > tolerance * target:
        raise InputError(
            f"no hidden size gives {target} parameters within ±{tolerance:.0%}: the closest, H={hidden}, has {got}"
        )
    return hidden, got


def _first_reaching(count: Callable[[int], int], target: int, max_hidden: int) -> int:
    """The smallest H in 2..max_hidden with ``count(H) >= target`` (given ``count(1) < target <=
    count(max_hidden)``): a walk from where the quadratic through H = 1, 2, 3 reaches the target
    (every model's count is one, or near one), in steps that double until they overshoot."""
    c1, c2, c3 = count(1), count(2), count(3)
    a = (c3 - 2 * c2 + c1) / 2
    b = c2 - c1 - 3 * a
    roots = np.roots([a, b, c1 - a - b - target]) if a else np.array([(target - c1) / b + 1 if b else 2])
    guesses = [r.real for r in np.atleast_1d(roots) if abs(r.imag) < 1e-9 and r.real >= 1]
    h = int(np.clip(round(max(guesses, default=2)), 2, max_hidden))
    lo, hi = (h, None) if count(h) < target else (1, h)
    step = 1
    while hi is None:  # count(lo) < target: step up until the count reaches it
        nxt = min(lo + step, max_hidden)
        lo, hi = (nxt, None) if count(nxt) < target else (lo, nxt)
        step *= 2
    while hi - lo > 1:  # count(lo) < target <= count(hi)
        mid = max(lo + 1, hi - 1) if hi - lo < 4 and count(hi - 1) >= target else (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return hi


# -- the learning-rate grid ---------------------------------------------------------


def _score(value: float, higher_is_better: bool = False) -> float:
    """Lower is better; a diverged run (NaN) is the worst."""
    if value is None or not np.isfinite(value):
        return math.inf
    return -value if higher_is_better else value


def bracket(score_rates: Callable[[list[float]], list[float]], rates: Sequence[float], max_grow: int, ratio: float):
    """Grow a learning-rate grid until its best rate is inside it.

    ``score_rates(rates) -> scores`` (lower is better; NaN is a diverged run) is called once for
    the grid, then once per grown point: when the best rate is the lowest (highest) of the grid,
    ``lowest / ratio`` (``highest * ratio``) joins it, up to ``max_grow`` points.  Returns
    ``{"rates", "scores", "best", "edge", "grown"}``; ``edge`` is ``"low"``/``"high"`` when the best
    rate still sits at that edge of the grid (``None`` when it is bracketed), and ``"one"`` for a grid of
    one rate that trained: it brackets nothing and is never grown (no direction to grow in)."""
    scores = dict(zip(rates, score_rates(list(rates))))
    grown = 0
    while True:
        ordered = sorted(scores)
        best = min(ordered, key=lambda r: _score(scores[r]))
        edge = "low" if best == ordered[0] else "high" if best == ordered[-1] else None
        if all(_score(scores[r]) == math.inf for r in ordered):
            edge = "low"  # every rate diverged: look lower
        elif len(ordered) == 1:
            edge = "one"
            break
        if edge is None or grown >= max_grow:
            break
        new = ordered[0] / ratio if edge == "low" else ordered[-1] * ratio
        scores[new] = score_rates([new])[0]
        grown += 1
    ordered = sorted(scores)
    return {
        "rates": ordered,
        "scores": [scores[r] for r in ordered],
        "best": best,
        "edge": edge,
        "grown": grown,
    }


# -- selection and thresholds --------------------------------------------------------


def selected_steps(valid_loss_sn) -> np.ndarray:
    """Each run's selected evaluation (index): its lowest validation loss; the last if all diverged."""
    v = np.where(np.isfinite(valid_loss_sn), valid_loss_sn, np.inf)
    best = np.argmin(v, axis=1)
    return np.where(np.isfinite(np.min(v, axis=1)), best, v.shape[1] - 1)


def at_selected(values_sn, valid_loss_sn) -> np.ndarray:
    """``values_sn`` at each run's selected evaluation: ``[S]``."""
    values_sn = np.asarray(values_sn)
    return values_sn[np.arange(len(values_sn)), selected_steps(valid_loss_sn)]


def first_step(steps_n, values_sn, reached: Callable[[np.ndarray], np.ndarray]) -> list:
    """Per run, the first step whose value ``reached``, or None."""
    hit_sn = reached(np.asarray(values_sn, np.float64))
    return [int(steps_n[np.argmax(h)]) if h.any() else None for h in hit_sn]


def steps_to_reference(steps_n, valid_loss_sn, reference: float, tolerance: float) -> list:
    r"""Per run, the first evaluation step at which the validation loss reaches the memoryless
    reference, :math:`L_{val} \le L_{mem} (1 + tolerance)`, or None."""
    threshold = reference * (1 + tolerance)
    return first_step(steps_n, valid_loss_sn, lambda v: v <= threshold)


def median_step(steps: list) -> float | None:
    """The median over seeds of steps to a threshold, a run that never reached it counting as
    infinitely slow; None when the median run never reached it."""
    value = float(np.median([math.inf if s is None else s for s in steps]))
    return value if math.isfinite(value) else None


def choose_on_validation(values: Sequence, column_s, valid_s, test_s: dict, name: str = "learning_rate"):
    """One sweep axis chosen on a validation set: ``(chosen, rows)``.  ``rows`` has one entry per
    value of ``values``, ``{name: value, "validation_loss": ..., **{k: ...}}``, each ``over_seeds``
    of the points whose ``column_s`` is that value (``valid_s [S]``, ``test_s[k] [S]``);
    ``chosen`` is the entry whose median validation loss is lowest.  A value whose every seed
    diverged (median NaN) is never chosen, unless every value's did: then the first."""
    column_s = np.asarray(column_s)
    rows = [
        {name: v, "validation_loss": over_seeds(valid_s[column_s == v])}
        | {k: over_seeds(t_s[column_s == v]) for k, t_s in test_s.items()}
        for v in values
    ]
    medians = [r["validation_loss"]["median"] for r in rows]
    return rows[int(np.argmin([np.inf if np.isnan(m) else m for m in medians]))], rows


# -- one round: a grid of points, one program -----------------------------------------


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def read_json(path) -> dict:
    return json.loads(pathlib.Path(path).read_text())


def totals(results: dict) -> dict:
    """The rounds' training time and compiled programs, summed over every pair (a round read
    back from an earlier session of a resumed run counts where that session recorded it)."""
    rounds = [r for pairs in results["pairs"].values() for p in pairs.values() for r in p["rounds"]]
    known = [r for r in rounds if r["wall_s"] is not None]
    return {
        "rounds": len(rounds),
        "train_wall_s": sum(r["wall_s"] for r in known),
        "programs": sum(r["programs"] for r in known),
        "rounds_not_timed": len(rounds) - len(known),
    }


def evaluations(metrics_path, name: str) -> tuple[list[int], dict[str, np.ndarray]]:
    """The held-out evaluations of round ``name`` read from the run's ``metrics.jsonl``:
    ``(steps [N], {"validation_loss": [S, N], "test_accuracy": [S, N], ...})``."""
    records = [r for r in read_metrics(metrics_path) if r.get("model") == name and "validation_loss" in r]
    keys = [k[: -len("_per_point")] for k in records[0] if k.endswith("_per_point")] if records else []
    keys = [k for k in keys if k.startswith(("validation_", "test_"))]
    return [r["step"] for r in records], {
        k: np.array([r[f"{k}_per_point"] for r in records], np.float64).T for k in keys
    }


def metric_sums(task: Task, model) -> Callable:
    """``sums(params, batch, weight_c) -> {name: sum_c weight_c * per_example[name]_c}``: the task's
    metrics of ``model`` added up over a batch, what ``rnnlab.sweep.dataset_sums`` totals over a set
    (weight 0: a padding example).  Make it once per model: a sweep compiles it once."""

    def sums(params, batch, weight_c):
        per_example = task.per_example(task.apply(model, params, batch["x"]), batch)
        return {k: jnp.sum(v * weight_c) for k, v in per_example.items()}

    return sums


def make_evaluator(sweep: Sweep, task: Task, model) -> Callable:
    """``evaluate(state) -> {"validation_<metric>": [S], "test_<metric>": [S]}``: every point's
    metrics on the whole validation and test sets, ``EVAL_CHUNK`` examples per call of one program."""
    sums = metric_sums(task, model)
    sets = {split: task.held_out(split) for split in ("validation", "test")}
    chunk = min(EVAL_CHUNK, *(len(s["y"]) for s in sets.values()))

    def evaluate(state) -> dict:
        out = {}
        for split, data in sets.items():
            total = dataset_sums(sweep, sums, state.params, data, chunk)
            out |= {f"{split}_{k}": v / len(data["y"]) for k, v in total.items()}
        return out

    return evaluate


@functools.cache
def _initializer(task: Task, spec: ModelSpec):
    model = task.model(_layer(task, spec))
    x = task.dummy_input()
    return model, jax.jit(lambda key: task.init(model, key, x))


def train_round(run, cfg, protocol: Protocol, task: Task, spec: ModelSpec, name: str, points: list[dict]):
    """Train ``points`` (learning rate x clip norm x seed) of one (model, task) as one program,
    unless the run folder already holds the round's last evaluation (a resumed run)."""
    steps_n, _ = evaluations(run.metrics_path, name)
    if cfg.resume and steps_n and steps_n[-1] == protocol.steps:
        return {"wall_s": None, "programs": None}
    sweep = Sweep(points)
    model, init = _initializer(task, spec)
    seed_s = sweep.column("seed")
    keys = named_keys(protocol.seed, f"{spec.name}/{task.spec}", protocol.seeds)[seed_s]

    started = time.perf_counter()
    with parallel.CompileStats() as stats:
        try:
            _train(run, cfg, protocol, task, model, init, name, sweep, keys, seed_s)
        except NonFiniteError:  # every point diverged (a grown rate too high): NaN evaluations
            log_diverged(run, protocol, task, model, name, len(points))
    return {"wall_s": time.perf_counter() - started, "programs": stats.programs}


def log_diverged(run, protocol: Protocol, task: Task, model, name: str, size: int) -> None:
    """The evaluations of a round whose every point diverged: NaN at every evaluation step."""
    one = {k: v[:1] for k, v in task.held_out("validation").items()}
    shapes = jax.eval_shape(lambda key: task.init(model, key, task.dummy_input()), jax.random.key(0))
    out = jax.eval_shape(lambda p: task.apply(model, p, one["x"]), shapes)
    keys = list(task.per_example(jnp.zeros(out.shape, out.dtype), one))
    log, logged = run.logger(name), evaluations(run.metrics_path, name)[0]
    nan = {f"{s}_{k}": math.nan for s in ("validation", "test") for k in keys}
    nan |= {f"{k}_per_point": [math.nan] * size for k in list(nan)}
    for step in [*range(protocol.every, protocol.steps, protocol.every), protocol.steps]:
        if step > max(logged, default=0):  # the evaluations before every point diverged stay
            log({"step": step, "diverged": True} | nan)


def batch_loss(task: Task, model) -> Callable:
    """``loss_fn(params, batch, key) -> (loss, {metric: value})``: the means over a training batch of
    the task's ``per_example`` loss and metrics of ``model`` (``train_sweep``'s ``loss_fn``)."""

    def loss_fn(params, batch, key):
        means = {k: jnp.mean(v) for k, v in task.per_example(task.apply(model, params, batch["x"]), batch).items()}
        return means.pop("loss"), means

    return loss_fn


def _train(run, cfg, protocol, task, model, init, name, sweep, keys, seed_s):
    def batch_fn(step):  # every setting of a seed trains on that seed's stream: paired comparisons
        per_seed = [task.train_batch(s, step, protocol.batch_size) for s in range(protocol.seeds)]
        return {k: np.stack([b[k] for b in per_seed])[seed_s] for k in per_seed[0]}

    train_sweep(
        run,
        name,
        cfg,
        sweep,
        init_fn=lambda key, point: init(key),
        loss_fn=batch_loss(task, model),
        optimizer=make_optimizer(OptimConfig("adam", protocol.lr_min), protocol.steps),
        hyperparameters=("learning_rate", "clip_norm"),
        batch_fn=batch_fn,
        init_keys=keys,
        num_steps=protocol.steps,
        log_every=protocol.every,
        tolerate_diverged=True,
        constrain=functools.partial(constrain_recurrent, model.layer),
        evaluate=make_evaluator(sweep, task, model),
        evaluate_every=protocol.every,
    )


# -- one pair ----------------------------------------------------------------------


def run_pair(run, cfg, protocol: Protocol, task: Task, spec: ModelSpec) -> dict:
    """Train and select one (model, task) pair under ``protocol``: the grid, grown past an edge
    where the best rate sits, up to ``lr_grow`` points (``bracket``); the chosen setting's test
    metric at the selected and final steps."""
    metric = task.metric
    rounds = []

    def score_rates(rates: list[float]) -> list[float]:
        points = grid(learning_rate=rates, clip_norm=protocol.clip_norms, seed=range(protocol.seeds))
        name = f"{slug(task.spec)}/{spec.name}/r{len(rounds)}"
        cost = train_round(run, cfg, protocol, task, spec, name, points)
        steps_n, curves = evaluations(run.metrics_path, name)
        rounds.append({"name": name, "points": points, "steps": steps_n, "curves": curves, **cost})
        best_s = best_valid(curves["validation_loss"])
        medians = {
            (lr, c): _median(best_s[rows_where(points, learning_rate=lr, clip_norm=c)])
            for lr in rates
            for c in protocol.clip_norms
        }
        return [min((medians[lr, c] for c in protocol.clip_norms), key=_score) for lr in rates]

    found = bracket(score_rates, protocol.rates(), protocol.lr_grow, protocol.ratio)
    settings = []
    for r in rounds:
        for lr in dict.fromkeys(p["learning_rate"] for p in r["points"]):
            for c in protocol.clip_norms:
                rows = rows_where(r["points"], learning_rate=lr, clip_norm=c)
                settings.append(_setting(task, r, rows, lr, c))
    chosen = min(settings, key=lambda s: _score(s["score"]))
    r = next(r for r in rounds if chosen["learning_rate"] in [p["learning_rate"] for p in r["points"]])
    rows = rows_where(r["points"], learning_rate=chosen["learning_rate"], clip_norm=chosen["clip_norm"])
    steps_n, curves = r["steps"], {k: v[rows] for k, v in r["curves"].items()}
    reference = task.memoryless("validation")["loss"]
    solved = task.solved
    return {
        "hidden": spec.hidden,
        "parameters": count_params(task, spec),
        "cell_options": dict(spec.cell_options),
        "learning_rates": found["rates"],
        "lr_grown": found["grown"],
        "lr_edge": found["edge"],
        "learning_rate": chosen["learning_rate"],
        "clip_norm": chosen["clip_norm"],
        "settings": settings,
        "selected_step": [int(steps_n[i]) for i in selected_steps(curves["validation_loss"])],
        "test_selected": over_seeds(at_selected(curves[f"test_{metric}"], curves["validation_loss"])),
        "test_final": over_seeds(curves[f"test_{metric}"][:, -1]),
        "test_loss_selected": over_seeds(at_selected(curves["test_loss"], curves["validation_loss"])),
        "steps_to_memoryless": steps_to_reference(
            steps_n, curves["validation_loss"], reference, task.reference_tolerance
        ),
        "steps_to_solved": first_step(steps_n, curves[f"validation_{metric}"], lambda v: task.reached(v, solved)),
        "curve": {
            "steps": list(steps_n),
            f"validation_{metric}": curves[f"validation_{metric}"].tolist(),
            f"test_{metric}": curves[f"test_{metric}"].tolist(),
            "validation_loss": curves["validation_loss"].tolist(),
        },
        "rounds": [{"name": r["name"], "wall_s": r["wall_s"], "programs": r["programs"]} for r in rounds],
    }


def _median(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.median(np.where(np.isfinite(values), values, np.inf))) if len(values) else math.inf


def best_valid(valid_sn) -> np.ndarray:
    """Each run's lowest validation loss: ``[S]``, NaN for a run with no finite evaluation."""
    v = np.where(np.isfinite(valid_sn), valid_sn, np.inf)
    best = np.min(v, axis=1)
    return np.where(np.isfinite(best), best, np.nan)


def _setting(task: Task, r: dict, rows: list[int], lr: float, clip: float) -> dict:
    """One (learning rate, clip) of a round: its selection score (the median over seeds of each
    seed's lowest validation loss, a diverged seed the worst), the loss and the test metric."""
    valid_sn = r["curves"]["validation_loss"][rows]
    best_s = best_valid(valid_sn)
    score = _median(best_s)
    return {
        "learning_rate": lr,
        "clip_norm": clip,
        "score": score if math.isfinite(score) else None,
        "validation_loss": over_seeds(best_s, per_seed=False),
        "test_selected": over_seeds(at_selected(r["curves"][f"test_{task.metric}"][rows], valid_sn), per_seed=False),
    }


# -- a recipe at a few rates, on fixed splits ---------------------------------------------


@functools.cache
def _init_program(model, shape: tuple[int, ...]):
    return jax.jit(lambda key: model.init(key, jnp.zeros(shape, jnp.float32)))  # one compile per model


def train_rates(run, cfg, name: str, task: Task, model, splits: dict, rates, optimizer, *, steps, batch_size, chunk):
    """Train ``model`` (features in) at every learning rate of ``rates`` x seed (``cfg.seeds``) as one
    program on ``splits["train"]`` walked in its order (``rnnlab.tasks.in_order``: every point reads
    the same batches; a seed is an initial draw, ``named_keys(cfg.seed, name)``), the task's
    ``metric`` on the whole test split every ``cfg.eval_every`` steps (0: never), and keep the rate
    whose median over seeds of the final metric on ``splits["valid"]`` is best (one rate: no pick).

    Returns ``learning_rate`` (kept), ``rows`` (its seeds' points), ``test`` (their final test metric),
    ``learning_rate_sweep`` (each rate's test and validation metric, ``over_seeds``), ``test_curve``
    (``metrics.curve_summary`` of the kept rate's seeds, or None), ``parameters`` and ``wall_s``
    (the training's).  ``chunk``: held-out examples per call of the metric's program."""
    metric, eval_every = task.metric, cfg.eval_every
    sweep = Sweep(grid(learning_rate=rates, seed=range(cfg.seeds)))
    keys = named_keys(cfg.seed, name, cfg.seeds)[sweep.column("seed")]
    init = _init_program(model, (1, *splits["train"]["x"].shape[1:]))
    params0 = init_params(sweep, lambda key, p: init(key), keys)
    sums = metric_sums(task, model)

    def measure(params, split: str) -> np.ndarray:  # each point's metric on the whole split (params: global rows)
        total = dataset_sums(sweep, sums, params, splits[split], chunk)[metric]
        return np.asarray(total, np.float64) / len(splits[split]["y"])

    started = time.perf_counter()
    state = train_sweep(
        run,
        name,
        cfg,
        sweep,
        params=params0,
        loss_fn=batch_loss(task, model),
        optimizer=optimizer,
        hyperparameters=("learning_rate",),
        num_steps=steps,
        batch_fn=lambda step: sweep.broadcast(in_order(splits["train"], step, batch_size)),
        init_keys=keys,
        tolerate_diverged=True,
        constrain=functools.partial(constrain_recurrent, model.layer),
        evaluate=(lambda state: {f"test_{metric}": measure(state.params, "test")}) if eval_every else None,
        evaluate_every=eval_every,
    )
    wall_s = time.perf_counter() - started
    params, lr_s = sweep.put(state.params), sweep.column("learning_rate")
    test_s = measure(params, "test")
    by_rate = [{"learning_rate": lr, f"test_{metric}": over_seeds(test_s[lr_s == lr])} for lr in rates]
    chosen = rates[0]
    if len(rates) > 1:
        valid_s = measure(params, "valid")
        for row in by_rate:
            row[f"validation_{metric}"] = over_seeds(valid_s[lr_s == row["learning_rate"]])
        score = lambda row: _score(row[f"validation_{metric}"]["median"], task.higher_is_better)
        chosen = min(by_rate, key=score)["learning_rate"]  # the first best; a rate whose every seed diverged, never
    kept = np.flatnonzero(lr_s == chosen).tolist()  # its seeds' points
    return {
        "learning_rate": chosen,
        "rows": kept,
        "test": test_s[kept],
        "learning_rate_sweep": by_rate,
        "test_curve": curve_summary(*run.curve(name, f"test_{metric}", kept)) if eval_every else None,
        "parameters": int(sum(leaf[0].size for leaf in jax.tree.leaves(params0))),
        "wall_s": wall_s,
    }


def task_summary(task: Task) -> dict:
    return {
        "title": task.title,
        "metric": task.metric,
        "metric_label": task.metric_label,
        "higher_is_better": task.higher_is_better,
        "solved": task.solved,
        "readout": task.readout,
        "sequence_length": task.sequence_length,
        "memoryless": {split: task.memoryless(split) for split in ("validation", "test")},
        "reference_fit": task.reference_fit,
        "reference_tolerance": task.reference_tolerance,
    }


REFERENCE_RULE = (
    "steps to the memoryless reference: the first evaluation whose validation loss <= the memoryless "
    "validation loss x (1 + reference_tolerance); the memoryless predictor fitted on training data "
    "(reference_fit), scored on the validation and test sets"
)


def refresh_references(results: dict) -> dict:
    """``results`` with every task's memoryless reference recomputed as ``rnnlab.tasks`` fits it
    now (``memoryless``, ``reference_fit``, ``reference_tolerance``) and every pair's
    ``steps_to_memoryless`` recomputed from its stored validation curve (``steps_to_reference``):
    nothing trains.  ``references_refreshed`` records the rule and, from the first refresh, the
    values it replaced."""
    from rnnlab import tasks  # the task classes, by spec

    out = copy.deepcopy(results)
    before = results.get("references_refreshed", {}).get("before") or {
        spec: {
            "memoryless": info["memoryless"],
            "reference_tolerance": info.get("reference_tolerance"),
            "steps_to_memoryless": {m: p["steps_to_memoryless"] for m, p in results["pairs"][spec].items()},
        }
        for spec, info in results["tasks"].items()
    }
    for spec, info in out["tasks"].items():
        task = tasks.parse(spec)
        summary = task_summary(task)
        for key in ("memoryless", "reference_fit", "reference_tolerance"):
            info[key] = summary[key]
        for pair in out["pairs"][spec].values():
            curve = pair["curve"]
            valid_sn = np.array(curve["validation_loss"], np.float64)
            pair["steps_to_memoryless"] = steps_to_reference(
                curve["steps"], valid_sn, info["memoryless"]["validation"]["loss"], task.reference_tolerance
            )
    out["references_refreshed"] = {
        "rule": REFERENCE_RULE,
        "how": "python docs/results/publish.py --refresh-references <file>: references recomputed by "
        "rnnlab.protocol.refresh_references, steps from the stored curves, no retraining",
        "before": before,
    }
    return out


# -- the leaderboard ----------------------------------------------------------------


def _fmt(value, metric: str) -> str:
    if value is None or not np.isfinite(value):
        return "nan"
    return f"{value:.3f}" if metric == "accuracy" else f"{value:.3g}"


def _steps(value) -> str:
    return "—" if value is None else f"{value:.0f}"


def leaderboard(results: dict, which: str = "selected") -> str:
    """The markdown table of a results file: rows models, columns tasks; each cell the median test
    metric over seeds with its quartiles ``[q25, q75]``, at the validation-selected step
    (``which="selected"``) or the final step (``"final"``).  Bold: the median reaches the task's
    "solved" value.  Flags: ``lr↓``/``lr↑`` the chosen rate at the low/high edge of its grown grid,
    ``lr=`` a grid of one rate (not tuned), ``k div`` seeds that diverged."""
    tasks, models = list(results["pairs"]), list(results["models"])
    step_words = "the validation-selected step" if which == "selected" else "the final step"
    seeds = results["protocol"]["seeds"]
    lines = [
        f"Test metric at {step_words}: median [q25, q75] over {seeds} seeds{_quartile_note(seeds)}.",
        "",
        "| model | "
        + " | ".join(f"{t} ({results['tasks'][t]['metric_label']}, {_arrow(results['tasks'][t])})" for t in tasks)
        + " |",
        "|---|" + "---|" * len(tasks),
        "| memoryless reference (test; fitted on training data) | "
        + " | ".join(
            _fmt(
                results["tasks"][t]["memoryless"]["test"][results["tasks"][t]["metric"]], results["tasks"][t]["metric"]
            )
            for t in tasks
        )
        + " |",
    ]
    for m in models:
        cells = []
        for t in tasks:
            pair, info = results["pairs"][t].get(m), results["tasks"][t]
            if pair is None:
                cells.append("not run")
                continue
            s, metric = pair[f"test_{which}"], info["metric"]
            text = f"{_fmt(s['median'], metric)} [{_fmt(s['q25'], metric)}, {_fmt(s['q75'], metric)}]"
            if s["median"] is not None and np.isfinite(s["median"]) and _reaches(info, s["median"]):
                text = f"**{text}**"
            flags = {"low": "lr↓", "high": "lr↑", "one": "lr="}.get(pair["lr_edge"], "")
            flags += f" {s['diverged']} div" if s["diverged"] else ""
            cells.append(text + (f" {flags.strip()}" if flags.strip() else ""))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _quartile_note(seeds: int) -> str:
    """With 3 seeds the quartiles are no seed's value: say what they are."""
    if seeds != 3:
        return ""
    return " (with 3 seeds, q25 and q75 are the midpoints between the lowest and the middle seed and between the middle and the highest)"


def _arrow(info: dict) -> str:
    return "higher is better" if info["higher_is_better"] else "lower is better"


def _reaches(info: dict, value: float) -> bool:
    return value >= info["solved"] if info["higher_is_better"] else value <= info["solved"]


def details(results: dict) -> str:
    """Per pair: steps to the memoryless reference and to "solved" (median over seeds, — never),
    the hidden size, the parameter count and the chosen learning rate and clipping."""
    tasks, models = list(results["pairs"]), list(results["models"])
    tolerance = {info.get("reference_tolerance") for info in results["tasks"].values()}
    within = (
        f"within {tolerance.pop():.0%} of it" if len(tolerance) == 1 and None not in tolerance else "within tolerance"
    )
    lines = [
        f"Steps to the memoryless reference (the validation loss {within}; the memoryless predictor fitted on "
        "training data) / to solved (median over seeds; — the median seed never got there), "
        "then H, parameters, the chosen learning rate and clip norm (0: off).",
        "",
        "| model | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for m in models:
        cells = []
        for t in tasks:
            p = results["pairs"][t].get(m)
            if p is None:
                cells.append("not run")
                continue
            cells.append(
                f"{_steps(median_step(p['steps_to_memoryless']))} / {_steps(median_step(p['steps_to_solved']))}; "
                f"H={p['hidden']}, {p['parameters']}, lr {p['learning_rate']:.2g}, clip {p['clip_norm']:g}"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(results: dict) -> str:
    """The leaderboard document: the selected-step table, the final-step table and the details."""
    p = results["protocol"]
    head = (
        f"Budget {p['sequences_seen']} sequences per run ({p['steps']} steps of {p['batch_size']}), "
        f"{p['params']} parameters ±{p['param_tolerance']:.0%}, Adam over learning rates "
        f"{', '.join(f'{r:.2g}' for r in p['learning_rates'])} (grown by up to {p['lr_grow']}), clip norms "
        f"{', '.join(f'{c:g}' for c in p['clip_norms'])} (0: off), {p['seeds']} seeds, validation every {p['eval_every']} steps.\n"
    )
    parts = [head, leaderboard(results, "selected"), leaderboard(results, "final"), details(results)]
    if "totals" in results:
        t = results["totals"]
        parts.append(
            f"Compute: {t['rounds']} rounds ({t['programs']} programs compiled, "
            f"{t['train_wall_s'] / 60:.1f} minutes)"
            + (f"; {t['rounds_not_timed']} rounds not timed" if t["rounds_not_timed"] else "")
            + ".\n"
        )
    return "\n".join(parts)


def curves_figure(results: dict, task: str):
    """The validation metric of every model on ``task`` at its chosen setting: median and
    quartiles over seeds, with the memoryless reference (fitted on training data)."""
    import matplotlib.pyplot as plt

    from rnnlab.plots import band, model_color

    info = results["tasks"][task]
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for m, pair in results["pairs"][task].items():
        curve = pair["curve"]
        label = f"{m} (H={pair['hidden']}, lr {pair['learning_rate']:.2g}, clip {pair['clip_norm']:g})"
        band(ax, curve["steps"], np.array(curve[f"validation_{info['metric']}"], np.float64), label, model_color(m))
    reference = info["memoryless"]["validation"][info["metric"]]
    ax.axhline(reference, color="k", ls="--", lw=1, label=f"memoryless (fitted on training data) = {reference:.3g}")
    ax.axhline(info["solved"], color="k", ls=":", lw=1, label=f"solved = {info['solved']:g}")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {info['metric_label'].replace('test ', '')}")
    if not info["higher_is_better"]:
        ax.set_yscale("log")
    ax.set_title(f"{task}: median and quartiles over {results['protocol']['seeds']} seeds")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig
