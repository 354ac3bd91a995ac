"""Stacked/bidirectional layers: dropout, initial states, torch state_dict export, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import RNN, ElmanCell, GRUCell, LSTMCell, LSTMState, unroll

B, T, I, H = 3, 5, 4, 6


def test_bidirectional_is_forward_and_valid_prefix_reversed_backward():
    layer = RNN(GRUCell(H), bidirectional=True)
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    lengths = np.array([5, 2, 3])
    out, h_n = layer.apply(params, x, lengths)
    fwd, h_f = unroll(layer.cell, params["l0"]["fwd"], x, lengths=lengths)
    # backward pass by hand: reverse each valid prefix, run forward, reverse back
    bwd_outputs, bwd_final = np.zeros((B, T, H)), []
    for b, L in enumerate(lengths):
        y, h = unroll(layer.cell, params["l0"]["bwd"], x[b : b + 1, :L][:, ::-1])
        bwd_outputs[b, :L] = np.asarray(y[0, ::-1])
        bwd_final.append(h[0])
    np.testing.assert_allclose(out, np.concatenate([fwd, bwd_outputs], -1), atol=1e-6)
    np.testing.assert_allclose(h_n, np.stack([h_f, np.stack(bwd_final)]), atol=1e-6)


def test_dropout_only_between_layers_and_only_with_a_key():
    layer = RNN(LSTMCell(H), num_layers=3, dropout=0.5)
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    out_eval, _ = layer.apply(params, x)
    out_a, _ = layer.apply(params, x, dropout_key=jax.random.key(2))
    out_b, _ = layer.apply(params, x, dropout_key=jax.random.key(3))
    assert not np.allclose(out_a, out_eval) and not np.allclose(out_a, out_b)
    # No dropout after the last layer: its outputs are tanh-bounded LSTM outputs, never
    # rescaled by 1/(1-p), and none is zeroed by a mask.
    assert np.abs(np.asarray(out_a)).max() < 1.0 and np.all(np.asarray(out_a) != 0.0)
    # A single layer has nothing to drop between.
    single = RNN(LSTMCell(H), num_layers=1, dropout=0.5)
    p1 = single.init(jax.random.key(0), I)
    np.testing.assert_array_equal(single.apply(p1, x)[0], single.apply(p1, x, dropout_key=jax.random.key(2))[0])


def test_initial_carry_is_used_per_layer_and_direction():
    layer = RNN(LSTMCell(H), num_layers=2, bidirectional=True)
    params = layer.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I))
    zero = layer.initial_carry(B)
    assert isinstance(zero, LSTMState) and zero.h.shape == (4, B, H)
    carry = LSTMState(zero.h.at[3].set(1.0), zero.c)  # layer 1, backward direction
    out0, fin0 = layer.apply(params, x)
    out1, fin1 = layer.apply(params, x, initial_carry=carry)
    np.testing.assert_array_equal(fin0.h[:3], fin1.h[:3])
    assert not np.allclose(fin0.h[3], fin1.h[3])


def test_state_dict_loads_into_torch_and_reproduces_outputs():
    torch = pytest.importorskip("torch")
    from rnnlab.interop.torch import to_torch_state_dict

    layer = RNN(GRUCell(H), num_layers=2, bidirectional=True, batch_first=True)
    params = layer.init(jax.random.key(0), I)  # trained-in-rnnlab weights, not from torch
    module = torch.nn.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True)
    module.load_state_dict(to_torch_state_dict(layer, params))
    x = np.random.default_rng(0).normal(size=(B, T, I)).astype(np.float32)
    out_t, h_t = module(torch.from_numpy(x))
    out_j, h_j = layer.apply(params, x)
    np.testing.assert_allclose(out_j, out_t.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(h_j, h_t.detach().numpy(), atol=1e-5)


def test_from_torch_rejects_other_modules():
    torch = pytest.importorskip("torch")
    from rnnlab.interop.torch import from_torch

    with pytest.raises(TypeError, match="expected torch.nn.RNN, nn.LSTM or nn.GRU, got Linear"):
        from_torch(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(torch.nn.LSTM(2, 4, proj_size=2))


# -- bad input: clear errors, before tracing ----------------------------------


@pytest.fixture(scope="module")
def lstm_layer():
    layer = RNN(LSTMCell(H), num_layers=2)
    return layer, layer.init(jax.random.key(0), I)


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(x=np.zeros((T, I), np.float32)), ValueError, r"inputs must have rank 3 \[B, T, I\], got shape \(5, 4\)"),
        (
            dict(x=np.zeros((B, T, I + 1), np.float32)),
            ValueError,
            "feature size 5 but the parameters expect input_size=4",
        ),
        (dict(x=np.zeros((B, T, I), np.int32)), TypeError, "inputs must be floating point, got dtype int32"),
        (dict(lengths=np.array([1, 2])), ValueError, r"lengths must have shape \(B,\) = \(3,\), got \(2,\)"),
        (dict(lengths=np.array([[1, 2, 3]])), ValueError, r"lengths must have shape \(B,\)"),
        (dict(lengths=np.array([1.0, 2.0, 3.0])), TypeError, "lengths must be integers, got dtype float64"),
        (dict(lengths=np.array([5, 0, 3])), ValueError, r"lengths must lie in 1..T = 1..5; lengths\[1\] = 0"),
        (dict(lengths=np.array([5, 6, 3])), ValueError, r"lengths\[1\] = 6"),
        (
            dict(initial_carry=LSTMState(jnp.zeros((2, B, H)), jnp.zeros((2, B, H + 1)))),
            ValueError,
            r"initial_carry.c has shape \(2, 3, 7\), expected \(2, 3, 6\)",
        ),
        (dict(initial_carry=jnp.zeros((2, B, H))), ValueError, "initial_carry has structure"),
    ],
    ids=[
        "rank",
        "features",
        "int-input",
        "lengths-shape",
        "lengths-rank",
        "lengths-float",
        "lengths-zero",
        "lengths-too-long",
        "carry-shape",
        "carry-structure",
    ],
)
def test_bad_input_raises_clear_error(lstm_layer, kwargs, error, message):
    layer, params = lstm_layer
    args = dict(x=np.zeros((B, T, I), np.float32), lengths=None, initial_carry=None) | kwargs
    with pytest.raises(error, match=message):
        layer.apply(params, args["x"], args["lengths"], args["initial_carry"])


def test_params_for_another_layer_are_rejected(lstm_layer):
    layer, _ = lstm_layer
    gru_params = RNN(GRUCell(H), num_layers=2).init(jax.random.key(0), I)
    with pytest.raises(ValueError, match=r"params\['l0'\]\['fwd'\]\['w_hh'\] has shape \(18, 6\), expected \(24, 6\)"):
        layer.apply(gru_params, np.zeros((B, T, I), np.float32))
    with pytest.raises(ValueError, match="params must be a dict"):
        unroll(ElmanCell(H), {"w": 1}, np.zeros((B, T, I), np.float32))


@pytest.mark.parametrize(
    "bad, message",
    [
        (jnp.zeros(H - 1), r"params\['l0'\]\['fwd'\]\['b_mod'\] has shape \(5,\), expected \(6,\)"),
        (jnp.zeros((H, 1)), r"params\['l0'\]\['fwd'\]\['b_mod'\] has shape \(6, 1\), expected \(6,\)"),
        (None, r"params has structure .* expected .*'b_mod'"),
    ],
    ids=["short", "rank-2", "missing"],
)
def test_a_modrelu_bias_of_the_wrong_shape_is_an_error(bad, message):
    """modReLU's bias is elementwise ([H]): a wrong one would broadcast silently inside the step."""
    from rnnlab.zoo import make_layer

    layer = make_layer("exprnn", H)  # the Orthogonal wrapper checks too
    params = layer.init(jax.random.key(0), I)
    if bad is None:
        del params["l0"]["fwd"]["b_mod"]
    else:
        params["l0"]["fwd"]["b_mod"] = bad
    with pytest.raises(ValueError, match=message):
        layer.apply(params, np.zeros((B, T, I), np.float32))


def test_lengths_values_are_checked_under_jit_only_for_shape(lstm_layer):
    """Inside jit the values are tracers: shape and dtype are still checked."""
    layer, params = lstm_layer
    f = jax.jit(lambda x, lengths: layer.apply(params, x, lengths)[0])
    with pytest.raises(ValueError, match=r"lengths must have shape"):
        f(jnp.zeros((B, T, I)), jnp.ones((B + 1,), jnp.int32))


@pytest.mark.parametrize("cell", [LSTMCell(16), GRUCell(16)], ids=["lstm", "gru"])
def test_bfloat16_computation_is_float32_within_bfloat16_tolerance(cell):
    """Flax's dtype / param_dtype convention: float32 params computed in bfloat16 (a two-layer
    bidirectional stack), the carry kept in float32; outputs and gradients near float32's."""
    ref = RNN(cell, num_layers=2, bidirectional=True)
    params = ref.init(jax.random.key(0), 4)
    x = jax.random.normal(jax.random.key(1), (3, 40, 4))
    half = RNN(cell, num_layers=2, bidirectional=True, dtype=jnp.bfloat16)
    y, final = half.apply(params, x)
    assert y.dtype == jnp.float32 and all(c.dtype == jnp.float32 for c in jax.tree.leaves(final))
    np.testing.assert_allclose(y, ref.apply(params, x)[0], atol=2e-2)
    loss = lambda layer, p, xs: jnp.sum(layer.apply(p, xs)[0] ** 2)
    grads, want = jax.grad(lambda p: loss(half, p, x))(params), jax.grad(lambda p: loss(ref, p, x))(params)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
        assert g.dtype == jnp.float32
        assert float(jnp.max(jnp.abs(g - w))) <= 2e-2 * float(jnp.max(jnp.abs(w)))
    # bfloat16 inputs with float32 params and no declared dtype: promoted, as Flax does
    y_promoted, _ = ref.apply(params, x.astype(jnp.bfloat16))
    np.testing.assert_allclose(y_promoted, ref.apply(params, x.astype(jnp.bfloat16).astype(jnp.float32))[0])


def test_unroll_with_mixed_dtypes_is_a_clear_error():
    cell = LSTMCell(8)
    params = cell.init(jax.random.key(0), 4)
    with pytest.raises(TypeError, match="inputs are bfloat16 and params float32: unroll computes in one dtype"):
        unroll(cell, params, jnp.ones((2, 5, 4), jnp.bfloat16))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"reverse": True, "bidirectional": True}, "reverse=True makes one backward direction"),
        ({"dtype": jnp.int32}, "dtype must be a floating-point dtype"),
    ],
)
def test_contradictory_layer_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        RNN(LSTMCell(4), **options)
