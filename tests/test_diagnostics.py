"""Gradient diagnostics against independent references: hand-written BPTT in NumPy
for the Elman cell, and float64 finite differences for the LSTM."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import RNN, ElmanCell, LSTMCell, diagnostics, unroll
from rnnlab.linear import LRUBlock

T, B, I, H = 12, 3, 2, 5


def elman_reference(params, x_bti, target_bh):
    """NumPy BPTT: L = 0.5 sum_b ||h_T - target||^2, delta_t = W^T ((1 - h_{t+1}^2) * delta_{t+1})."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(x_bti, np.float64)
    h = np.zeros((B, H))
    hs = []
    for t in range(T):
        h = np.tanh(x[:, t] @ p["w_ih"].T + p["b_ih"] + h @ p["w_hh"].T + p["b_hh"])
        hs.append(h)
    delta = hs[-1] - np.asarray(target_bh)
    norms = [np.linalg.norm(delta, axis=-1)]
    jac = np.eye(H)[None].repeat(B, 0)  # dh_T/dh_t, built backwards
    jac_norms = [np.linalg.norm(jac[0], 2)]
    for t in range(T - 2, -1, -1):
        step_jac = (1 - hs[t + 1] ** 2)[:, :, None] * p["w_hh"][None]  # dh_{t+1}/dh_t  [B, H, H]
        delta = np.einsum("bi,bij->bj", delta, step_jac)
        jac = jac @ step_jac
        norms.append(np.linalg.norm(delta, axis=-1))
        jac_norms.append(np.linalg.norm(jac[0], 2))
    return np.stack(norms[::-1], axis=1), np.array(jac_norms[::-1])


def test_elman_gradient_and_jacobian_norms_match_numpy_bptt(assert_close):
    cell = ElmanCell(H, recurrent_init="orthogonal", recurrent_gain=1.2)
    params = cell.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    target = jax.random.normal(jax.random.key(2), (B, H))

    def loss(eps_bth):
        _, h_T = unroll(cell, params, x, hidden_perturbation=eps_bth)
        return 0.5 * jnp.sum((h_T - target) ** 2)

    norms_bt = diagnostics.hidden_gradient_norms(loss, (B, T, H))
    jac_t = diagnostics.hidden_jacobian_norms(
        lambda eps: unroll(cell, params, x[:1], hidden_perturbation=eps[None])[1][0], (T, H)
    )
    ref_norms, ref_jac = elman_reference(params, x, target)
    assert_close("dL/dh_t vs numpy BPTT", norms_bt, ref_norms, atol=1e-6, rtol=1e-4)
    assert_close("dh_T/dh_t vs numpy product", jac_t, ref_jac, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_hidden_gradients_match_finite_differences(bidirectional):
    with jax.enable_x64(True):
        layer = RNN(LSTMCell(H, forget_bias=1.0), num_layers=2, bidirectional=bidirectional)
        params = layer.init(jax.random.key(3), I, jnp.float64)
        x = jax.random.normal(jax.random.key(4), (B, T, I), jnp.float64)
        lengths = jnp.array([T, 7, 4])
        K = layer.num_layers * layer.num_directions
        k = K - 1  # the top layer's last direction

        def loss(eps_kbth):
            out, final = layer.apply(params, x, lengths, hidden_perturbation=eps_kbth)
            return jnp.sum(jnp.sin(out)) + jnp.sum(final.h**2)

        grad = jax.grad(loss)(jnp.zeros((K, B, T, H)))
        rng = np.random.default_rng(0)
        for b, t in ((0, 0), (1, 6), (2, 3), (0, T - 1)):
            u = rng.normal(size=H)
            e = np.zeros((K, B, T, H))
            e[k, b, t] = 1e-6 * u
            fd = (loss(jnp.asarray(e)) - loss(jnp.asarray(-e))) / 2e-6
            assert float(grad[k, b, t] @ u) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)
        # padded steps (t >= length) receive no gradient
        assert np.all(np.asarray(grad[:, 2, 4:]) == 0.0)


def test_zero_perturbation_changes_nothing():
    layer = RNN(LSTMCell(H))
    params = layer.init(jax.random.key(5), I)
    x = jax.random.normal(jax.random.key(6), (B, T, I))
    out, final = layer.apply(params, x)
    out_p, final_p = layer.apply(params, x, hidden_perturbation=jnp.zeros((1, B, T, H)))
    np.testing.assert_array_equal(out, out_p)
    with pytest.raises(ValueError, match="hidden_perturbation must be"):
        layer.apply(params, x, hidden_perturbation=jnp.zeros((B, T, H)))
    with pytest.raises(ValueError, match=r"hidden_perturbation must have the outputs' shape \(3, 12, 5\)"):
        layer.apply(params, x, hidden_perturbation=jnp.zeros((1, B, T + 1, H)))


def test_summaries_by_distance_leave_a_diverged_seed_out():
    curves_st = np.array([[1.0, 10.0, 100.0], [2.0, 20.0, 200.0], [3.0, 30.0, 300.0], [np.nan, 1.0, 1.0]])
    s = diagnostics.summarize(curves_st)  # time order in, distance from the last step out
    assert s["distance"] == [0, 1, 2] and s["median"] == [200.0, 20.0, 2.0]
    assert s["q25"][0] == 150.0 and s["q75"][0] == 250.0
    assert s["diverged"] == 1 and s["diverged_seeds"] == [3]
    assert diagnostics.decay_ratio(curves_st[0]) == pytest.approx(0.01)


def test_spectral_norm_equals_numpy_svd():
    """No-LAPACK spectral norm: random, repeated or nearly repeated top singular value, rank one, tiny
    scale, zero; a gap of 1e-4 between the top two is within its documented 2e-5 bound."""
    rng = np.random.default_rng(0)
    q1, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    q2, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    cases = [
        rng.normal(size=(8, 8)),
        q1 @ np.diag([3.0, 3.0, 2.99, 1, 0.5, 0]) @ q2,
        np.outer(np.arange(5.0), np.ones(5)),
        1e-200 * rng.normal(size=(4, 4)),
        np.eye(3),
        np.zeros((3, 3)),
    ]
    with jax.enable_x64(True):
        for m in cases:
            got = float(diagnostics.spectral_norm(jnp.asarray(m, jnp.float64)))
            assert got == pytest.approx(np.linalg.norm(m, 2), rel=1e-12, abs=0), m
        close = q1 @ np.diag([3.0, 3.0 * (1 - 1e-4), 1, 1, 0.5, 0]) @ q2
        assert float(diagnostics.spectral_norm(jnp.asarray(close))) == pytest.approx(3.0, rel=2e-5)


def test_lyapunov_exponents_of_a_linear_rnn_are_the_logs_of_its_eigenvalue_moduli(assert_close):
    """For h_t = W h_(t-1) + U x_t the tangent map is W at every step: lambda_i = ln |eig_i(W)|
    (a normal W with a known spectrum, signs mixed); the QR method converges as 1/T."""
    with jax.enable_x64(True):
        H = 6
        cell = ElmanCell(H, activation="linear")
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(H, H)))
        eig = np.array([0.95, -0.8, 0.6, 0.5, -0.3, 0.1])
        params["w_hh"] = jnp.asarray(q @ np.diag(eig) @ q.T)
        x = jax.random.normal(jax.random.key(1), (4000, 2), jnp.float64)
        got = diagnostics.lyapunov_exponents(cell, params, x, count=4)
        assert_close("Lyapunov exponents vs ln|eig(W_hh)|", got, np.log(np.abs(eig[:4])), atol=2e-3, rtol=0)
        # only the valid prefix counts: length 2000 of 4000 steps gives the same exponents to 1/T
        half = diagnostics.lyapunov_exponents(cell, params, x, 2000, count=4)
        assert_close("Lyapunov exponents over a length", half, np.log(np.abs(eig[:4])), atol=4e-3, rtol=0)


@pytest.mark.parametrize("ring", [(0.0, 1.0), (0.9, 0.999), (0.999, 0.9999)])
def test_finite_time_exponent_of_the_lru_is_the_log_of_its_largest_eigenvalue_modulus(ring):
    """The LRU's tangent map is diag(lambda) at every step, so lambda_1(T) = ln max |lambda| exactly
    (the three rings of the committed gradient runs, T = 500, 64 complex states).  The QR
    estimate from a random frame is 1.5-4x too negative there: its frame never turns onto the
    top mode among nearly equal rates (the bias the exact estimator removes)."""
    with jax.enable_x64(True):
        cell = LRUBlock(64, r_min=ring[0], r_max=ring[1])
        params = cell.init(jax.random.key(0), 1, jnp.float64)
        lam = cell.eigenvalues(params)
        exact = float(np.log(np.max(np.hypot(lam.re, lam.im))))
        x = jax.random.normal(jax.random.key(1), (500, 1), jnp.float64)
        got = float(diagnostics.finite_time_exponent(cell, params, x))
        assert got == pytest.approx(exact, rel=0.05)
        assert got == pytest.approx(exact, rel=1e-4)  # in fact to spectral_norm's 2e-5 on s_1^2, over T
        qr = float(diagnostics.lyapunov_exponents(cell, params, x)[0])
        assert qr < 1.3 * exact  # the start-frame bias, still there in the QR estimate


def test_finite_time_exponent_is_the_log_norm_of_the_jacobian_product_from_numpy():
    """A tanh RNN in float64 against numpy: J_t = diag(1 - h_t^2) W_hh multiplied out and its
    largest singular value (the 2-norm), with a length shorter than the sequence."""
    with jax.enable_x64(True):
        H, T, n = 5, 60, 45
        cell = ElmanCell(H)
        params = cell.init(jax.random.key(2), 3, jnp.float64)
        params["w_hh"] = params["w_hh"] * 4.0  # a mix of expanding and contracting directions
        x = np.random.default_rng(3).normal(size=(T, 3))
        p = {k: np.asarray(v) for k, v in params.items()}
        h, product = np.zeros(H), np.eye(H)
        for t in range(n):
            h = np.tanh(p["w_ih"] @ x[t] + p["b_ih"] + p["w_hh"] @ h + p["b_hh"])
            product = np.diag(1 - h**2) @ p["w_hh"] @ product
        want = np.log(np.linalg.norm(product, 2)) / n
        got = float(diagnostics.finite_time_exponent(cell, params, jnp.asarray(x), n))
        assert got == pytest.approx(want, rel=1e-10)


def test_decay_rate_is_the_slope_per_step_back():
    norms_t = 3.0 * np.exp(-0.25 * np.arange(40)[::-1])  # ||dL/dh_t|| = 3 e^{-0.25 (T-1-t)}
    assert diagnostics.decay_rate(norms_t) == pytest.approx(-0.25)
    assert np.isnan(diagnostics.decay_rate(np.full(5, np.nan)))
