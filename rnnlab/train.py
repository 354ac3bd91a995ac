"""Training: Optax optimizers and clipping, a pure train step, and the loop.

    optimizer = make_optimizer(OptimConfig(name="adam", learning_rate=1e-3, clip_norm=1.0), total_steps)
    state = init_state(optimizer, params, key)
    step = jax.jit(make_train_step(loss_fn, optimizer))     # or jax.jit(jax.vmap(...)) over seeds
    state = fit(step, state, batch_fn, num_steps=3000, checkpointer=ckpt)

``loss_fn(params, batch, key) -> (loss, aux)`` with ``aux`` a dict of scalars.
The step logs the gradient's global norm *before* clipping (clipping hides
explosions) and after, whether clipping fired, the norm of every parameter
group's gradient and the learning rate.  The step's RNG key is
``fold_in(state.key, state.step)``, so a resumed run draws the same keys.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "exponential")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    name: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_rate: float = 0.1  # exponential: lr * decay_rate ** (step / total_steps)
    momentum: float = 0.9
    rmsprop_decay: float = 0.9  # RMSprop's average of g^2: v = decay v + (1 - decay) g^2 (torch's alpha)
    clip_norm: float = 1.0  # clip_by_global_norm; 0 turns it off
    clip_value: float = 0.0  # clip_by_value at ±clip_value; 0 turns it off
    # (leaf name, learning rate): parameter groups, e.g. (("a_hh", 1e-4),) trains expRNN's
    # orthogonal generators at their own rate (see ``group_scales``)
    group_learning_rates: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.clip_norm < 0 or self.clip_value < 0:
            raise ValueError("clip_norm and clip_value must be >= 0 (0 turns clipping off)")
        if not 0 <= self.rmsprop_decay < 1:
            raise ValueError(f"rmsprop_decay must be in [0, 1), got {self.rmsprop_decay}")
        for name, lr in self.group_learning_rates:
            if not lr > 0:
                raise ValueError(f"the learning rate of parameter group {name!r} must be > 0, got {lr}")


class Optimizer(NamedTuple):
    """Clipping and the update rule as two Optax transformations, so the step can
    measure the gradient between them.

    Their numeric hyperparameters live in the optimizer *state*
    (``optax.inject_hyperparams``), not in the code: ``learning_rate``,
    ``clip_norm``, ``clip_value`` and ``momentum`` are arrays that a sweep sets
    per point (``init_state(..., learning_rate=lr)``) and vmaps over, with one
    compiled program for every value.  A clip that is "off" is a bound of +inf.
    """

    clip: optax.GradientTransformation
    update: optax.GradientTransformation
    shape: optax.Schedule  # the learning rate's multiplier at each step (1 for "constant")


# a sweepable optimizer hyperparameter -> its name inside the Optax state
STATE_NAMES = {
    "learning_rate": "learning_rate",
    "momentum": "momentum",
    "clip_norm": "max_norm",
    "clip_value": "max_value",
}


def make_schedule_shape(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """The schedule over its peak: the learning rate at step k is ``learning_rate * shape(k)``."""
    total = max(total_steps, 1)
    if cfg.schedule == "constant":
        return optax.constant_schedule(1.0)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(1.0, total)
    if cfg.schedule == "warmup_cosine":
        warmup = min(cfg.warmup_steps, total - 1)
        return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, total)
    return optax.exponential_decay(1.0, total, cfg.decay_rate)


def _clip(max_norm, max_value):
    """``clip_by_value`` at ±max_value, then ``clip_by_global_norm``; a bound of inf changes nothing."""
    return optax.chain(optax.clip(max_value), optax.clip_by_global_norm(max_norm))


def clip_bound(value):
    """The bound a clip holds in its state: 0 (off) becomes +inf.  A Python number stays
    one (``make_optimizer``); an array, traced in a sweep, stays an array."""
    if isinstance(value, (int, float)):
        return value if value else float("inf")
    return jnp.where(value > 0, value, jnp.inf)


def group_scales(cfg: OptimConfig) -> optax.GradientTransformation:
    r"""Parameter groups as scales on the final update: a leaf named ``name`` (a dict key
    anywhere in the params) with group learning rate ``lr_g`` has its update multiplied by
    ``lr_g / learning_rate``.

    Every rule here (SGD, momentum, Adam, RMSprop) is per coordinate and applies its
    learning rate last, so this is exactly the rule run at ``lr_g`` on that group, as
    two torch optimizers over two parameter lists are (tested against torch's
    RMSprop).  One learning rate stays in the state, so a sweep over
    ``learning_rate`` keeps every group's ratio to it."""
    ratios = {name: lr / cfg.learning_rate for name, lr in cfg.group_learning_rates}

    def label(path, _):
        names = [k.key for k in path if isinstance(k, jax.tree_util.DictKey)]
        return next((n for n in reversed(names) if n in ratios), "rest")

    transforms = {name: optax.scale(ratio) for name, ratio in ratios.items()} | {"rest": optax.identity()}
    return optax.partition(transforms, lambda params: jax.tree_util.tree_map_with_path(label, params))


def make_optimizer(cfg: OptimConfig, total_steps: int) -> Optimizer:
    """Clipping, then the update rule.  RMSprop is torch's (``torch.optim.RMSprop``: eps outside
    the square root, ``v_0 = 0``), the one the expRNN authors ran, with ``rmsprop_decay`` its alpha."""
    lr = cfg.learning_rate
    update = {
        "sgd": lambda: optax.inject_hyperparams(optax.sgd)(learning_rate=lr),
        "momentum": lambda: optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=cfg.momentum),
        "adam": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=lr),
        "rmsprop": lambda: optax.inject_hyperparams(optax.rmsprop, static_args=("eps_in_sqrt",))(
            learning_rate=lr, decay=cfg.rmsprop_decay, eps_in_sqrt=False
        ),
    }[cfg.name]()
    shape = make_schedule_shape(cfg, total_steps)
    if cfg.schedule != "constant":  # every rule applies its learning rate last, so the shape can follow it
        update = optax.chain(update, optax.scale_by_schedule(shape))
    if cfg.group_learning_rates:
        update = optax.chain(update, group_scales(cfg))
    clip = optax.inject_hyperparams(_clip)(max_norm=clip_bound(cfg.clip_norm), max_value=clip_bound(cfg.clip_value))
    return Optimizer(clip, update, shape)


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: updates applied so far
    params: Any
    clip_state: Any
    opt_state: Any
    key: jax.Array  # raw key data (uint32), checkpoint-friendly


def init_state(optimizer: Optimizer, params, key, **hyperparameters) -> TrainState:
    """The state before step 0.  ``hyperparameters`` (``learning_rate``, ``clip_norm``,
    ``clip_value``, ``momentum``) override the optimizer's values; they may be
    traced, so ``jax.vmap(init_state)`` gives every sweep point its own."""
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        clip_state=optimizer.clip.init(params),
        opt_state=optimizer.update.init(params),
        key=jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key,
    )
    return set_hyperparameters(state, **hyperparameters)


def set_hyperparameters(state: TrainState, **values) -> TrainState:
    """``state`` with optimizer hyperparameters replaced (see ``STATE_NAMES``)."""
    unknown = sorted(set(values) - set(STATE_NAMES))
    if unknown:
        raise ValueError(f"unknown optimizer hyperparameter(s) {unknown}; sweepable: {', '.join(STATE_NAMES)}")
    clip_values, update_values = {}, {}
    for name, value in values.items():
        value = jnp.asarray(value, jnp.float32)
        if name.startswith("clip"):
            clip_values[STATE_NAMES[name]] = clip_bound(value)
        else:
            update_values[STATE_NAMES[name]] = value
    clip_state = optax.tree_utils.tree_set(state.clip_state, **clip_values) if clip_values else state.clip_state
    try:
        opt_state = optax.tree_utils.tree_set(state.opt_state, **update_values) if update_values else state.opt_state
    except KeyError:
        raise ValueError(
            f"this optimizer has no hyperparameter among {sorted(update_values)} "
            "(momentum needs the 'momentum' optimizer)"
        ) from None
    return state._replace(clip_state=clip_state, opt_state=opt_state)


def hyperparameters(state: TrainState) -> dict[str, jax.Array]:
    """The learning rate's peak and the clipping bounds (inf = off) held in ``state``."""
    return {
        "learning_rate": optax.tree_utils.tree_get(state.opt_state, "learning_rate"),
        "clip_norm": optax.tree_utils.tree_get(state.clip_state, "max_norm"),
    }


def group_norms(tree) -> dict[str, jax.Array]:
    """The L2 norm of each parameter group (the leaves under one parent, e.g. one
    recurrent layer direction or one Dense layer), keyed ``"rnn/l0/fwd"``."""
    groups: dict[str, list] = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path[:-1]]
        groups.setdefault("/".join(keys) or "params", []).append(leaf)
    return {name: optax.tree.norm(leaves) for name, leaves in groups.items()}


def make_train_step(loss_fn: Callable, optimizer: Optimizer, constrain: Callable | None = None) -> Callable:
    """A pure ``(state, batch) -> (state, metrics)``; jit it, vmap it over seeds or sweep points.

    ``constrain(params) -> params``, when given, projects the params after each update (a
    cell's constraint set, e.g. IndRNN's ``|u| <= U_bound``: ``rnnlab.linen.constrain_recurrent``)."""

    def train_step(state: TrainState, batch):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
        grad_norm = optax.tree.norm(grads)
        clipped, clip_state = optimizer.clip.update(grads, state.clip_state, state.params)
        updates, opt_state = optimizer.update.update(clipped, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if constrain is not None:
            params = constrain(params)
        hp = hyperparameters(state)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "grad_norm_clipped": optax.tree.norm(clipped),
            "clipped": grad_norm > hp["clip_norm"],  # never when the bound is inf (off)
            "learning_rate": hp["learning_rate"] * optimizer.shape(state.step),
            "group_grad_norms": group_norms(grads),
            **aux,
        }
        new_state = TrainState(state.step + 1, params, clip_state, opt_state, state.key)
        return new_state, metrics

    return train_step


# -- the loop -----------------------------------------------------------------


class NonFiniteError(FloatingPointError):
    pass


def to_json(metrics) -> dict:
    """Host copies of metrics as JSON values.  A metric with a leading axis of sweep
    points (seeds, grid points) ``m`` becomes ``m`` (the mean over points) and
    ``m_per_point`` (the list)."""
    out = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            out[name] = to_json(value)
            continue
        a = np.asarray(value)
        if a.ndim == 0:
            out[name] = a.item()
        else:
            out[name] = float(np.mean(a))
            out[f"{name}_per_point"] = a.tolist()
    return out


def _progress_mode(progress: str) -> str:
    if progress == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    if progress not in ("bar", "lines", "none"):
        raise ValueError(f"progress must be auto, bar, lines or none, got {progress!r}")
    return progress


def fit(
    step_fn: Callable,
    state: TrainState,
    batch_fn: Callable[[int], Any],
    *,
    num_steps: int,
    log_every: int = 10,
    log: Callable[[dict], None] | None = None,
    checkpointer=None,
    meta_fn: Callable[[int], dict] | None = None,
    progress: str = "auto",
    desc: str = "train",
    metrics_to_host: Callable[[dict], dict] | None = None,
    save_state: Callable[[int, Any, dict], None] | None = None,
    tolerate_diverged: bool = False,
    evaluate: Callable[[Any], dict] | None = None,
    evaluate_every: int = 0,
) -> TrainState:
    """Run ``step_fn`` from ``state.step`` up to ``num_steps``.

    Logs every ``log_every`` steps (and the last) through ``log``, checkpoints
    when ``checkpointer.due(step)`` and at the end, and stops with
    ``NonFiniteError`` -- naming the step and the last good checkpoint -- as soon
    as the loss or the gradient norm is not finite (that state is never saved).

    With a leading axis of sweep points and ``tolerate_diverged``, a point whose
    loss goes non-finite is logged (NaN stays NaN) while the others go on; the
    error comes only when every point has diverged.  ``metrics_to_host`` turns
    the step's metrics into host arrays (a sweep drops its padding and gathers
    across processes); ``save_state(step, state, meta)`` replaces
    ``checkpointer.save`` when the state needs the same treatment.

    ``evaluate(state) -> {name: host values}`` (held-out metrics, say), when given, runs after
    every ``evaluate_every``-th step and the last, before that step's checkpoint; its values join
    that step's logged record (which is logged whatever ``log_every`` says), so a run resumed
    from a checkpoint holds every evaluation up to it.
    """
    if evaluate is not None and evaluate_every < 1:
        raise ValueError(f"evaluate_every must be >= 1 when evaluate is given, got {evaluate_every}")
    mode = _progress_mode(progress)
    metrics_to_host = metrics_to_host or (lambda m: jax.tree.map(np.asarray, m))
    save_state = save_state or (lambda step, st, meta: checkpointer.save(step, st, meta))
    start = int(np.asarray(metrics_to_host({"step": state.step})["step"]).reshape(-1)[0])
    bar = None
    if mode == "bar":
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, initial=start, desc=desc, dynamic_ncols=True)
    t0, steps_done = time.perf_counter(), 0
    meta_fn = meta_fn or (lambda step: {})
    for step in range(start, num_steps):
        state, metrics = step_fn(state, batch_fn(step))
        metrics = metrics_to_host(metrics)
        loss, grad_norm = metrics["loss"], metrics["grad_norm"]
        finite_points = np.isfinite(loss) & np.isfinite(grad_norm)
        finite = bool(np.any(finite_points) if tolerate_diverged else np.all(finite_points))
        done = step + 1
        steps_done += 1
        evaluated = {}
        if evaluate is not None and finite and (done % evaluate_every == 0 or done == num_steps):
            evaluated = to_json(evaluate(state))
        if done % log_every == 0 or done == num_steps or not finite or evaluated:
            elapsed = time.perf_counter() - t0
            record = {"step": done, **to_json(metrics), **evaluated}
            record |= {"steps_per_sec": steps_done / elapsed, "elapsed_s": elapsed}
            if log is not None:
                log(record)
            if mode == "lines":
                eta = (num_steps - done) * elapsed / steps_done
                print(
                    f"{desc} step {done}/{num_steps} loss {record['loss']:.4g} "
                    f"grad_norm {record['grad_norm']:.3g} {record['steps_per_sec']:.1f} steps/s eta {eta:.0f}s",
                    flush=True,
                )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(np.mean(loss)):.4g}", grad_norm=f"{float(np.mean(grad_norm)):.3g}")
        if not finite:
            if bar is not None:
                bar.close()
            last = checkpointer.latest_path() if checkpointer is not None else None
            raise NonFiniteError(
                f"{desc}: non-finite loss or gradient at step {done} (loss={loss.tolist()}, "
                f"grad_norm={grad_norm.tolist()}); stopped without saving. Last good checkpoint: "
                f"{last if last is not None else 'none'}"
            )
        if checkpointer is not None and (checkpointer.due(done) or done == num_steps):
            save_state(done, state, meta_fn(done))
    if bar is not None:
        bar.close()
    return state
