"""Cells and their initializers: layouts, equations against hand-written math, init properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import ElmanCell, GRUCell, LSTMCell, LSTMState
from rnnlab.initializers import spectral_radius

H, I = 6, 3


@pytest.mark.parametrize("cell,gates", [(ElmanCell(H), 1), (LSTMCell(H), 4), (GRUCell(H), 3)])
def test_params_use_pytorch_layout(cell, gates):
    params = cell.init(jax.random.key(0), I)
    assert {k: v.shape for k, v in params.items()} == {
        "w_ih": (gates * H, I),
        "w_hh": (gates * H, H),
        "b_ih": (gates * H,),
        "b_hh": (gates * H,),
    }
    assert set(cell.__class__(H, use_bias=False).init(jax.random.key(0), I)) == {"w_ih", "w_hh"}


def test_lstm_step_matches_the_gate_equations():
    cell = LSTMCell(H)
    p = {k: np.asarray(v, np.float64) for k, v in cell.init(jax.random.key(1), I).items()}
    x, h, c = np.random.default_rng(0).normal(size=I), np.full(H, 0.3), np.full(H, -0.2)
    sig = lambda a: 1 / (1 + np.exp(-a))
    W = lambda name, k: p[name][k * H : (k + 1) * H]
    pre = [W("w_ih", k) @ x + W("b_ih", k) + W("w_hh", k) @ h + W("b_hh", k) for k in range(4)]
    i, f, g, o = sig(pre[0]), sig(pre[1]), np.tanh(pre[2]), sig(pre[3])
    c_ref = f * c + i * g
    h_ref = o * np.tanh(c_ref)
    carry = LSTMState(jnp.asarray(h, jnp.float32), jnp.asarray(c, jnp.float32))
    state, y = cell.step(cell.init(jax.random.key(1), I), carry, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(state.c, c_ref, atol=1e-6)
    np.testing.assert_allclose(state.h, h_ref, atol=1e-6)
    np.testing.assert_array_equal(y, state.h)


def test_gru_keeps_b_hn_inside_the_reset_product():
    cell = GRUCell(H)
    params = cell.init(jax.random.key(2), I)
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x, h = np.linspace(-1, 1, I), np.linspace(0.5, -0.5, H)
    sig = lambda a: 1 / (1 + np.exp(-a))
    W = lambda name, k: p[name][k * H : (k + 1) * H]
    r = sig(W("w_ih", 0) @ x + W("b_ih", 0) + W("w_hh", 0) @ h + W("b_hh", 0))
    z = sig(W("w_ih", 1) @ x + W("b_ih", 1) + W("w_hh", 1) @ h + W("b_hh", 1))
    n = np.tanh(W("w_ih", 2) @ x + W("b_ih", 2) + r * (W("w_hh", 2) @ h + W("b_hh", 2)))
    h_ref = (1 - z) * n + z * h
    h_new, _ = cell.step(params, jnp.asarray(h, jnp.float32), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(h_new, h_ref, atol=1e-6)


def test_elman_relu_and_tanh():
    x, h = jnp.ones(I), jnp.ones(H)
    for act, fn in (("tanh", np.tanh), ("relu", lambda a: np.maximum(a, 0))):
        cell = ElmanCell(H, activation=act)
        p = cell.init(jax.random.key(3), I)
        ref = fn(np.asarray(p["w_ih"]) @ np.asarray(x) + p["b_ih"] + np.asarray(p["w_hh"]) @ np.asarray(h) + p["b_hh"])
        np.testing.assert_allclose(cell.step(p, h, x)[0], ref, atol=1e-6)


def test_pytorch_default_init_is_uniform_in_one_over_sqrt_h():
    hidden = 100
    params = LSTMCell(hidden).init(jax.random.key(4), 50)
    bound = 1 / np.sqrt(hidden)
    for name, w in params.items():
        w = np.asarray(w)
        assert np.abs(w).max() <= bound, name
        # uniform on [-b, b]: std b/sqrt(3)
        assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound, name


def test_orthogonal_init_gives_orthogonal_blocks_with_gain():
    params = LSTMCell(H, recurrent_init="orthogonal", recurrent_gain=0.9).init(jax.random.key(5), I)
    for k in range(4):
        block = np.asarray(params["w_hh"][k * H : (k + 1) * H])
        np.testing.assert_allclose(block @ block.T, 0.81 * np.eye(H), atol=1e-5)


def test_identity_init_is_irnn():
    params = ElmanCell(H, activation="relu", recurrent_init="identity", bias_init="zeros").init(jax.random.key(6), I)
    np.testing.assert_array_equal(params["w_hh"], np.eye(H))
    np.testing.assert_array_equal(params["b_ih"], 0.0)


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("init", ["pytorch", "normal", "orthogonal"])
def test_spectral_radius_is_set_exactly(init, radius):
    cell = ElmanCell(32, recurrent_init=init, spectral_radius=radius)
    w_hh = np.asarray(cell.init(jax.random.key(7), I)["w_hh"], np.float64)
    assert np.max(np.abs(np.linalg.eigvals(w_hh))) == pytest.approx(radius, rel=1e-4)
    # also inside jit (the eigenvalues are computed on the host)
    w_jit = jax.jit(cell.init, static_argnums=1)(jax.random.key(7), I)["w_hh"]
    np.testing.assert_allclose(w_jit, w_hh, rtol=1e-5)
    assert float(spectral_radius(jnp.asarray(w_hh, jnp.float32))) == pytest.approx(radius, rel=1e-4)


def test_forget_bias_sets_the_total_forget_gate_bias():
    params = LSTMCell(H, forget_bias=1.0).init(jax.random.key(8), I)
    total = np.asarray(params["b_ih"] + params["b_hh"])
    np.testing.assert_array_equal(total[H : 2 * H], 1.0)
    assert np.all(total[:H] != 0) and np.all(total[2 * H :] != 0)  # other gates keep their draw


def test_initial_carry():
    assert LSTMCell(H).initial_carry((2, 3)).h.shape == (2, 3, H)
    assert isinstance(LSTMCell(H).initial_carry((2,)), LSTMState)
    assert GRUCell(H).initial_carry((4,)).shape == (4, H)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: ElmanCell(H, activation="sigmoid"), "unknown activation 'sigmoid'"),
        (lambda: LSTMCell(H, recurrent_init="he"), "unknown recurrent_init 'he'"),
        (lambda: GRUCell(H, input_init="lecun"), "unknown input_init 'lecun'"),
        (lambda: GRUCell(H, bias_init="ones"), "unknown bias_init 'ones'"),
        (lambda: LSTMCell(0), "hidden_size must be a positive int"),
        (lambda: ElmanCell(H, spectral_radius=-1.0), "spectral_radius must be > 0"),
        (lambda: LSTMCell(H, use_bias=False, forget_bias=1.0), "forget_bias needs use_bias=True"),
    ],
)
def test_bad_hyperparameters_raise_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
