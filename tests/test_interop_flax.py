"""Weights imported from Flax's own recurrent cells give Flax's outputs; each place where
Flax's formulas differ from PyTorch's is pinned down; what cannot be represented is refused."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rnnlab.interop.flax import from_flax

X = jax.random.normal(jax.random.key(1), (3, 9, 5))
BIAS = nnx.initializers.normal(1.0)  # Flax initialises biases to zero; random ones show where they sit

NNX_CELLS = {
    "SimpleCell": lambda: nnx.SimpleCell(5, 7, bias_init=BIAS, rngs=nnx.Rngs(0)),
    "SimpleCell relu": lambda: nnx.SimpleCell(5, 7, bias_init=BIAS, activation_fn=jax.nn.relu, rngs=nnx.Rngs(0)),
    "LSTMCell": lambda: nnx.LSTMCell(5, 7, bias_init=BIAS, rngs=nnx.Rngs(0)),
    "OptimizedLSTMCell": lambda: nnx.OptimizedLSTMCell(5, 7, bias_init=BIAS, rngs=nnx.Rngs(0)),
    "GRUCell": lambda: nnx.GRUCell(5, 7, bias_init=BIAS, rngs=nnx.Rngs(0)),
}
LINEN_CELLS = {
    "SimpleCell": lambda: nn.SimpleCell(7, bias_init=BIAS),
    "LSTMCell": lambda: nn.LSTMCell(7, bias_init=BIAS),
    "OptimizedLSTMCell": lambda: nn.OptimizedLSTMCell(7, bias_init=BIAS),
    "GRUCell": lambda: nn.GRUCell(7, bias_init=BIAS),
}


def flax_carry_h_c(carry):
    """Flax's final carry as (h, c): an LSTM's is (c, h), the others' is h."""
    return (carry[1], carry[0]) if isinstance(carry, tuple) else (carry, None)


def check_same(layer, params, outputs, carry, assert_close, name):
    got, final = layer.apply(params, X)
    assert_close(f"flax {name}: outputs", got, outputs, atol=1e-6, rtol=1e-5)
    h, c = flax_carry_h_c(carry)
    assert_close(f"flax {name}: final h", layer.cell.carry_hidden(final)[0], h, atol=1e-6, rtol=1e-5)
    if c is not None:
        assert_close(f"flax {name}: final c", final.c[0], c, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", NNX_CELLS)
def test_nnx_cells_import_exactly(name, assert_close):
    module = nnx.RNN(NNX_CELLS[name](), return_carry=True)
    carry, outputs = module(X)
    layer, params = from_flax(module)
    check_same(layer, params, outputs, carry, assert_close, f"nnx.{name}")


@pytest.mark.parametrize("name", LINEN_CELLS)
def test_linen_cells_import_exactly(name, assert_close):
    module = nn.RNN(LINEN_CELLS[name](), return_carry=True)
    variables = module.init(jax.random.key(0), X)
    carry, outputs = module.apply(variables, X)
    layer, params = from_flax(module, variables)
    check_same(layer, params, outputs, carry, assert_close, f"nn.{name}")


def test_where_flax_keeps_its_one_bias():
    """PyTorch has b_ih and b_hh; Flax one bias per gate, on one side or the other."""
    H = 7
    side = {}
    for name, make in NNX_CELLS.items():
        p = from_flax(nnx.RNN(make()))[1]["l0"]["fwd"]
        side[f"nnx.{name}"] = (bool(jnp.any(p["b_ih"] != 0)), bool(jnp.any(p["b_hh"] != 0)))
    for name, make in LINEN_CELLS.items():
        module = nn.RNN(make())
        p = from_flax(module, module.init(jax.random.key(0), X))[1]["l0"]["fwd"]
        side[f"nn.{name}"] = (bool(jnp.any(p["b_ih"] != 0)), bool(jnp.any(p["b_hh"] != 0)))
        if name == "GRUCell":  # a hidden bias for the candidate only: b_hn, inside the reset product
            assert not jnp.any(p["b_hh"][: 2 * H]) and jnp.all(p["b_hh"][2 * H :] != 0)
    assert side == {  # (input side, hidden side)
        "nnx.SimpleCell": (True, False),
        "nnx.SimpleCell relu": (True, False),
        "nnx.LSTMCell": (False, True),
        "nnx.OptimizedLSTMCell": (False, True),
        "nnx.GRUCell": (True, False),
        "nn.SimpleCell": (True, False),
        "nn.LSTMCell": (False, True),
        "nn.OptimizedLSTMCell": (False, True),
        "nn.GRUCell": (True, True),
    }


def test_nnx_gru_has_no_hidden_bias_inside_the_reset_product():
    """NNX's GRU candidate is tanh(W_in x + b_in + r * W_hn h): its b_in must stay outside r.
    Moved inside the reset product (where Linen's and PyTorch's b_hn sit) it changes the output."""
    module = nnx.RNN(NNX_CELLS["GRUCell"]())
    layer, params = from_flax(module)
    H = 7
    np.testing.assert_allclose(layer.apply(params, X)[0], module(X), atol=1e-6)
    p = params["l0"]["fwd"]
    moved = {
        "l0": {"fwd": dict(p, b_ih=p["b_ih"].at[2 * H :].set(0.0), b_hh=p["b_hh"].at[2 * H :].set(p["b_ih"][2 * H :]))}
    }
    assert float(jnp.max(jnp.abs(layer.apply(moved, X)[0] - module(X)))) > 1e-2


def test_linen_gru_is_pytorchs_gru():
    """Linen's GRUCell, imported and loaded into torch.nn.GRU, gives torch's output."""
    torch = pytest.importorskip("torch")
    from rnnlab.interop.torch import to_torch_state_dict

    module = nn.RNN(LINEN_CELLS["GRUCell"]())
    variables = module.init(jax.random.key(0), X)
    layer, params = from_flax(module, variables)
    gru = torch.nn.GRU(5, 7, batch_first=True)
    gru.load_state_dict(to_torch_state_dict(layer, params))
    with torch.no_grad():
        want = gru(torch.from_numpy(np.array(X)))[0].numpy()
    np.testing.assert_allclose(module.apply(variables, X), want, atol=1e-5)


VALID = (jnp.arange(X.shape[1])[None, :] < jnp.array([9, 4, 6])[:, None])[..., None]  # lengths 9, 4, 6


def assert_valid_steps_close(got, want, name, assert_close):
    """Compared where the sequences have data (rnnlab zeroes the padded outputs, Flax does not)."""
    assert_close(name, jnp.where(VALID, got, 0), jnp.where(VALID, want, 0), atol=1e-6, rtol=1e-5)


def nnx_bidirectional(shared: bool):
    forward = nnx.RNN(nnx.GRUCell(5, 7, bias_init=BIAS, rngs=nnx.Rngs(0)))
    backward = forward if shared else nnx.RNN(nnx.GRUCell(5, 7, bias_init=BIAS, rngs=nnx.Rngs(1)))
    module = nnx.Bidirectional(forward, backward)
    return module, None, lambda lengths: module(X, seq_lengths=lengths)


def linen_bidirectional(shared: bool):
    forward = nn.RNN(nn.LSTMCell(7, bias_init=BIAS))
    module = nn.Bidirectional(forward, forward if shared else nn.RNN(nn.LSTMCell(7, bias_init=BIAS)))
    variables = module.init(jax.random.key(0), X)
    return module, variables, lambda lengths: module.apply(variables, X, seq_lengths=lengths)


@pytest.mark.parametrize("make", [nnx_bidirectional, linen_bidirectional])
@pytest.mark.parametrize("shared", [False, True], ids=["two cells", "one shared cell"])
def test_bidirectional_imports_as_rnnlabs_bidirectional_layer(make, shared, assert_close):
    module, variables, flax_outputs = make(shared)
    layer, params = from_flax(module, variables)
    assert layer.bidirectional
    lengths = jnp.array([9, 4, 6])
    assert_valid_steps_close(layer.apply(params, X, lengths)[0], flax_outputs(lengths), "bidirectional", assert_close)


@pytest.mark.parametrize("linen", [False, True], ids=["nnx", "linen"])
def test_reverse_with_keep_order_imports_as_a_backward_direction(linen, assert_close):
    lengths = jnp.array([9, 4, 6])
    if linen:
        module = nn.RNN(nn.GRUCell(7, bias_init=BIAS), reverse=True, keep_order=True, return_carry=True)
        variables = module.init(jax.random.key(0), X)
        carry, outputs = module.apply(variables, X, seq_lengths=lengths)
    else:
        module = nnx.RNN(nnx.GRUCell(5, 7, bias_init=BIAS, rngs=nnx.Rngs(0)), reverse=True, keep_order=True)
        variables, (carry, outputs) = None, module(X, seq_lengths=lengths, return_carry=True)
    layer, params = from_flax(module, variables)
    got, final = layer.apply(params, X, lengths)
    assert layer.reverse
    assert_valid_steps_close(got, outputs, "reverse outputs", assert_close)
    assert_close("reverse final carry", final[0], carry, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("linen", [False, True], ids=["nnx", "linen"])
def test_residual_simple_cell_imports_with_the_identity_in_w_hh(linen, assert_close):
    """``tanh(W_i x + b + W_h h + h) = tanh(W_i x + b + (W_h + I) h)``."""
    if linen:
        module = nn.RNN(nn.SimpleCell(7, residual=True, bias_init=BIAS))
        variables = module.init(jax.random.key(0), X)
        outputs = module.apply(variables, X)
    else:
        module, variables = nnx.RNN(nnx.SimpleCell(5, 7, residual=True, bias_init=BIAS, rngs=nnx.Rngs(0))), None
        outputs = module(X)
    layer, params = from_flax(module, variables)
    assert_close("residual SimpleCell", layer.apply(params, X)[0], outputs, atol=1e-6, rtol=1e-5)


def test_tanh_is_recognised_by_what_it_computes_and_linen_params_need_no_wrapper(assert_close):
    module = nnx.RNN(nnx.GRUCell(5, 7, activation_fn=jax.lax.tanh, bias_init=BIAS, rngs=nnx.Rngs(0)))
    layer, params = from_flax(module)
    assert_close("activation_fn=jax.lax.tanh", layer.apply(params, X)[0], module(X), atol=1e-6, rtol=1e-5)
    linen = nn.RNN(nn.GRUCell(7, bias_init=BIAS))
    variables = linen.init(jax.random.key(0), X)
    layer, params = from_flax(linen, variables["params"])  # the bare params tree
    assert_close(
        "Linen params without wrapper", layer.apply(params, X)[0], linen.apply(variables, X), atol=1e-6, rtol=1e-5
    )


class DoubledInput(nnx.GRUCell):
    """A subclass that changes what the cell computes (as Flax's recurrent-dropout example does)."""

    def __call__(self, carry, inputs):
        return super().__call__(carry, 2 * inputs)


class LinenDoubledInput(nn.GRUCell):
    def __call__(self, carry, inputs):
        return super().__call__(carry, 2 * inputs)


def linen_with_variables(module):
    return module, module.init(jax.random.key(0), X)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: (nnx.LSTMCell(5, 7, gate_fn=jax.nn.hard_sigmoid, rngs=nnx.Rngs(0)), None), "gate_fn=hard_sigmoid"),
        (
            lambda: (nnx.GRUCell(5, 7, activation_fn=jax.nn.relu, rngs=nnx.Rngs(0)), None),
            "activation_fn=relu: it is not tanh, what rnnlab computes",
        ),
        (
            lambda: (nnx.RNN(nnx.GRUCell(5, 7, rngs=nnx.Rngs(0)), reverse=True), None),
            r"RNN\(reverse=True, keep_order=False\) returns its outputs in reversed order",
        ),
        (lambda: (nn.RNN(nn.GRUCell(7)), None), "a Linen RNN holds no weights: pass its variables"),
        (lambda: (nnx.Linear(5, 7, rngs=nnx.Rngs(0)), None), "expected a nnx SimpleCell, LSTMCell"),
        (
            lambda: (nnx.RNN(DoubledInput(5, 7, rngs=nnx.Rngs(0))), None),
            "DoubledInput is a subclass of nnx.GRUCell; rnnlab cannot know what a subclass computes",
        ),
        (
            lambda: linen_with_variables(nn.RNN(LinenDoubledInput(7))),
            "LinenDoubledInput is a subclass of Linen.GRUCell",
        ),
        (
            lambda: (nnx.RNN(nnx.GRUCell(5, 7, carry_init=nnx.initializers.ones, rngs=nnx.Rngs(0))), None),
            r"nnx.GRUCell has a carry_init \(ones\) that does not start from zeros",
        ),
        (
            lambda: linen_with_variables(nn.RNN(nn.LSTMCell(7, carry_init=nn.initializers.normal(1.0)))),
            "nn.LSTMCell has a carry_init .* that does not start from zeros",
        ),
        (
            lambda: (nnx.Bidirectional(*_two_rnns(), merge_fn=jnp.add), None),
            "Bidirectional with merge_fn=add: rnnlab's bidirectional layer concatenates",
        ),
        (
            lambda: (nnx.Bidirectional(*_two_rnns(hidden=(7, 6))), None),
            "rnnlab's bidirectional layer runs one kind and size of cell in both directions",
        ),
    ],
)
# the carry_init case builds Flax's cell the way Flax now warns against, on purpose
@pytest.mark.filterwarnings("ignore:carry_init is provided in __init__:UserWarning")
def test_what_rnnlab_cannot_compute_is_refused(make, message):
    module, variables = make()
    with pytest.raises((ValueError, TypeError), match=message):
        from_flax(module, variables)


def _two_rnns(hidden=(7, 7)):
    return tuple(nnx.RNN(nnx.GRUCell(5, h, rngs=nnx.Rngs(i))) for i, h in enumerate(hidden))
