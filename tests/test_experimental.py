"""rnnlab.experimental: each path equals RNN.apply (one scan per layer and direction) in values
and gradients, and refuses the layers it cannot run."""

import functools

import jax
import jax.numpy as jnp
import pytest

from rnnlab import RNN, ElmanCell, GRUCell, LSTMCell
from rnnlab.experimental import apply_one_scan, apply_wavefront

B, T, I, H = 3, 5, 4, 6


@pytest.mark.parametrize(
    "cell, backward",
    [(LSTMCell(H), "fused"), (GRUCell(H), "fused"), (ElmanCell(H), "autodiff")],
    ids=["lstm", "gru", "rnn-autodiff"],
)
def test_both_directions_in_one_scan_equal_one_scan_per_direction(cell, backward, assert_close):
    """apply_one_scan (unroll_both_directions: one vmapped scan per layer) against RNN.apply
    (one scan per direction), values and gradients: lengths, initial carry, dropout between
    layers; with a hidden perturbation too (the diagnostics' path)."""
    layer = RNN(cell, num_layers=2, bidirectional=True, dropout=0.3, path=backward)
    one_scan, reference = functools.partial(apply_one_scan, layer), layer.apply
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    lengths = jnp.array([5, 2, 3])
    carry0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape), layer.initial_carry(B))
    eps = jnp.zeros((4, B, T, H))

    def loss(apply):
        def f(p, x, c0, eps):
            out, final = apply(p, x, lengths, c0, dropout_key=jax.random.key(3), hidden_perturbation=eps)
            return jnp.sum(jnp.sin(out)) + sum(jnp.sum(a**2) for a in jax.tree.leaves(final))

        return f

    flat = lambda tree: jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])
    for perturb, argnums in ((None, (0, 1, 2)), (eps, (0, 1, 2, 3))):  # with eps: dL/dh_t too
        args = (params, x, carry0, perturb)
        got = jax.jit(jax.value_and_grad(loss(one_scan), argnums=argnums))(*args)
        want = jax.jit(jax.value_and_grad(loss(reference), argnums=argnums))(*args)
        assert_close("one scan per layer: loss", got[0], want[0], atol=1e-5, rtol=1e-6)
        assert_close("one scan per layer: gradients", flat(got[1]), flat(want[1]), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "cell, input_size, batch_first, backward",
    [(LSTMCell(H), I, True, "fused"), (GRUCell(H), 9, False, "fused"), (ElmanCell(H), I, True, "autodiff")],
    ids=["lstm", "gru-wide-input-time-major", "rnn-autodiff"],
)
def test_layer_wavefront_equals_layer_after_layer(cell, input_size, batch_first, backward, assert_close):
    """apply_wavefront (one scan of T + L - 1 steps, its fused VJP or JAX's derivative)
    against RNN.apply (layer after layer), values and gradients: lengths, initial carry,
    dropout between layers, an input wider or narrower than H, batch- and time-major."""
    layer = RNN(cell, num_layers=3, dropout=0.3, batch_first=batch_first, path=backward)
    wavefront, reference = functools.partial(apply_wavefront, layer), layer.apply
    params = layer.init(jax.random.key(0), input_size)
    x = jax.random.normal(jax.random.key(1), (B, T, input_size) if batch_first else (T, B, input_size))
    lengths = jnp.array([5, 2, 3])
    carry0 = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape), layer.initial_carry(B))

    def loss(apply):
        def f(p, x, c0):
            out, final = apply(p, x, lengths, c0, dropout_key=jax.random.key(3))
            return jnp.sum(jnp.sin(out)) + sum(jnp.sum(a**2) for a in jax.tree.leaves(final))

        return f

    flat = lambda tree: jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])
    got = jax.jit(jax.value_and_grad(loss(wavefront), argnums=(0, 1, 2)))(params, x, carry0)
    want = jax.jit(jax.value_and_grad(loss(reference), argnums=(0, 1, 2)))(params, x, carry0)
    assert_close("wavefront: loss", got[0], want[0], atol=1e-5, rtol=1e-6)
    assert_close("wavefront: gradients", flat(got[1]), flat(want[1]), atol=1e-5, rtol=1e-5)
    out, final = wavefront(params, x, lengths)
    want_out, want_final = reference(params, x, lengths)
    assert_close("wavefront: outputs", out, want_out, atol=1e-6, rtol=1e-6)
    assert_close("wavefront: final carry", flat(final), flat(want_final), atol=1e-6, rtol=1e-6)
    assert float(jnp.max(jnp.abs(out if batch_first else jnp.swapaxes(out, 0, 1))[1, 2:])) == 0.0  # padding


def test_each_path_refuses_the_layers_it_cannot_run():
    x = jnp.zeros((B, T, I))
    uni, bi = RNN(GRUCell(H), num_layers=2), RNN(GRUCell(H), num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match="this layer is unidirectional"):
        apply_one_scan(uni, uni.init(jax.random.key(0), I), x)
    with pytest.raises(ValueError, match="a bidirectional stack cannot run as a wavefront"):
        apply_wavefront(bi, bi.init(jax.random.key(0), I), x)
