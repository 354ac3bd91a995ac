"""Training: the step against hand-computed updates, clipping metrics, the NaN stop."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab.checkpoint import Checkpointer
from rnnlab.train import (
    NonFiniteError,
    OptimConfig,
    fit,
    group_norms,
    init_state,
    make_optimizer,
    make_train_step,
)


def quadratic_loss(params, batch, key):
    """0.5 * ||A w - b||^2: its gradient is A^T (A w - b), by hand."""
    r = batch["A"] @ params["layer"]["w"] - batch["b"]
    return 0.5 * jnp.sum(r**2) + 0.0 * jnp.sum(params["head"]["v"]), {"residual": jnp.sum(r**2)}


def problem(scale=1.0):
    rng = np.random.default_rng(0)
    batch = {"A": jnp.asarray(scale * rng.normal(size=(5, 3)), jnp.float32), "b": jnp.ones(5)}
    params = {"layer": {"w": jnp.asarray(rng.normal(size=3), jnp.float32)}, "head": {"v": jnp.ones(2)}}
    return params, batch


def test_sgd_step_equals_hand_update_and_logs_unclipped_norm():
    params, batch = problem(scale=10.0)  # large gradient: clipping fires
    opt = make_optimizer(OptimConfig(name="sgd", learning_rate=0.1, clip_norm=1.0), 10)
    step = jax.jit(make_train_step(quadratic_loss, opt))
    state, metrics = step(init_state(opt, params, jax.random.key(0)), batch)
    A, b, w = map(np.asarray, (batch["A"], batch["b"], params["layer"]["w"]))
    g = A.T @ (A @ w - b)
    norm = np.linalg.norm(g)
    assert norm > 1.0
    assert float(metrics["grad_norm"]) == pytest.approx(norm, rel=1e-5)  # before clipping
    assert float(metrics["grad_norm_clipped"]) == pytest.approx(1.0, rel=1e-5)
    assert bool(metrics["clipped"]) and float(metrics["learning_rate"]) == pytest.approx(0.1)
    np.testing.assert_allclose(state.params["layer"]["w"], w - 0.1 * g / norm, rtol=1e-5)
    assert float(metrics["group_grad_norms"]["layer"]) == pytest.approx(norm, rel=1e-5)
    assert float(metrics["group_grad_norms"]["head"]) == 0.0
    assert int(state.step) == 1


def test_adam_and_schedules_follow_optax():
    params, batch = problem()
    for cfg, ref_schedule in (
        (
            OptimConfig(name="adam", learning_rate=0.01, clip_norm=0, schedule="cosine"),
            optax.cosine_decay_schedule(0.01, 5),
        ),
        (OptimConfig(name="rmsprop", learning_rate=0.01, clip_norm=0), 0.01),
        (
            OptimConfig(name="momentum", learning_rate=0.01, clip_norm=0, schedule="warmup_cosine", warmup_steps=2),
            optax.warmup_cosine_decay_schedule(0.0, 0.01, 2, 5),
        ),
    ):
        opt = make_optimizer(cfg, 5)
        step = jax.jit(make_train_step(quadratic_loss, opt))
        state = init_state(opt, params, jax.random.key(0))
        ref_tx = {
            "adam": optax.adam,
            "rmsprop": lambda s: optax.rmsprop(s, eps_in_sqrt=False),
            "momentum": lambda s: optax.sgd(s, momentum=0.9),
        }[cfg.name](ref_schedule)
        ref_params, ref_opt = params, ref_tx.init(params)
        for _ in range(4):
            state, m = step(state, batch)
            g = jax.grad(lambda p: quadratic_loss(p, batch, None)[0])(ref_params)
            updates, ref_opt = ref_tx.update(g, ref_opt, ref_params)
            ref_params = optax.apply_updates(ref_params, updates)
        np.testing.assert_allclose(state.params["layer"]["w"], ref_params["layer"]["w"], rtol=1e-5)
        assert not bool(m["clipped"])


def test_traced_hyperparameters_equal_separate_optimizers():
    """One vmapped program over (learning rate, clip norm, momentum) == one optimizer built per value."""
    params, batch = problem(scale=3.0)
    lrs, clips, moms = [0.01, 0.05, 0.02], [1.0, 0.0, 5.0], [0.9, 0.5, 0.0]
    base = make_optimizer(OptimConfig(name="momentum", learning_rate=1.0, clip_norm=1.0, schedule="cosine"), 6)
    states = jax.vmap(
        lambda lr, c, m: init_state(base, params, jax.random.key(0), learning_rate=lr, clip_norm=c, momentum=m)
    )(jnp.array(lrs), jnp.array(clips), jnp.array(moms))
    step = jax.jit(jax.vmap(make_train_step(quadratic_loss, base), in_axes=(0, None)))
    for _ in range(4):
        states, metrics = step(states, batch)
    for i, (lr, c, m) in enumerate(zip(lrs, clips, moms)):
        opt = make_optimizer(
            OptimConfig(name="momentum", learning_rate=lr, clip_norm=c, momentum=m, schedule="cosine"), 6
        )
        state, one_step = init_state(opt, params, jax.random.key(0)), jax.jit(make_train_step(quadratic_loss, opt))
        for _ in range(4):
            state, ref = one_step(state, batch)
        np.testing.assert_allclose(states.params["layer"]["w"][i], state.params["layer"]["w"], rtol=1e-6)
        assert bool(metrics["clipped"][i]) == bool(ref["clipped"])
        assert float(metrics["learning_rate"][i]) == pytest.approx(float(ref["learning_rate"]), rel=1e-6)
    assert not bool(metrics["clipped"][1])  # clip_norm 0 is off
    with pytest.raises(ValueError, match="unknown optimizer hyperparameter"):
        init_state(base, params, jax.random.key(0), beta=0.1)


def test_value_clipping_is_applied_before_norm_clipping():
    params, batch = problem(scale=10.0)
    opt = make_optimizer(OptimConfig(name="sgd", learning_rate=1.0, clip_norm=0, clip_value=0.5), 1)
    state, m = make_train_step(quadratic_loss, opt)(init_state(opt, params, jax.random.key(0)), batch)
    delta = np.asarray(params["layer"]["w"] - state.params["layer"]["w"])
    assert np.all(np.abs(delta) <= 0.5 + 1e-6) and np.any(np.abs(delta) == pytest.approx(0.5))


def test_bad_optimizer_names_are_clear():
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        OptimConfig(name="adamw")
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        OptimConfig(schedule="linear")


def test_group_norms_group_by_parent():
    norms = group_norms(
        {"rnn": {"l0": {"fwd": {"w": jnp.array([3.0]), "b": jnp.array([4.0])}}}, "head": {"k": jnp.ones(4)}}
    )
    assert float(norms["rnn/l0/fwd"]) == pytest.approx(5.0) and float(norms["head"]) == pytest.approx(2.0)


def test_non_finite_loss_stops_with_step_and_last_checkpoint(tmp_path):
    params, batch = problem()

    def loss_fn(params, batch, key):
        loss, aux = quadratic_loss(params, batch, key)
        return loss * batch["poison"], aux

    opt = make_optimizer(OptimConfig(name="sgd", learning_rate=1e-3), 10)
    step = jax.jit(make_train_step(loss_fn, opt))
    ckpt = Checkpointer(tmp_path / "ckpt", keep=5, every=2)
    logged = []
    batches = lambda i: dict(batch, poison=jnp.float32(np.nan if i == 4 else 1.0))  # the 5th step breaks
    state0 = init_state(opt, params, jax.random.key(0))
    with pytest.raises(NonFiniteError, match=r"non-finite loss or gradient at step 5 .*Last good checkpoint: .*ckpt/4"):
        fit(step, state0, batches, num_steps=10, log_every=1, log=logged.append, checkpointer=ckpt, progress="none")
    assert ckpt.steps() == [2, 4]  # nothing after the failure, nothing lost before it
    assert logged[-1]["step"] == 5 and np.isnan(logged[-1]["loss"])
    restored_step, restored, _ = ckpt.restore_latest(state0)
    assert restored_step == 4 and np.all(np.isfinite(restored.params["layer"]["w"]))


def test_progress_lines_when_not_a_terminal_and_nothing_when_quiet(capsys):
    params, batch = problem()
    opt = make_optimizer(OptimConfig(name="sgd", learning_rate=1e-3), 4)
    step = jax.jit(make_train_step(quadratic_loss, opt))
    state0 = init_state(opt, params, jax.random.key(0))
    fit(step, state0, lambda i: batch, num_steps=4, log_every=2, progress="lines", desc="demo")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("demo step 2/4 loss ") and "grad_norm" in lines[0]
    fit(step, state0, lambda i: batch, num_steps=4, log_every=2, progress="none")
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="progress must be auto, bar, lines or none"):
        fit(step, state0, lambda i: batch, num_steps=4, progress="loud")


def test_a_diverged_seed_is_counted_and_left_out_of_the_quartiles():
    """over_seeds: NaN/inf seeds (diverged runs) are counted; median and quartiles are numpy's
    over the finite seeds, and every seed stays in per_seed."""
    from rnnlab.metrics import over_seeds

    got = over_seeds([0.3, np.nan, 0.1, np.inf, 0.2])
    finite = [0.3, 0.1, 0.2]
    assert got["diverged"] == 2 and len(got["per_seed"]) == 5
    assert (got["median"], got["q25"], got["q75"]) == pytest.approx(
        (np.median(finite), np.percentile(finite, 25), np.percentile(finite, 75))
    )
    assert over_seeds([1.0, 2.0])["diverged"] == 0
    assert np.isnan(over_seeds([np.nan, np.nan])["median"])
