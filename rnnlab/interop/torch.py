"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` weight import and export.

    layer, params = from_torch(torch_module)
    outputs, final = layer.apply(params, x, lengths)        # what the module returns
    module.load_state_dict(to_torch_state_dict(layer, params))

rnnlab's params already use torch's layout (fused gates, same order, both
biases), so conversion is renaming: ``params["l{k}"]["fwd"|"bwd"]["w_ih"]``
<-> ``weight_ih_l{k}[_reverse]``.  torch is imported only in this module.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rnnlab.cells import ElmanCell, GRUCell, LSTMCell
from rnnlab.layers import DIRECTIONS, RNN

_TORCH_NAMES = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
_SUFFIX = {"fwd": "", "bwd": "_reverse"}


def _import_torch():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("rnnlab.interop.torch needs PyTorch: pip install torch") from e
    return torch


def torch_name(layer: int, direction: str, name: str) -> str:
    """``("l1", "bwd", "w_ih") -> "weight_ih_l1_reverse"``."""
    return f"{_TORCH_NAMES[name]}_l{layer}{_SUFFIX[direction]}"


def layer_from_module(module) -> RNN:
    """The rnnlab ``RNN`` with the same hyperparameters as a torch recurrent module."""
    torch = _import_torch()
    if not isinstance(module, torch.nn.RNNBase):
        raise TypeError(f"expected torch.nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError("LSTM with proj_size > 0 is not supported")
    H = module.hidden_size
    if module.mode == "LSTM":
        cell = LSTMCell(H, use_bias=module.bias)
    elif module.mode == "GRU":
        cell = GRUCell(H, use_bias=module.bias)
    elif module.mode in ("RNN_TANH", "RNN_RELU"):
        cell = ElmanCell(H, use_bias=module.bias, activation=module.mode[4:].lower())
    else:
        raise ValueError(f"unsupported torch recurrent mode {module.mode!r}")
    return RNN(
        cell,
        num_layers=module.num_layers,
        bidirectional=module.bidirectional,
        dropout=float(module.dropout),
        batch_first=module.batch_first,
    )


def from_torch(module, dtype=jnp.float32):
    """``(layer, params)`` reproducing ``module``: same weights, same call semantics."""
    layer = layer_from_module(module)
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    params = {}
    for k in range(layer.num_layers):
        params[f"l{k}"] = {
            direction: {
                name: jnp.asarray(state[torch_name(k, direction, name)], dtype) for name in layer.cell.param_specs(1)
            }
            for direction in DIRECTIONS[: layer.num_directions]
        }
    return layer, params


def to_torch_state_dict(layer: RNN, tree) -> dict:
    """Map a params-shaped pytree (params or their gradients) to torch names and tensors."""
    torch = _import_torch()
    if type(layer.cell) not in (ElmanCell, LSTMCell, GRUCell):
        raise ValueError(f"torch.nn has no {type(layer.cell).__name__}: only ElmanCell, LSTMCell and GRUCell export")
    if isinstance(layer.cell, ElmanCell) and layer.cell.activation not in ("tanh", "relu"):
        raise ValueError(f"torch.nn.RNN has no {layer.cell.activation!r} activation (only tanh and relu)")
    state = {}
    for k in range(layer.num_layers):
        for direction in DIRECTIONS[: layer.num_directions]:
            for name, value in tree[f"l{k}"][direction].items():
                state[torch_name(k, direction, name)] = torch.from_numpy(np.array(value))
    return state
