"""Linear recurrences (rnnlab.linear): the sequential and associative evaluations agree, both
equal a per-example loop and, for the LRU, complex arithmetic written out in numpy; lengths,
reverse, initial carry and the hidden perturbation behave as for every cell; gradients match
finite differences; the LRU's ring init puts |λ| where it says."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from rnnlab import RNN
from rnnlab.linear import LRUBlock, MinGRUCell, MinLSTMCell

B, T, I, H = 3, 8, 4, 5
LENGTHS = np.array([8, 2, 5])
CELLS = {"lru": LRUBlock(H), "mingru": MinGRUCell(H), "minlstm": MinLSTMCell(H)}


def random_carry(cell, key, scans=2):
    return jax.tree.map(lambda z: jax.random.normal(key, z.shape), cell.initial_carry((scans, B)))


@pytest.mark.parametrize("name", CELLS)
def test_associative_equals_sequential_with_every_input(name, assert_close):
    """Outputs, final states and gradients w.r.t. params, input, initial carry and the
    perturbation (dL/dh_t), a two-layer bidirectional stack with lengths."""
    cell = CELLS[name]
    layers = {ev: RNN(cell, num_layers=2, bidirectional=True, path=ev) for ev in ("sequential", "associative")}
    params = layers["sequential"].init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    carry0 = random_carry(cell, jax.random.key(2), scans=4)
    eps = 0.1 * jax.random.normal(jax.random.key(3), (4, B, T, H))
    r = jax.random.normal(jax.random.key(4), (B, T, 2 * H))

    def loss(params, x, carry0, eps, ev):
        out, final = layers[ev].apply(params, x, LENGTHS, carry0, hidden_perturbation=eps)
        return jnp.sum(out * r) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(final))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)), static_argnums=4)
    (got, got_g), (want, want_g) = (
        grad(params, x, carry0, eps, "associative"),
        grad(params, x, carry0, eps, "sequential"),
    )
    assert_close(f"associative vs sequential: loss ({name})", got, want, atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(got_g), jax.tree.leaves(want_g)):
        assert_close(f"associative vs sequential: gradients ({name})", a, b, atol=1e-5, rtol=1e-4)


def numpy_reference(name, p, x_ti, h0):
    """One sequence, written out with numpy (complex numbers for the LRU)."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    sig = lambda v: 1 / (1 + np.exp(-v))
    g = lambda v: np.where(v >= 0, v + 0.5, sig(v))
    h, ys = h0, []
    for x in np.asarray(x_ti, np.float64):
        if name == "lru":  # the block: LayerNorm -> LRU -> gelu -> GLU -> residual
            u = p["w_ih"] @ x + p["b_ih"]
            v = (u - u.mean()) / np.sqrt(u.var() + 1e-6) * p["norm_scale"] + p["norm_bias"]
            lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
            h = lam * h + np.exp(p["gamma_log"]) * ((p["B_re"] + 1j * p["B_im"]) @ v)
            z = ((p["C_re"] + 1j * p["C_im"]) @ h).real + p["D"] * v
            gelu = 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))  # jax.nn.gelu's default
            z1, z2 = np.split(p["w_glu"] @ gelu + p["b_glu"], 2)
            ys.append(u + z1 * sig(z2))
            continue
        k = p["w_ih"] @ x + p["b_ih"]
        if name == "mingru":
            z, v = sig(k[:H]), k[H:]
            h = (1 - z) * h + z * g(v)
        else:
            f, i, v = sig(k[:H]), sig(k[H : 2 * H]), k[2 * H :]
            h = f / (f + i) * h + i / (f + i) * g(v)
        ys.append(h)
    return np.array(ys), h


@pytest.mark.parametrize("evaluation", ["sequential", "associative"])
@pytest.mark.parametrize("name", CELLS)
def test_each_evaluation_equals_the_numpy_recurrence(name, evaluation, assert_close):
    """Per example, its valid steps only, forward and (valid prefix) reversed, from a random initial state."""
    cell = CELLS[name]
    layer = RNN(cell, bidirectional=True, path=evaluation)
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    carry0 = random_carry(cell, jax.random.key(2))
    out, final = layer.apply(params, x, LENGTHS, carry0)
    for d, direction in enumerate(("fwd", "bwd")):
        for b in range(B):
            n = LENGTHS[b]
            seq = x[b, :n] if direction == "fwd" else x[b, :n][::-1]
            h0 = jax.tree.map(lambda a: np.asarray(a[d, b], np.float64), carry0)
            h0 = h0.re + 1j * h0.im if name == "lru" else h0
            ys, h = numpy_reference(name, params["l0"][direction], seq, h0)
            ys = ys if direction == "fwd" else ys[::-1]
            assert_close(
                f"{evaluation} vs numpy: outputs ({name})", out[b, :n, d * H : (d + 1) * H], ys, atol=2e-5, rtol=2e-5
            )
            assert np.all(np.asarray(out[b, n:]) == 0)  # padding exactly zero
            got = jax.tree.map(lambda a: np.asarray(a[d, b]), final)
            got = np.stack([got.re, got.im]) if name == "lru" else got
            want = np.stack([h.real, h.imag]) if name == "lru" else h  # both parts of the complex state
            assert_close(f"{evaluation} vs numpy: final state ({name})", got, want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize("name", CELLS)
def test_a_padded_batch_gives_the_unpadded_results(name, assert_close):
    layer = RNN(CELLS[name], path="associative")
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (2, 5, I))
    padded = jnp.concatenate([x, jnp.full((2, 3, I), jnp.nan)], axis=1)  # padding may hold anything
    out, final = layer.apply(params, padded, np.array([5, 5]))
    want_out, want_final = layer.apply(params, x)
    assert_close(f"padded vs unpadded outputs ({name})", out[:, :5], want_out, atol=1e-6, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(want_final)):
        assert_close(f"padded vs unpadded final ({name})", a, b, atol=1e-6, rtol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, padded, np.array([5, 5]))[0] ** 2))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("name", CELLS)
def test_float64_gradients_match_finite_differences(name, assert_close):
    with jax.enable_x64(True):
        layer = RNN(CELLS[name], path="associative")
        params = layer.init(jax.random.key(0), 3, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 6, 3), jnp.float64)
        w = jax.random.normal(jax.random.key(2), (2, 6, H), jnp.float64)
        flat, unravel = ravel_pytree(params)
        loss = jax.jit(lambda v: jnp.sum(layer.apply(unravel(v), x, np.array([6, 4]))[0] * w))
        grad = np.asarray(jax.grad(loss)(flat))
        eps = 1e-6
        fd = [
            (float(loss(flat.at[i].add(eps))) - float(loss(flat.at[i].add(-eps)))) / (2 * eps) for i in range(flat.size)
        ]
        assert_close(f"{name} gradient vs finite differences", grad, fd, atol=1e-7, rtol=1e-6)


def test_lru_ring_init_puts_the_eigenvalues_on_the_ring():
    cell = LRUBlock(4000, r_min=0.4, r_max=0.9, max_phase=math.pi / 2)
    lam = cell.eigenvalues(cell.init(jax.random.key(0), 3))
    modulus, phase = np.hypot(lam.re, lam.im), np.arctan2(lam.im, lam.re)
    assert 0.4 - 1e-6 <= modulus.min() and modulus.max() <= 0.9 + 1e-6
    # uniform on the ring by area: |λ|^2 ~ U(r_min^2, r_max^2)
    assert abs(np.mean(modulus**2) - (0.16 + 0.81) / 2) < 0.01
    assert 0 <= phase.min() and phase.max() <= math.pi / 2 + 1e-6
    default = LRUBlock(64).eigenvalues(LRUBlock(64).init(jax.random.key(1), 3))
    assert np.all(np.hypot(default.re, default.im) < 1)  # inside the unit disc


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LRUBlock(4, r_min=0.9, r_max=0.5), "LRU needs 0 <= r_min < r_max <= 1"),
        (lambda: LRUBlock(4, r_min=0.5, r_max=0.5), "LRU needs 0 <= r_min < r_max <= 1"),
        (lambda: LRUBlock(4, max_phase=7.0), r"LRU max_phase must lie in \(0, 2\*pi\]"),
        (lambda: LRUBlock(4, max_phase=0.0), r"LRU max_phase must lie in \(0, 2\*pi\]"),
        (
            lambda: RNN(MinGRUCell(4), path="parallel"),
            "path must be one of 'fused', 'autodiff', 'remat', 'newton', 'quasi_newton', 'sequential', 'associative'",
        ),
    ],
)
def test_bad_options_are_one_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_nonlinear_cell_cannot_be_evaluated_associatively():
    from rnnlab import LSTMCell

    with pytest.raises(
        ValueError,
        match="path='associative' does not apply to LSTMCell: it runs 'fused', 'autodiff', 'remat', 'newton', 'quasi_newton'",
    ):
        RNN(LSTMCell(4), path="associative")
    # nothing a linear cell cannot use is silently dropped: the sequential cells' paths, and unroll without a scan
    for path in ("fused", "autodiff", "remat"):
        with pytest.raises(
            ValueError, match=f"path='{path}' does not apply to LRUBlock: it runs 'sequential', 'associative'"
        ):
            RNN(LRUBlock(8), path=path)
    with pytest.raises(ValueError, match="scan_unroll=8 does not apply to path='associative'"):
        RNN(LRUBlock(8), path="associative", scan_unroll=8)


def test_the_linear_models_train_in_the_scripts_by_name(tmp_path):
    """`--models lru mingru minlstm` in the copy task and the adding problem: trained, evaluated,
    and each one's gradient profile (copy) finite."""
    from conftest import load_script

    names = ["lru", "mingru", "minlstm"]
    common = ["--quick", "--quiet", "--compile-cache", "off", "--steps", "20", "--seeds", "2", "--models", *names]
    copy = load_script("copy_memory").main([*common, "--lengths", "6", "--hidden", "8", "--out", str(tmp_path / "c")])
    adding = load_script("adding_problem").main(
        [*common, "--seq-len", "12", "--hidden", "8", "--out", str(tmp_path / "a")]
    )
    for name in names:
        assert len(copy["final_loss"][name]["6"]["per_seed"]) == 2
        assert np.all(np.isfinite(copy["gradient_norms"][name]["6"]["init"]))
        assert np.isfinite(adding["models"][name]["points"][0]["test_mse"]["median"])


def test_the_scripts_flags_reach_the_lru_ring_and_the_path(capsys):
    """`--cell-options lru=r_min:..,r_max:..` sets the ring the LRU is initialised on, and
    `--model-path lru=associative` reaches the LRU alone (the LSTM in the same run keeps its
    default, fused); a path a model cannot run is one line."""
    from conftest import load_script

    from rnnlab.experiment import model_spec, parse_config

    script = load_script("copy_memory")
    argv = ["--models", "lru", "lstm", "--cell-options", "lru=r_min:0.9,r_max:0.95", "--model-path", "lru=associative"]
    cfg = parse_config(script.Config, argv)
    lru, lstm = model_spec(cfg, "lru"), model_spec(cfg, "lstm")
    layer = lru.layer()
    lam = layer.cell.eigenvalues(layer.init(jax.random.key(0), 10)["l0"]["fwd"])
    assert 0.9 - 1e-6 <= np.hypot(lam.re, lam.im).min() and np.hypot(lam.re, lam.im).max() <= 0.95 + 1e-6
    assert layer.path == "associative" and lstm.layer().path is None and lstm.resolved_path() == "fused"
    with pytest.raises(SystemExit):
        parse_config(script.Config, ["--models", "lstm", "--model-path", "lstm=associative"])
    assert "--model-path lstm: path='associative' does not apply to LSTMCell" in capsys.readouterr().err
    assert model_spec(parse_config(script.Config, ["--models", "lru"]), "lru").layer().cell.r_min == 0.0


@pytest.mark.parametrize("name", ["lru", "mingru"])
def test_bfloat16_runs_on_both_paths_without_warnings(name):
    """A half-precision layer keeps the linear state in float32, as the sequential cells do: no
    dtype-mixing scatter, and the associative path's complex scan in complex64."""
    import warnings

    cell = {"lru": LRUBlock(8), "mingru": MinGRUCell(8)}[name]
    x = jax.random.normal(jax.random.key(3), (2, 40, 3))
    params = RNN(cell).init(jax.random.key(0), 3)
    outputs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for path in ("sequential", "associative"):
            outputs[path] = RNN(cell, path=path, dtype="bfloat16").apply(params, x)[0]
    full = RNN(cell, path="sequential").apply(params, x)[0]
    np.testing.assert_allclose(outputs["associative"], outputs["sequential"], atol=1e-2)
    assert float(jnp.max(jnp.abs(outputs["sequential"] - full))) < 0.2  # bf16 params and inputs
