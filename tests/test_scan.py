"""The scan's length semantics: masking, lengths equal to T, program size, finite
differences.  The agreement of the execution paths is tests/test_paths.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from rnnlab import RNN, ElmanCell, GRUCell, LSTMCell, unroll

CELLS = {
    "elman_tanh": ElmanCell(5),
    "elman_relu": ElmanCell(5, activation="relu"),
    "lstm": LSTMCell(5, forget_bias=1.0),
    "gru": GRUCell(5),
    "hidden1": LSTMCell(1),
}
B, T, I = 4, 9, 3
LENGTHS = np.array([9, 1, 5, 3])
TOL = dict(atol=1e-5, rtol=1e-5)


def setup(cell, seed=0, dtype=jnp.float32):
    k_p, k_x, k_c = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_p, I, dtype)
    x = jax.random.normal(k_x, (B, T, I), dtype)
    carry0 = jax.tree.map(lambda z: jax.random.normal(k_c, z.shape, dtype), cell.initial_carry((B,), dtype))
    return params, x, carry0


def test_lengths_equal_to_T_match_no_lengths():
    cell = CELLS["gru"]
    params, x, _ = setup(cell)
    out_a, final_a = unroll(cell, params, x, reverse=True)
    out_b, final_b = unroll(cell, params, x, reverse=True, lengths=np.full(B, T))
    np.testing.assert_allclose(out_a, out_b, **TOL)
    np.testing.assert_allclose(final_a, final_b, **TOL)


@pytest.mark.parametrize("num_steps", [10, 1000])
def test_program_size_does_not_grow_with_T(num_steps):
    """No Python loop over time: the traced program has the same size for any T."""
    cell = LSTMCell(4)
    params = cell.init(jax.random.key(0), 2)

    def count(T):
        x = jnp.zeros((2, T, 2))
        fn = lambda p, x: jnp.sum(unroll(cell, p, x, lengths=jnp.array([T, 1]))[0])
        return len(jax.make_jaxpr(jax.grad(fn))(params, x).eqns)

    assert count(num_steps) == count(3)


# -- masking: values at padded positions never matter -------------------------


@pytest.fixture(scope="module")
def masked_fns():
    layer = RNN(LSTMCell(3), num_layers=2, bidirectional=True)
    params = layer.init(jax.random.key(1), I)

    @jax.jit
    def run(params, x, lengths):
        def loss(params, x):
            out, final = layer.apply(params, x, lengths)
            return jnp.sum(jnp.sin(out)) + jnp.sum(final.h * final.c), (out, final)

        (_, (out, final)), (g_params, g_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, x)
        return out, final, g_params, g_x

    return params, run


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, T), min_size=B, max_size=B),
    seed=st.integers(0, 2**31 - 1),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_padding_values_change_nothing(masked_fns, lengths, seed, scale):
    params, run = masked_fns
    lengths = np.array(lengths)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, I)).astype(np.float32)
    pad_bt = np.arange(T)[None, :] >= lengths[:, None]
    x_other = np.where(pad_bt[..., None], scale * rng.normal(size=x.shape), x).astype(np.float32)
    a, b = run(params, x, lengths), run(params, x_other, lengths)
    for leaf_a, leaf_b in zip(jax.tree.leaves(a[:3]), jax.tree.leaves(b[:3])):  # outputs, final, grads
        np.testing.assert_array_equal(leaf_a, leaf_b)
    g_x_a, g_x_b = np.asarray(a[3]), np.asarray(b[3])
    np.testing.assert_array_equal(g_x_a, g_x_b)
    assert np.all(g_x_a[pad_bt] == 0.0)
    assert np.all(np.asarray(a[0])[pad_bt] == 0.0)


# -- finite differences in float64 --------------------------------------------


@pytest.mark.parametrize("backward", ["fused", "autodiff"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru"])
def test_gradients_match_finite_differences(name, lengths, backward):
    with jax.enable_x64(True):
        layer = RNN(CELLS[name], num_layers=2, bidirectional=True, path=backward)
        params = layer.init(jax.random.key(2), I, jnp.float64)
        x = jax.random.normal(jax.random.key(3), (B, T, I), jnp.float64)

        @jax.jit
        def f(params, x):
            out, final = layer.apply(params, x, lengths)
            return jnp.sum(out**2) + jnp.sum(jax.tree.leaves(final)[0])

        check_grads(f, (params, x), order=1, modes=("rev",), eps=1e-6, atol=1e-7, rtol=1e-7)
