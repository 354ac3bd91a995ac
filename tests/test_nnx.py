"""rnnlab.nnx: the NNX modules compute what the pure layer computes, train with
nnx.Optimizer, survive nnx.split/merge and an Orbax round trip of nnx.state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from rnnlab import GRUCell, LSTMCell
from rnnlab.data import adding_problem
from rnnlab.nnx import RNN, LanguageModel, Seq2Seq, SequenceClassifier, SequenceRegressor

X = jax.random.normal(jax.random.key(1), (4, 7, 3))
LENGTHS = jnp.array([7, 3, 5, 1])


@pytest.fixture
def model():
    return RNN(LSTMCell(6), input_size=3, num_layers=2, bidirectional=True, dropout=0.0, rngs=nnx.Rngs(0))


def test_outputs_and_gradients_equal_the_pure_layers(model, assert_close):
    layer, params = model.to_pure()
    assert isinstance(model.params["l1"]["bwd"]["w_hh"], nnx.Param)
    assert model.params["l1"]["bwd"]["w_hh"][...].shape == (24, 6)  # PyTorch layout [4H, H]
    out, final = model(X, lengths=LENGTHS)
    want, want_final = layer.apply(params, X, LENGTHS)
    assert_close("nnx outputs", out, want, atol=0, rtol=0)
    assert_close("nnx final h", final.h, want_final.h, atol=0, rtol=0)

    loss = lambda out: jnp.sum(out[0] ** 2) + jnp.sum(out[1].c)
    grads = nnx.grad(lambda m, x: loss(m(x, LENGTHS)), argnums=(0, 1))(model, X)
    want_grads = jax.grad(lambda p, x: loss(layer.apply(p, x, LENGTHS)), argnums=(0, 1))(params, X)
    flat = lambda tree: jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])
    assert jax.tree.structure(nnx.to_pure_dict(grads[0]["params"])) == jax.tree.structure(want_grads[0])
    assert_close(
        "nnx grad params", flat(nnx.to_pure_dict(grads[0]["params"])), flat(want_grads[0]), atol=1e-6, rtol=1e-6
    )
    assert_close("nnx grad input", grads[1], want_grads[1], atol=1e-6, rtol=1e-6)


def test_from_pure_split_merge_and_jit(model):
    layer, params = model.to_pure()
    again = RNN.from_pure(layer, params)
    np.testing.assert_array_equal(again(X)[0], model(X)[0])
    graphdef, state = nnx.split(model)
    merged = nnx.merge(graphdef, state)
    np.testing.assert_array_equal(nnx.jit(lambda m, x: m(x, LENGTHS)[0])(merged, X), model(X, LENGTHS)[0])
    with pytest.raises(ValueError, match=r"params\['l1'\]\['bwd'\]\['w_hh'\] has shape \(18, 6\), expected \(24, 6\)"):
        gru = RNN(GRUCell(6), input_size=3, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
        RNN.from_pure(layer, gru.to_pure()[1])


def test_dropout_between_layers_draws_from_rngs():
    m = RNN(GRUCell(8), input_size=3, num_layers=3, dropout=0.5, rngs=nnx.Rngs(0, dropout=1))
    a, b = m(X)[0], m(X)[0]
    assert not np.allclose(a, b)  # a fresh key per call
    m.eval()
    np.testing.assert_array_equal(m(X)[0], m(X)[0])
    layer, params = m.to_pure()
    np.testing.assert_array_equal(m(X)[0], layer.apply(params, X)[0])  # no dropout when deterministic
    with pytest.raises(ValueError, match=r"dropout=0.5 between layers needs rngs"):
        RNN.from_pure(layer, params)


def test_an_nnx_training_loop_learns_the_adding_problem():
    model = SequenceRegressor(RNN(LSTMCell(16), input_size=2, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x)[:, 0] - y) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    for i in range(300):
        batch = adding_problem((0, i), 32, 10)
        step(model, optimizer, batch["x"], batch["y"])
    test = adding_problem((1, 0), 500, 10)
    mse = float(jnp.mean((model(test["x"])[:, 0] - test["y"]) ** 2))
    baseline = float(np.mean((1.0 - test["y"]) ** 2))  # always answering 1
    assert mse < 0.25 * baseline, (mse, baseline)  # measured: 0.025 against 0.168


def test_nnx_state_survives_an_orbax_round_trip(model, tmp_path):
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "state", nnx.state(model))
    checkpointer.wait_until_finished()
    fresh = RNN(LSTMCell(6), input_size=3, num_layers=2, bidirectional=True, rngs=nnx.Rngs(42))
    assert not np.allclose(fresh(X)[0], model(X)[0])
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: fresh))
    nnx.update(fresh, checkpointer.restore(tmp_path / "state", abstract))
    checkpointer.close()
    np.testing.assert_array_equal(fresh(X, LENGTHS)[0], model(X, LENGTHS)[0])


def test_task_models_compose_the_layer():
    rngs = nnx.Rngs(0)
    lm = LanguageModel(11, 5, RNN(GRUCell(8), input_size=5, rngs=rngs), rngs=rngs)
    tokens = jnp.array([[1, 2, 3], [4, 5, 10]])
    logits, final = lm(tokens)
    layer, params = lm.rnn.to_pure()
    want = lm.head(layer.apply(params, lm.embed(tokens))[0])
    np.testing.assert_allclose(logits, want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"vocabulary size 11\); found 11"):
        lm(jnp.array([[1, 11]]))
    clf = SequenceClassifier(11, 5, RNN(LSTMCell(8), input_size=5, bidirectional=True, rngs=rngs), 3, rngs=rngs)
    assert clf(tokens, jnp.array([3, 2])).shape == (2, 3)
    s2s = Seq2Seq(
        11, 7, 5, RNN(GRUCell(8), input_size=5, rngs=rngs), RNN(GRUCell(8), input_size=5, rngs=rngs), rngs=rngs
    )
    assert s2s(tokens, jnp.array([3, 2]), jnp.array([[0, 1], [2, 6]])).shape == (2, 2, 7)


def nnx_from_linen(model, variables):
    """Copy Linen variables into an NNX task model (same names: embed, head, the layer's tree)."""
    p = variables["params"]
    for name, module in vars(model).items():
        if isinstance(module, nnx.Embed):
            module.embedding[...] = p[name]["embedding"]
        elif isinstance(module, nnx.Linear):
            module.kernel[...], module.bias[...] = p["head"]["kernel"], p["head"]["bias"]
    for rnn, scope in ((getattr(model, a, None), b) for a, b in [("rnn", "recurrent"), ("encoder", "encoder_rnn"),
                                                                  ("decoder", "decoder_rnn")]):  # fmt: skip
        if rnn is not None:
            rnn.params = nnx.data(jax.tree.map(nnx.Param, p[scope]["rnn"]))
    return model


@pytest.mark.parametrize("pooling", ["final", "mean"])
def test_task_models_equal_the_linen_ones_with_the_same_params(pooling, assert_close):
    """Linen (rnnlab.linen) and NNX (rnnlab.nnx) task models, same options and params: same outputs,
    lengths, pooling and the hidden perturbation included."""
    from rnnlab import RNN as PureRNN
    from rnnlab import linen

    rngs, V, E = nnx.Rngs(0), 11, 5
    tokens, lengths = jnp.array([[1, 2, 3, 4], [4, 5, 10, 0]]), jnp.array([4, 2])
    nnx_rnn = lambda **kw: RNN(LSTMCell(8), input_size=E, rngs=rngs, **kw)
    pure = lambda **kw: PureRNN(LSTMCell(8), **kw)
    cases = {
        "classifier": (
            linen.SequenceClassifier(V, E, pure(bidirectional=True), 3, pooling=pooling),
            SequenceClassifier(V, E, nnx_rnn(bidirectional=True), 3, pooling=pooling, rngs=rngs),
            (tokens, lengths),
        ),
        "language model": (linen.LanguageModel(V, E, pure()), LanguageModel(V, E, nnx_rnn(), rngs=rngs), (tokens,)),
        "language model, one-hot inputs": (
            linen.LanguageModel(V, None, pure()),
            LanguageModel(V, None, RNN(LSTMCell(8), input_size=V, rngs=rngs), rngs=rngs),
            (tokens,),
        ),
        "regressor": (
            linen.SequenceRegressor(pure(), 2),
            SequenceRegressor(RNN(LSTMCell(8), input_size=3, rngs=rngs), 2, rngs=rngs),
            (X[:2, :4], lengths),
        ),  # fmt: skip
        "seq2seq": (
            linen.Seq2Seq(V, 7, E, pure(), pure()),
            Seq2Seq(V, 7, E, nnx_rnn(), nnx_rnn(), rngs=rngs),
            (tokens, lengths, jnp.array([[0, 1], [2, 6]])),
        ),
    }
    for name, (linen_model, nnx_model, args) in cases.items():
        variables = linen_model.init(jax.random.key(1), *args)
        got, want = nnx_from_linen(nnx_model, variables)(*args), linen_model.apply(variables, *args)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert_close(f"nnx vs linen: {name}", a, b, atol=1e-6, rtol=1e-6)
    eps = 0.1 * jax.random.normal(jax.random.key(2), (1, 2, 4, 8))
    linen_lm, nnx_lm, _ = cases["language model"]
    variables = linen_lm.init(jax.random.key(1), tokens)
    got = nnx_from_linen(nnx_lm, variables)(tokens, hidden_perturbation=eps)[0]
    want = linen_lm.apply(variables, tokens, hidden_perturbation=eps)[0]
    assert_close("nnx vs linen: language model, perturbed", got, want, atol=1e-6, rtol=1e-6)
    assert not np.allclose(want, linen_lm.apply(variables, tokens)[0])  # the perturbation reaches the logits


def test_nnx_rnn_stores_params_in_param_dtype_and_computes_in_dtype():
    from rnnlab import RNN as PureRNN

    m = RNN(LSTMCell(8), 4, dtype=jnp.bfloat16, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    layer, params = m.to_pure()
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params)) and layer.dtype == jnp.bfloat16
    x = jax.random.normal(jax.random.key(1), (2, 6, 4))
    y, _ = m(x)
    want, _ = PureRNN(LSTMCell(8)).apply(params, x.astype(jnp.bfloat16).astype(jnp.float32))
    np.testing.assert_allclose(y, want, atol=2e-2)
    assert y.dtype == jnp.float32
