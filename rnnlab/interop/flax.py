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

* ``SimpleCell(residual=True)`` computes ``act(W_i x + b + W_h h + h)``: ``W_h + I`` as ``w_hh``.
* ``RNN(reverse=True, keep_order=True)`` is ``rnnlab.RNN(reverse=True)``;
  ``Bidirectional`` (separate or shared cells of one kind, ``merge_fn`` concatenating) is
  ``rnnlab.RNN(bidirectional=True)`` (a shared cell's weights go to both directions: tied
  in Flax, two copies here).
* Functions are recognised by what they compute on a grid (``jax.lax.tanh`` is tanh).

What rnnlab cannot compute exactly is refused with an error, never approximated: a
subclass of a Flax cell (its own ``__call__`` may compute anything), gate or activation
functions other than sigmoid and tanh (or relu for ``SimpleCell``), a ``carry_init`` that
does not start from zeros, ``reverse=True`` without ``keep_order=True`` (Flax then returns
the outputs in reversed order), and any other ``merge_fn``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells import ElmanCell, GRUCell, LSTMCell
from rnnlab.layers import RNN

_GRID = jnp.linspace(-4.0, 4.0, 33)


def _computes(fn, reference) -> bool:
    """``fn`` computes ``reference`` (on a grid of [-4, 4]): a function is known by what it does."""
    try:
        return bool(jnp.allclose(fn(_GRID), reference(_GRID), rtol=1e-6, atol=1e-7))
    except Exception:  # noqa: BLE001 - anything that cannot run on an array is not tanh
        return False


def _name(fn) -> str:
    return getattr(fn, "__name__", repr(fn))


def _check_functions(cell, kind: str, simple: bool) -> str:
    """Flax's default gate (sigmoid) and activation (tanh; relu too for SimpleCell), or an error."""
    gate = getattr(cell, "gate_fn", jax.nn.sigmoid)
    if not _computes(gate, jax.nn.sigmoid):
        raise ValueError(f"{kind} with gate_fn={_name(gate)}: it is not a sigmoid, and rnnlab's gates are")
    for activation, reference in (("tanh", jnp.tanh), ("relu", jax.nn.relu)):
        if (simple or activation == "tanh") and _computes(cell.activation_fn, reference):
            return activation
    allowed = "tanh or relu" if simple else "tanh"
    raise ValueError(
        f"{kind} with activation_fn={_name(cell.activation_fn)}: it is not {allowed}, what rnnlab computes"
    )


def _check_carry_init(cell, kind: str, hidden_size: int) -> None:
    """Flax's default carry is zeros, as rnnlab's; another ``carry_init`` is refused."""
    init = getattr(cell, "carry_init", None)
    if init is None:
        return
    carry = init(jax.random.key(0), (2, hidden_size), jnp.float32)
    if bool(jnp.any(carry != 0)):
        raise ValueError(
            f"{kind} has a carry_init ({_name(init)}) that does not start from zeros; rnnlab starts from "
            "zeros unless apply is given initial_carry=, so build the cell with the default carry_init "
            "and pass the carry you want to layer.apply"
        )


def _check_type(cell, known: tuple, namespace: str) -> None:
    """Flax's own cells only: a subclass's ``__call__`` may compute anything."""
    if type(cell) in known:
        return
    base = next((k for k in known if isinstance(cell, k)), None)
    if base is not None:
        raise TypeError(
            f"{type(cell).__name__} is a subclass of {namespace}.{base.__name__}; rnnlab cannot know what "
            "a subclass computes, so it imports Flax's own cells only"
        )
    names = ", ".join(k.__name__ for k in known)
    raise TypeError(f"expected a {namespace} {names}, got {type(cell).__name__}")


def _t(kernel) -> jax.Array:
    """Flax ``[in, out]`` kernel -> PyTorch ``[out, in]`` weight."""
    return jnp.asarray(kernel).T


def _recurrent(w_hh, residual: bool) -> jax.Array:
    """``residual=True`` adds ``h`` before the activation: ``W_h h + h = (W_h + I) h``."""
    return w_hh + jnp.eye(w_hh.shape[0], dtype=w_hh.dtype) if residual else w_hh


def _gates(kernels) -> jax.Array:
    """Per-gate Flax kernels ``[in, H]`` -> one fused ``[G*H, in]`` weight."""
    return jnp.concatenate([_t(k) for k in kernels], axis=0)


def _nnx_cell(cell):
    """``(rnnlab cell, params)`` from an NNX cell module."""
    kind = f"nnx.{type(cell).__name__}"
    _check_type(cell, (nnx.SimpleCell, nnx.LSTMCell, nnx.OptimizedLSTMCell, nnx.GRUCell), "nnx")
    value = lambda v: jnp.asarray(v[...])
    H = cell.hidden_features
    _check_carry_init(cell, kind, H)
    zeros = lambda n: jnp.zeros((n * H,), jnp.float32)
    if isinstance(cell, nnx.SimpleCell):
        activation = _check_functions(cell, kind, simple=True)
        return ElmanCell(H, activation=activation), {
            "w_ih": _t(value(cell.dense_i.kernel)),
            "w_hh": _recurrent(_t(value(cell.dense_h.kernel)), cell.residual),
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
    _check_type(cell, (nn.SimpleCell, nn.LSTMCell, nn.OptimizedLSTMCell, nn.GRUCell), "Linen")
    p = lambda name, leaf="kernel": jnp.asarray(params[name][leaf])
    _check_carry_init(cell, kind, cell.features)
    if isinstance(cell, nn.SimpleCell):
        activation = _check_functions(cell, kind, simple=True)
        H = params["h"]["kernel"].shape[0]
        return ElmanCell(H, activation=activation), {
            "w_ih": _t(p("i")),
            "w_hh": _recurrent(_t(p("h")), cell.residual),
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


def _cell(cell, params):
    """``(rnnlab cell, params)`` of a Flax cell (Linen: with its params)."""
    if isinstance(cell, nnx.Module):
        return _nnx_cell(cell)
    if isinstance(cell, nn.Module):
        return _linen_cell(cell, params)
    raise TypeError(f"expected a Flax recurrent cell, nnx.RNN / nn.RNN or Bidirectional, got {type(cell).__name__}")


def _direction(rnn, params):
    """The cell of one ``nnx.RNN`` / ``nn.RNN`` and its params."""
    if not isinstance(rnn, (nnx.RNN, nn.RNN)):
        raise TypeError(f"a Bidirectional's directions must be nnx.RNN or nn.RNN, got {type(rnn).__name__}")
    return _cell(rnn.cell, None if params is None else params["cell"])


def _merges_by_concatenation(merge_fn) -> bool:
    a, b = jnp.ones((2, 3)), 2 * jnp.ones((2, 4))
    try:
        merged = merge_fn(a, b)
    except Exception:  # noqa: BLE001 - a merge that cannot concatenate these is not concatenation
        return False
    return merged.shape == (2, 7) and bool(jnp.array_equal(merged, jnp.concatenate([a, b], axis=-1)))


def _bidirectional(module, params):
    kind = type(module).__name__
    if not _merges_by_concatenation(module.merge_fn):
        raise ValueError(
            f"{kind} with merge_fn={_name(module.merge_fn)}: rnnlab's bidirectional layer concatenates "
            "the two directions' outputs (Flax's default merge_fn) and nothing else"
        )
    shared = module.forward_rnn is module.backward_rnn
    fwd_params = None if params is None else params["forward_rnn"]
    bwd_params = None if params is None else params.get("backward_rnn", fwd_params if shared else None)
    if params is not None and bwd_params is None:
        raise ValueError(f"{kind}'s variables hold no backward_rnn params")
    fwd_cell, fwd = _direction(module.forward_rnn, fwd_params)
    bwd_cell, bwd = _direction(module.backward_rnn, bwd_params)
    if fwd_cell != bwd_cell:
        raise ValueError(
            f"{kind} with a forward {fwd_cell} and a backward {bwd_cell}: rnnlab's bidirectional layer "
            "runs one kind and size of cell in both directions"
        )
    return RNN(fwd_cell, bidirectional=True, batch_first=not module.time_major), {"l0": {"fwd": fwd, "bwd": bwd}}


def from_flax(module, variables=None, dtype=jnp.float32):
    """``(layer, params)`` computing what a Flax recurrent cell, an ``nnx.RNN`` / ``nn.RNN``
    around one, or an ``nnx.Bidirectional`` / ``nn.Bidirectional`` computes.  Linen modules
    need their ``variables`` (``module.init(...)``, with or without the ``{"params": ...}``
    wrapper); NNX modules hold their own.  ``layer`` is a one-layer ``rnnlab.RNN``."""
    linen = isinstance(module, nn.Module)
    if linen:
        if variables is None:
            raise ValueError(
                f"a Linen {type(module).__name__} holds no weights: pass its variables, from_flax(module, variables)"
            )
        params = variables["params"] if "params" in variables else variables
    else:
        params = None
    if isinstance(module, (nnx.Bidirectional, nn.Bidirectional)):
        layer, params = _bidirectional(module, params)
    elif isinstance(module, (nnx.RNN, nn.RNN)):
        kind = type(module).__name__
        if module.reverse and not module.keep_order:
            raise ValueError(
                f"{kind}(reverse=True, keep_order=False) returns its outputs in reversed order and rnnlab "
                "in input order: build it with keep_order=True (the same weights), or flip rnnlab's "
                "outputs with rnnlab.unroll.reverse_valid_prefix"
            )
        cell, cell_params = _direction(module, params)
        layer = RNN(cell, batch_first=not module.time_major, reverse=module.reverse)
        params = {"l0": {"fwd": cell_params}}
    else:
        cell, cell_params = _cell(module, params)
        layer, params = RNN(cell), {"l0": {"fwd": cell_params}}
    return layer, jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
