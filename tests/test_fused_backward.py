"""The fused custom VJP (the default gradient) against JAX's own derivative of the scan."""

import jax
import jax.numpy as jnp
import pytest

from rnnlab import RNN, ElmanCell, GRUCell, LSTMCell

B, T, I, H = 3, 7, 4, 5
CELLS = {
    "rnn": ElmanCell(H),
    "relu": ElmanCell(H, activation="relu"),
    "lstm": LSTMCell(H, forget_bias=1.0),
    "gru": GRUCell(H),
    "nobias": LSTMCell(H, use_bias=False),
    "gru_nobias": GRUCell(H, use_bias=False),
}


@pytest.mark.parametrize("lengths", [None, [7, 1, 4]], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("name", CELLS)
def test_fused_equals_autodiff(name, bidirectional, lengths, assert_close):
    layers = {
        kind: RNN(CELLS[name], num_layers=2, bidirectional=bidirectional, backward=kind)
        for kind in ("fused", "autodiff")
    }
    params = layers["fused"].init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    carry0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape), layers["fused"].initial_carry(B))
    lengths = None if lengths is None else jnp.array(lengths)
    r_out = jax.random.normal(jax.random.key(3), (B, T, layers["fused"].output_size))

    def loss(params, x, carry0, kind):
        out, final = layers[kind].apply(params, x, lengths, carry0)
        return jnp.sum(out * r_out) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(final))

    values = {}
    for kind in ("fused", "autodiff"):
        values[kind] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)), static_argnums=3)(params, x, carry0, kind)
    assert_close("fused vs autodiff: loss", values["fused"][0], values["autodiff"][0], atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(values["fused"][1]), jax.tree.leaves(values["autodiff"][1])):
        assert_close("fused vs autodiff: gradients", a, b, atol=1e-5, rtol=1e-4)


def test_bad_backward_name():
    with pytest.raises(ValueError, match="backward must be 'fused' or 'autodiff'"):
        RNN(GRUCell(H), backward="manual")


def test_default_gradient_is_the_fused_one():
    assert RNN(LSTMCell(H)).backward == "fused"


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_forward_mode_needs_autodiff_and_agrees(name, assert_close):
    """jax.jacfwd cannot see through a custom VJP; the autodiff path gives it, equal to jacrev of the default."""
    params = RNN(CELLS[name]).init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    apply = lambda kind: lambda x: RNN(CELLS[name], backward=kind).apply(params, x)[0][:, -1].sum()
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jacfwd(apply("fused"))(x)
    assert_close(
        "jacfwd(autodiff) vs jacrev(fused)",
        jax.jacfwd(apply("autodiff"))(x),
        jax.jacrev(apply("fused"))(x),
        atol=1e-6,
        rtol=1e-5,
    )
