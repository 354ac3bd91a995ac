"""rnnlab layers against torch.nn.RNN/LSTM/GRU on CPU: outputs, final states and
gradients with respect to every parameter and to the input.

The grid: every cell kind x 1-3 layers x uni/bidirectional x equal/unequal
lengths (48 cases), with hidden size (1 or 4), bias on/off and batch_first
on/off rotated so that each kind meets all eight combinations of the three.  torch's side
uses pack_padded_sequence(enforce_sorted=False) when lengths differ.
Biases are torch's default uniform draws: never zero.
"""

import itertools
import zlib

import jax
import jax.numpy as jnp
import pytest

torch = pytest.importorskip("torch")
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from rnnlab import LSTMState  # noqa: E402
from rnnlab.interop.torch import from_torch, to_torch_state_dict  # noqa: E402

KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
B, T, I = 3, 6, 2
EQUAL_LENGTHS = [T, T, T]
UNEQUAL_LENGTHS = [T, 1, 4]  # includes the extremes 1 and T, unsorted
TOL = dict(atol=2e-5, rtol=2e-4)


def make_module(kind, hidden, layers, bidirectional, bias, batch_first):
    kwargs = dict(
        input_size=I,
        hidden_size=hidden,
        num_layers=layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=batch_first,
    )
    if kind.startswith("rnn"):
        return torch.nn.RNN(nonlinearity=kind[4:], **kwargs)
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](**kwargs)


def torch_forward(module, x, lengths):
    """What a torch user writes for padded batches: pack, run, pad back to T."""
    if len(set(lengths)) == 1:
        return module(x)
    packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False)
    out, final = module(packed)
    out, _ = pad_packed_sequence(out, batch_first=module.batch_first, total_length=T)
    return out, final


def grid():
    for n, (kind, layers, bidirectional, lengths) in enumerate(
        itertools.product(KINDS, (1, 2, 3), (False, True), ("equal", "unequal"))
    ):
        hidden, bias, batch_first = (1, 4)[n % 2], (True, False)[(n // 2) % 2], (True, False)[(n // 4) % 2]
        yield pytest.param(
            kind,
            hidden,
            layers,
            bidirectional,
            bias,
            batch_first,
            lengths,
            id=f"{kind}-H{hidden}-L{layers}-{'bi' if bidirectional else 'uni'}-"
            f"{'bias' if bias else 'nobias'}-{'bf' if batch_first else 'tm'}-{lengths}",
        )


@pytest.mark.parametrize("kind,hidden,layers,bidirectional,bias,batch_first,lengths", list(grid()))
def test_matches_torch(kind, hidden, layers, bidirectional, bias, batch_first, lengths, assert_close, request):
    torch.manual_seed(zlib.crc32(request.node.name.encode()))
    module = make_module(kind, hidden, layers, bidirectional, bias, batch_first)
    lengths = EQUAL_LENGTHS if lengths == "equal" else UNEQUAL_LENGTHS
    x_shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(x_shape, requires_grad=True)
    D = 2 if bidirectional else 1
    out_shape = (B, T, D * hidden) if batch_first else (T, B, D * hidden)
    # Random cotangents: the loss weights every output and final-state entry differently.
    r_out = torch.randn(out_shape)
    r_h, r_c = torch.randn(D * layers, B, hidden), torch.randn(D * layers, B, hidden)

    # torch side
    out_t, final_t = torch_forward(module, x, lengths)
    h_t, c_t = final_t if kind == "lstm" else (final_t, None)
    loss_t = (out_t * r_out).sum() + (h_t * r_h).sum() + ((c_t * r_c).sum() if c_t is not None else 0)
    loss_t.backward()
    grads_t = {name: p.grad.numpy() for name, p in module.named_parameters()}

    # rnnlab side
    layer, params = from_torch(module)
    lengths_j = None if lengths == EQUAL_LENGTHS else jnp.asarray(lengths)
    as_j = lambda t: jnp.asarray(t.detach().numpy())

    def loss_fn(params, x):
        out, final = layer.apply(params, x, lengths_j)
        h, c = (final.h, final.c) if kind == "lstm" else (final, None)
        loss = jnp.sum(out * as_j(r_out)) + jnp.sum(h * as_j(r_h))
        return loss + (jnp.sum(c * as_j(r_c)) if c is not None else 0.0), (out, final)

    (loss_j, (out_j, final_j)), (grads_j, grad_x_j) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        params, as_j(x)
    )

    assert_close("outputs", out_j, out_t.detach().numpy(), **TOL)
    if kind == "lstm":
        assert isinstance(final_j, LSTMState)
        h_j, c_j = final_j  # unpacks like torch's (h_n, c_n)
        assert_close("final c_n", c_j, c_t.detach().numpy(), **TOL)
    else:
        h_j = final_j
    assert_close("final h_n", h_j, h_t.detach().numpy(), **TOL)
    assert_close("loss", loss_j, loss_t.item(), **TOL)
    assert_close("grad input", grad_x_j, x.grad.numpy(), **TOL)
    grads_named = to_torch_state_dict(layer, grads_j)
    assert sorted(grads_named) == sorted(grads_t)
    for name, g in grads_t.items():
        assert_close("grad params", grads_named[name].numpy(), g, **TOL)
