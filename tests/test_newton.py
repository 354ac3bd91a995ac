"""The newton and quasi_newton paths (rnnlab.newton) against the sequential scan, finite
differences, and their own promises: one iteration for a linear cell, an error on chaos."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import RNN, ElmanCell, GRUCell, LSTMCell, diagnostics, unroll
from rnnlab.cells import CoRNNCell, IndRNNCell
from rnnlab.newton import NewtonOptions

NEWTON = ("newton", "quasi_newton")
CELLS = {
    "tanh": lambda: ElmanCell(6),
    "modrelu": lambda: ElmanCell(6, activation="modrelu", use_bias=False),
    "lstm": lambda: LSTMCell(5),
    "gru": lambda: GRUCell(5),
    "indrnn": lambda: IndRNNCell(5, t_max=20),
    "cornn": lambda: CoRNNCell(5),
}


def scaled_error(actual, expected):
    """``max |a - e|`` over every leaf, relative to the leaf's scale when that exceeds 1."""
    return max(
        float(jnp.max(jnp.abs(a - e)) / max(1.0, float(jnp.max(jnp.abs(e)))))
        for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True)
    )


def outputs_and_gradients(layer, params, x, lengths, carry0):
    """Outputs, final carry and the gradient of a loss of both w.r.t. params, inputs and h_0."""

    def loss(params, x, carry0):
        y, final = layer.apply(params, x, lengths, carry0)
        return jnp.sum(jnp.sin(3 * y)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(final))

    outputs = jax.jit(lambda params, x, carry0: layer.apply(params, x, lengths, carry0))(params, x, carry0)
    return outputs, jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, x, carry0)


@pytest.mark.parametrize("path", NEWTON)
@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_equals_the_sequential_scan_with_gradients(path, name, dtype):
    """Outputs, final carry and every gradient (params, x, h_0) as the sequential scan's: lengths,
    a nonzero initial carry, a bidirectional layer (so the valid-prefix reverse too), stacked
    in float64 (one layer in float32, to keep the suite's compile time down)."""
    with jax.enable_x64(dtype == "float64"):
        cell = CELLS[name]()
        x = jax.random.normal(jax.random.key(1), (3, 16, 2), dtype)
        lengths = jnp.array([16, 5, 1])
        num_layers = 2 if dtype == "float64" else 1
        reference = RNN(cell, num_layers=num_layers, bidirectional=True, path="autodiff")
        params = reference.init(jax.random.key(0), 2, dtype)
        carry0 = jax.tree.map(lambda c: c + 0.1, reference.initial_carry(3, dtype))
        expected = outputs_and_gradients(reference, params, x, lengths, carry0)
        layer = RNN(
            cell, num_layers=num_layers, bidirectional=True, path=path, newton_options=NewtonOptions(max_iter=60)
        )
        actual = outputs_and_gradients(layer, params, x, lengths, carry0)
        assert scaled_error(actual, expected) <= (1e-10 if dtype == "float64" else 1e-5)
        assert float(jnp.max(jnp.abs(actual[0][0][1, 5:]))) == 0.0  # padding is zero


@pytest.mark.parametrize("path", NEWTON)
def test_gradients_match_finite_differences(path):
    with jax.enable_x64(True):
        cell = GRUCell(4)
        params = cell.init(jax.random.key(0), 3, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 12, 3), jnp.float64)
        loss = jax.jit(lambda p: jnp.sum(jnp.tanh(unroll(cell, p, x, lengths=jnp.array([12, 7]), path=path)[0]) ** 2))
        grads = jax.jit(jax.grad(loss))(params)
        direction = jax.tree.map(lambda p: jax.random.normal(jax.random.key(2), p.shape, p.dtype), params)
        step = 1e-6
        shifted = lambda s: loss(jax.tree.map(lambda p, d: p + s * d, params, direction))
        finite_difference = (shifted(step) - shifted(-step)) / (2 * step)
        analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        np.testing.assert_allclose(float(analytic), float(finite_difference), rtol=1e-7)


@pytest.mark.parametrize("path", NEWTON)
def test_hidden_perturbation_gives_the_gradient_profile(path):
    """The main job's diagnostic runs on the Newton paths: dL/dh_t for every t as the scan's."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(1), (2, 20, 3), jnp.float64)
        reference = RNN(LSTMCell(4), path="autodiff")
        params = reference.init(jax.random.key(0), 3, jnp.float64)
        loss = lambda y: jnp.sum(y[:, -1] ** 2)
        profile = lambda layer: diagnostics.gradient_profile(layer, params, loss, x, jacobian=False)
        expected, actual = profile(reference), profile(RNN(LSTMCell(4), path=path))
        assert scaled_error(actual, expected) <= 1e-10


def test_a_linear_cell_takes_one_iteration():
    with jax.enable_x64(True):
        cell = ElmanCell(8, activation="linear")
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 200, 2), jnp.float64)
        y, _, info = unroll(cell, params, x, path="newton", return_info=True)
        assert int(info.iterations) == 1 and bool(info.converged)
        np.testing.assert_allclose(y, unroll(cell, params, x, path="autodiff")[0], atol=1e-12)


def test_a_warm_start_at_the_solution_takes_no_iteration():
    with jax.enable_x64(True):
        cell = LSTMCell(4)
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 30, 2), jnp.float64)
        y, _ = unroll(cell, params, x, path="autodiff")
        # the trajectory of carries, as the outputs are laid out: c_t from the scan's own steps
        carries = jax.lax.scan(
            lambda c, x_t: (cell.step(params, c, x_t)[0],) * 2, cell.initial_carry((2,), x.dtype), jnp.swapaxes(x, 0, 1)
        )[1]
        guess = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), carries)
        _, _, cold = unroll(cell, params, x, path="newton", return_info=True)
        _, _, warm = unroll(cell, params, x, path="newton", initial_guess=guess, return_info=True)
        assert int(warm.iterations) == 0 < int(cold.iterations)
        with pytest.raises(ValueError, match="initial_guess"):
            unroll(cell, params, x, path="newton", initial_guess=jax.tree.map(lambda a: a[:, :5], guess))


def test_chaotic_dynamics_raise_one_line_naming_the_fix():
    with jax.enable_x64(True):
        cell = ElmanCell(16, spectral_radius=3.0)  # lambda_1 > 0
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 300, 2), jnp.float64)
        options = NewtonOptions(max_iter=10)
        with pytest.raises(ValueError, match=r"residual .* after 10 iterations .*fallback=True") as raised:
            unroll(cell, params, x, path="newton", newton_options=options)
        assert "\n" not in str(raised.value)
        with pytest.raises(Exception, match="did not reach the tolerance"):  # under jit: from the runtime
            jax.jit(lambda p: unroll(cell, p, x, path="newton", newton_options=options)[0])(params).block_until_ready()
        # asked for explicitly: the sequential result instead
        fallback = unroll(cell, params, x, path="newton", newton_options=NewtonOptions(max_iter=10, fallback=True))[0]
        np.testing.assert_array_equal(fallback, unroll(cell, params, x, path="fused")[0])


def test_damping_reaches_the_same_trajectory():
    with jax.enable_x64(True):
        cell = GRUCell(6)
        params = cell.init(jax.random.key(0), 2, jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 50, 2), jnp.float64)
        y, _, info = unroll(cell, params, x, path="newton", newton_options=NewtonOptions(damping=0.5), return_info=True)
        _, _, plain = unroll(cell, params, x, path="newton", return_info=True)
        assert int(info.iterations) > int(plain.iterations)
        np.testing.assert_allclose(y, unroll(cell, params, x, path="autodiff")[0], atol=1e-10)


def test_options_are_refused_where_they_do_nothing():
    cell = GRUCell(4)
    params = cell.init(jax.random.key(0), 2)
    x = jnp.ones((1, 3, 2))
    with pytest.raises(ValueError, match="newton_options apply to paths"):
        RNN(cell, path="fused", newton_options=NewtonOptions())
    with pytest.raises(ValueError, match="scan_unroll=2 does not apply to path='quasi_newton'"):
        RNN(cell, path="quasi_newton", scan_unroll=2)
    with pytest.raises(ValueError, match="return_info applies to paths"):
        unroll(cell, params, x, return_info=True)
    with pytest.raises(ValueError, match="damping must lie in"):
        NewtonOptions(damping=1.0)
    with pytest.raises(ValueError, match="tol must be a positive"):
        NewtonOptions(tol=0.0)


def test_the_experiment_records_iterations_against_lambda_1(tmp_path):
    """experiments/parallel_newton.py --quick: the flat records the docs quote, and the claim's
    direction: contracting dynamics converge to the scan's trajectory, chaotic ones do not."""
    from conftest import load_script

    results = load_script("parallel_newton").main(["--quick", "--quiet", "--out", str(tmp_path)])
    runs = results["runs"]
    keys = {"model", "radius", "T", "phase", "lambda_1", "method", "iterations", "converged", "max_error_vs_sequential"}
    assert all(keys <= set(r) for r in runs) and (tmp_path / "iterations_vs_lambda.png").is_file()
    assert {r["model"] for r in runs} == {"tanh", "rnn", "lstm", "gru"}
    assert {r["phase"] for r in runs if r["model"] == "gru"} == {"init", "trained"}
    contracting = [r for r in runs if r["lambda_1"] < -0.1]  # residual 1e-8, amplified by at most ~1/(1 - e^-0.1)
    assert contracting and all(r["converged"] and r["max_error_vs_sequential"] <= 1e-6 for r in contracting)
    newton = {r["T"]: r for r in runs if r["model"] == "tanh" and r["radius"] == 1.0 and r["method"] == "newton"}
    assert all(r["iterations"] < 10 for r in newton.values())  # few, whatever T
    chaotic = [r for r in runs if r["lambda_1"] > 0.05 and r["T"] == 200]
    assert chaotic and not any(r["converged"] for r in chaotic)
