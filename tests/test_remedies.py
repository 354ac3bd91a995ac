"""Remedies for vanishing gradients as cell and layer options: chrono initialisation
(Tallec & Ollivier 2018) and an orthogonal recurrent matrix kept orthogonal by training
its skew-symmetric generator (expRNN, Lezcano-Casado & Martinez-Rubio 2019)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnlab import RNN, ElmanCell, GRUCell, LSTMCell
from rnnlab.linen import SequenceRegressor
from rnnlab.parametrizations import Orthogonal

H = 3000


def test_chrono_lstm_forget_biases_are_log_uniform_and_input_biases_their_negatives():
    plain = LSTMCell(H).init(jax.random.key(0), 3)
    chrono = LSTMCell(H, t_max=100.0).init(jax.random.key(0), 3)
    b_f, b_i = chrono["b_ih"][H : 2 * H], chrono["b_ih"][:H]
    np.testing.assert_array_equal(b_i, -b_f)
    assert not jnp.any(chrono["b_hh"][: 2 * H])
    u = np.exp(np.asarray(b_f, np.float64))  # should be U(1, 99)
    assert 1.0 <= u.min() and u.max() <= 99.0
    assert abs(u.mean() - 50.0) < 3 * 98 / np.sqrt(12 * H)  # 3 standard errors of a U(1, 99) mean
    assert abs(np.mean(u < 25.5) - 0.25) < 0.03
    # nothing else moves: the same weights and the other gates' biases as the plain init
    np.testing.assert_array_equal(chrono["w_hh"], plain["w_hh"])
    np.testing.assert_array_equal(chrono["b_ih"][2 * H :], plain["b_ih"][2 * H :])


def test_chrono_gru_sets_the_update_gate_only():
    plain = GRUCell(H).init(jax.random.key(1), 3)
    chrono = GRUCell(H, t_max=50.0).init(jax.random.key(1), 3)
    u = np.exp(np.asarray(chrono["b_ih"][H : 2 * H], np.float64))
    assert 1.0 <= u.min() and u.max() <= 49.0 and abs(u.mean() - 25.0) < 3 * 48 / np.sqrt(12 * H)
    assert not jnp.any(chrono["b_hh"][H : 2 * H])
    for part in (slice(0, H), slice(2 * H, 3 * H)):
        np.testing.assert_array_equal(chrono["b_ih"][part], plain["b_ih"][part])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"t_max": 2.0}, "t_max must be > 2"),
        ({"t_max": 10.0, "forget_bias": 1.0}, "forget_bias and t_max both"),
        ({"t_max": 10.0, "use_bias": False}, "t_max needs use_bias=True"),
    ],
)
def test_chrono_options_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSTMCell(4, **kwargs)


@pytest.mark.parametrize("scale", [0.01, 1.0, 30.0])
def test_skew_exponential_is_expm(scale, assert_close):
    from rnnlab.parametrizations import skew_exponential

    with jax.enable_x64(True):
        a = scale * jax.random.normal(jax.random.key(0), (9, 9), jnp.float64)
        upper = np.triu(np.asarray(a), 1)  # only the strict upper triangle is the generator (expRNN)
        want = jax.scipy.linalg.expm(upper - upper.T)
        assert_close("skew_exponential vs jax.scipy.linalg.expm", skew_exponential(a), want, atol=1e-9, rtol=1e-9)


def orthogonality_error(layer, params):
    h = layer.cell.hidden_size
    blocks = [
        w.reshape(-1, h, h)
        for w in jax.tree.leaves(
            {k: {d: p["w_hh"] for d, p in v.items()} for k, v in layer.materialize(params).items()}
        )
    ]
    return max(float(jnp.max(jnp.abs(b @ jnp.swapaxes(b, -1, -2) - jnp.eye(h)))) for b in blocks)


def test_orthogonal_parametrisation_stays_orthogonal_while_training():
    """Adam steps move the generator A; W = expm(A - A^T) stays orthogonal, unlike an
    orthogonally initialised W trained directly."""
    x = jax.random.normal(jax.random.key(0), (8, 12, 3))
    y = jax.random.normal(jax.random.key(1), (8, 1))
    results = {}
    for name, layer in {
        "expm": Orthogonal(RNN(ElmanCell(16))),
        "plain": RNN(ElmanCell(16, recurrent_init="orthogonal")),
    }.items():
        model = SequenceRegressor(layer)
        params = model.init(jax.random.key(2), x)
        opt = optax.adam(0.05)
        state = opt.init(params)
        grad = jax.jit(jax.grad(lambda p: jnp.mean((model.apply(p, x) - y) ** 2)))
        for _ in range(30):
            updates, state = opt.update(grad(params), state)
            params = optax.apply_updates(params, updates)
        results[name] = orthogonality_error(layer, params["params"]["recurrent"]["rnn"])
    assert results["expm"] < 1e-5 and results["plain"] > 1e-2, results


@pytest.mark.parametrize("cell", [ElmanCell(4), LSTMCell(3)], ids=["rnn", "lstm"])
def test_orthogonal_parametrisation_gradient_matches_finite_differences(cell, assert_close):
    with jax.enable_x64(True):
        layer = Orthogonal(RNN(cell))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), layer.init(jax.random.key(0), 2, jnp.float64))
        params["l0"]["fwd"]["a_hh"] += 0.3 * jax.random.normal(
            jax.random.key(1), params["l0"]["fwd"]["a_hh"].shape, jnp.float64
        )
        x = jax.random.normal(jax.random.key(2), (3, 7, 2), jnp.float64)
        weights = jax.random.normal(jax.random.key(3), (3, 7, cell.hidden_size), jnp.float64)

        @jax.jit
        def loss(a_hh):
            p = {"l0": {"fwd": dict(params["l0"]["fwd"], a_hh=a_hh)}}
            return jnp.sum(layer.apply(p, x)[0] * weights)

        a = params["l0"]["fwd"]["a_hh"]
        grad = np.asarray(jax.grad(loss)(a))
        eps, fd = 1e-6, np.zeros(a.shape)
        for index in np.ndindex(a.shape):
            step = jnp.zeros(a.shape, jnp.float64).at[index].set(eps)
            fd[index] = (float(loss(a + step)) - float(loss(a - step))) / (2 * eps)
        assert_close(
            f"expm generator gradient vs finite differences ({type(cell).__name__})", grad, fd, atol=1e-7, rtol=1e-6
        )


def test_the_remedies_train_on_the_adding_problem_by_name(tmp_path):
    """`adding_problem.py --models lstm_chrono gru_chrono rnn_orthogonal exprnn`: each a named
    model of rnnlab.zoo.make_layer, trained and evaluated like the plain cells."""
    from conftest import load_script

    from rnnlab.zoo import make_layer

    names = ["lstm_chrono", "gru_chrono", "rnn_orthogonal", "exprnn"]
    results = load_script("adding_problem").main(
        [
            "--quick",
            "--quiet",
            "--compile-cache",
            "off",
            "--seq-len",
            "8",
            "--hidden",
            "8",
            "--steps",
            "10",
            "--test-size",
            "32",
            "--checkpoint-every",
            "0",
            "--models",
            *names,
            "--out",
            str(tmp_path),
        ]
    )
    for name in names:
        (point,) = results["models"][name]["points"]
        assert len(point["test_mse"]["per_seed"]) == 2 and np.all(np.isfinite(point["test_mse"]["per_seed"]))
    assert make_layer("lstm_chrono", 4, t_max=8).cell.t_max == 8.0
    assert isinstance(make_layer("exprnn", 4), Orthogonal)
    with pytest.raises(ValueError, match="lstm_chrono needs t_max"):
        make_layer("lstm_chrono", 4)
