"""Flax recurrent cells' weights in rnnlab's (PyTorch) layout.

    layer, params = from_flax(nnx.RNN(nnx.LSTMCell(8, 32, rngs=nnx.Rngs(0))))
    layer, params = from_flax(nn.RNN(nn.GRUCell(32)), variables)     # Linen: give its variables
    outputs, final = layer.apply(params, x)                         # the outputs the Flax module returns

Cells: ``nnx.SimpleCell``, ``nnx.LSTMCell``, ``nnx.OptimizedLSTMCell``, ``nnx.GRUCell`` and
Linen's ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, bare or wrapped in
``nnx.RNN`` / ``nn.RNN``.  Flax stores ``x @ kernel`` kernels ``[in, out]`` per gate (or
fused in PyTorch's gate order); rnnlab stores ``w_ih [G*H, I]`` and two biases.  Where the
formulas differ (each difference tested in ``tests/test_interop_flax.py``):

* Flax keeps one bias per gate where PyTorch keeps two.  ``SimpleCell`` and NNX's
  ``GRUCell`` put it on the input side (``b_hh = 0``); both ``LSTMCell`` s put it on the
  hidden side (``b_ih = 0``); Linen's ``GRUCell`` has input biases for r, z, n and a
  hidden bias for n only (``b_hh = [0, 0, b_hn]``).  Summed biases give the same gates.
* The GRU candidate: Linen's ``GRUCell`` computes ``tanh(W_in x + b_in + r * (W_hn h + b_hn))``
  as PyTorch does; NNX's ``GRUCell`` computes ``tanh(W_in x + b_in + r * (W_hn h))``, with no
  ``b_hn`` inside the reset product (its docstring shows one).  That is PyTorch's formula
  with ``b_hn = 0``, so it imports exactly.
* The LSTM carry is ``(c, h)`` in Flax and ``LSTMState(h, c)`` here.

What rnnlab cannot compute exactly is refused with an error, never approximated:
``SimpleCell(residual=True)``, gate or activation functions other than Flax's defaults
(tanh; relu for ``SimpleCell``), and ``reverse=True`` wrappers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells import ElmanCell, GRUCell, LSTMCell
from rnnlab.layers import RNN

_ACTIVATIONS = {jnp.tanh: "tanh", jax.nn.relu: "relu"}


def _check_functions(cell, kind: str, simple: bool) -> str:
    """Flax's default gate (sigmoid) and activation (tanh; relu too for SimpleCell), or an error."""
    gate = getattr(cell, "gate_fn", jax.nn.sigmoid)
    if gate is not jax.nn.sigmoid:
        raise ValueError(f"{kind} with gate_fn={getattr(gate, '__name__', gate)}: rnnlab's gates are sigmoids")
    activation = _ACTIVATIONS.get(cell.activation_fn)
    if activation is None or (activation == "relu" and not simple):
        allowed = "tanh or relu" if simple else "tanh"
        raise ValueError(
            f"{kind} with activation_fn={getattr(cell.activation_fn, '__name__', cell.activation_fn)}: "
            f"rnnlab computes {allowed} only"
        )
    if getattr(cell, "residual", False):
        raise ValueError(
            f"{kind}(residual=True) adds h_(t-1) before the activation; rnnlab's ElmanCell cannot represent it"
        )
    return activation


def _t(kernel) -> jax.Array:
    """Flax ``[in, out]`` kernel -> PyTorch ``[out, in]`` weight."""
    return jnp.asarray(kernel).T


def _gates(kernels) -> jax.Array:
    """Per-gate Flax kernels ``[in, H]`` -> one fused ``[G*H, in]`` weight."""
    return jnp.concatenate([_t(k) for k in kernels], axis=0)


def _nnx_cell(cell):
    """``(rnnlab cell, params)`` from an NNX cell module."""
    kind = f"nnx.{type(cell).__name__}"
    if not isinstance(cell, (nnx.SimpleCell, nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell)):
        raise TypeError(
            f"expected an nnx SimpleCell, LSTMCell, OptimizedLSTMCell or GRUCell, got {type(cell).__name__}"
        )
    value = lambda v: jnp.asarray(v[...])
    H = cell.hidden_features
    zeros = lambda n: jnp.zeros((n * H,), jnp.float32)
    if isinstance(cell, nnx.SimpleCell):
        activation = _check_functions(cell, kind, simple=True)
        return ElmanCell(H, activation=activation), {
            "w_ih": _t(value(cell.dense_i.kernel)),
            "w_hh": _t(value(cell.dense_h.kernel)),
            "b_ih": value(cell.dense_i.bias),
            "b_hh": zeros(1),
        }
    if isinstance(cell, nnx.OptimizedLSTMCell):
        _check_functions(cell, kind, simple=False)
        return LSTMCell(H), {
            "w_ih": _t(value(cell.dense_i.kernel)),
            "w_hh": _t(value(cell.dense_h.kernel)),
            "b_ih": zeros(4),
            "b_hh": value(cell.dense_h.bias),
        }
    if isinstance(cell, nnx.LSTMCell):
        _check_functions(cell, kind, simple=False)
        inputs, hidden = [cell.ii, cell.if_, cell.ig, cell.io], [cell.hi, cell.hf, cell.hg, cell.ho]
        return LSTMCell(H), {
            "w_ih": _gates(value(d.kernel) for d in inputs),
            "w_hh": _gates(value(d.kernel) for d in hidden),
            "b_ih": zeros(4),
            "b_hh": jnp.concatenate([value(d.bias) for d in hidden]),
        }
    if isinstance(cell, nnx.GRUCell):
        _check_functions(cell, kind, simple=False)
        return GRUCell(H), {  # no b_hn in NNX's candidate: PyTorch's formula with b_hh = 0
            "w_ih": _t(value(cell.dense_i.kernel)),
            "w_hh": _t(value(cell.dense_h.kernel)),
            "b_ih": value(cell.dense_i.bias),
            "b_hh": zeros(3),
        }


def _linen_cell(cell, params):
    """``(rnnlab cell, params)`` from a Linen cell and its params (``variables["params"]`` of the cell)."""
    kind = f"nn.{type(cell).__name__}"
    p = lambda name, leaf="kernel": jnp.asarray(params[name][leaf])
    if isinstance(cell, nn.SimpleCell):
        activation = _check_functions(cell, kind, simple=True)
        H = params["h"]["kernel"].shape[0]
        return ElmanCell(H, activation=activation), {
            "w_ih": _t(p("i")),
            "w_hh": _t(p("h")),
            "b_ih": p("i", "bias"),
            "b_hh": jnp.zeros((H,), jnp.float32),
        }
    if isinstance(cell, (nn.LSTMCell, nn.OptimizedLSTMCell)):  # the same params, ii..io and hi..ho
        _check_functions(cell, kind, simple=False)
        H = params["hi"]["kernel"].shape[0]
        return LSTMCell(H), {
            "w_ih": _gates(p(n) for n in ("ii", "if", "ig", "io")),
            "w_hh": _gates(p(n) for n in ("hi", "hf", "hg", "ho")),
            "b_ih": jnp.zeros((4 * H,), jnp.float32),
            "b_hh": jnp.concatenate([p(n, "bias") for n in ("hi", "hf", "hg", "ho")]),
        }
    if isinstance(cell, nn.GRUCell):
        _check_functions(cell, kind, simple=False)
        H = params["hn"]["kernel"].shape[0]
        return GRUCell(H), {  # PyTorch's formula: b_hn inside the reset product, no b_hr, b_hz
            "w_ih": _gates(p(n) for n in ("ir", "iz", "in")),
            "w_hh": _gates(p(n) for n in ("hr", "hz", "hn")),
            "b_ih": jnp.concatenate([p(n, "bias") for n in ("ir", "iz", "in")]),
            "b_hh": jnp.concatenate([jnp.zeros((2 * H,), jnp.float32), p("hn", "bias")]),
        }
    raise TypeError(f"expected a Linen SimpleCell, LSTMCell, OptimizedLSTMCell or GRUCell, got {type(cell).__name__}")


def from_flax(module, variables=None, dtype=jnp.float32):
    """``(layer, params)`` computing what a Flax recurrent cell, or an ``nnx.RNN`` / ``nn.RNN``
    around one, computes.  Linen modules need their ``variables`` (``module.init(...)``);
    NNX modules hold their own.  ``layer`` is a one-layer, one-direction ``rnnlab.RNN``."""
    batch_first = True
    if isinstance(module, (nnx.RNN, nn.RNN)):
        if module.reverse:
            raise ValueError(
                f"{type(module).__name__}(reverse=True): import the cell and use it as the backward "
                "direction of rnnlab.RNN(bidirectional=True) instead"
            )
        batch_first = not module.time_major
        cell = module.cell
        if isinstance(module, nn.RNN):
            if variables is None:
                raise ValueError("a Linen nn.RNN holds no weights: pass its variables, from_flax(module, variables)")
            variables = {"params": variables["params"]["cell"]}
    else:
        cell = module
    if isinstance(cell, nnx.Module):
        rnn_cell, params = _nnx_cell(cell)
    elif isinstance(cell, nn.Module):
        if variables is None:
            raise ValueError(f"a Linen {type(cell).__name__} holds no weights: pass its variables")
        rnn_cell, params = _linen_cell(cell, variables["params"])
    else:
        raise TypeError(f"expected a Flax recurrent cell or nnx.RNN / nn.RNN, got {type(module).__name__}")
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    return RNN(rnn_cell, batch_first=batch_first), {"l0": {"fwd": params}}
