"""Stacked and bidirectional recurrent layers, still pure.

    layer = RNN(LSTMCell(128), num_layers=2, bidirectional=True)
    params = layer.init(key, input_size)
    outputs, final = layer.apply(params, x_bti, lengths=lengths_b)

Semantics are PyTorch's ``nn.RNN``/``nn.LSTM``/``nn.GRU``:
  * layer k's input is layer k-1's output (both directions concatenated);
  * dropout between layers, never after the last, only when a
    ``dropout_key`` is given (training);
  * the backward direction reverses each sequence's valid prefix;
  * outputs ``[B, T, D*H]`` (``[T, B, D*H]`` if not ``batch_first``), zero at
    padding; ``final`` is ``h_n [D*L, B, H]`` for Elman/GRU and
    ``LSTMState(h_n, c_n)`` for LSTM, with index ``layer * D + direction``.

Params: ``{"l0": {"fwd": cell_params, "bwd": cell_params}, "l1": ...}``
(``"bwd"`` only when bidirectional).  Every layer and direction is one
``rnnlab.unroll.run``: one scan per layer and direction, on every backend.
Other batchings (both directions in one scan, the layer wavefront) are in
``rnnlab.experimental``, called on purpose.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab import cells, validation
from rnnlab.cells import Cell
from rnnlab.newton import NewtonOptions
from rnnlab.unroll import check_perturbation, check_step, resolve_path, run

DIRECTIONS = ("fwd", "bwd")


@dataclasses.dataclass(frozen=True)
class RNN:
    """A stack of ``num_layers`` recurrent layers of ``cell``, optionally bidirectional.

    >>> import jax, jax.numpy as jnp
    >>> from rnnlab import GRUCell
    >>> layer = RNN(GRUCell(8), num_layers=2, bidirectional=True)
    >>> params = layer.init(jax.random.key(0), input_size=3)
    >>> x = jax.random.normal(jax.random.key(1), (4, 10, 3))
    >>> outputs, h_n = layer.apply(params, x, lengths=jnp.array([10, 3, 7, 1]))
    >>> outputs.shape, h_n.shape          # [B, T, D*H], [D*L, B, H] like PyTorch
    ((4, 10, 16), (4, 4, 8))
    >>> bool(jnp.all(outputs[1, 3:] == 0))  # padding is zero
    True
    >>> RNN(GRUCell(8), path="associative")
    Traceback (most recent call last):
    ...
    ValueError: path='associative' does not apply to GRUCell: it runs 'fused', 'autodiff', 'remat', 'newton', 'quasi_newton'
    """

    cell: Cell
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    batch_first: bool = True
    scan_unroll: int = 1  # steps per lax.scan iteration
    path: str | None = None  # the execution path (rnnlab.unroll): None is the cell's default
    newton_options: NewtonOptions | None = None  # the newton/quasi_newton paths' options (rnnlab.newton)
    # one direction that reads each sequence's valid prefix from its end (outputs in input order)
    reverse: bool = False
    # the computation dtype (Flax's ``dtype``): inputs and params are cast to it; None promotes
    # the two (bf16 inputs, f32 params -> f32).  A half-precision carry would lose the state's
    # small increments over many steps, so the carry stays float32 (``carry_dtype``).
    dtype: Any = None

    def __post_init__(self):
        if not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {self.num_layers!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        # resolved once: apply runs every layer and direction on it
        object.__setattr__(
            self, "resolved_path", resolve_path(self.cell, self.path, self.scan_unroll, self.newton_options)
        )
        if self.dtype is not None and not jnp.issubdtype(jnp.dtype(self.dtype), jnp.floating):
            raise ValueError(f"dtype must be a floating-point dtype (e.g. jnp.bfloat16), got {self.dtype!r}")
        if self.reverse and self.bidirectional:
            raise ValueError("reverse=True makes one backward direction; bidirectional=True already has one")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.num_directions * cells.hidden_size(self.cell)

    def layer_input_size(self, layer: int, input_size: int) -> int:
        return input_size if layer == 0 else self.output_size

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32):
        keys = jax.random.split(key, self.num_layers * self.num_directions)
        return {
            f"l{layer}": {
                name: cells.init(
                    self.cell, keys[layer * self.num_directions + d], self.layer_input_size(layer, input_size), dtype
                )
                for d, name in enumerate(DIRECTIONS[: self.num_directions])
            }
            for layer in range(self.num_layers)
        }

    def param_specs(self, input_size: int, dtype=jnp.float32):
        return {
            f"l{layer}": {
                name: cells.param_specs(self.cell, self.layer_input_size(layer, input_size), dtype)
                for name in DIRECTIONS[: self.num_directions]
            }
            for layer in range(self.num_layers)
        }

    def materialize(self, params):
        """The params the cells compute with: ``params`` itself (a wrapper in
        ``rnnlab.parametrizations`` computes them from its own)."""
        return params

    def params_input_size(self, params, x=None) -> int:
        """The input size a layer's params expect (layer 0's, as its cell reads them; for a cell
        that cannot say, the width of the inputs ``x``, which ``param_specs`` then checks)."""
        try:
            first = params["l0"]["fwd"]
        except (KeyError, TypeError, AttributeError):
            raise ValueError("params must come from RNN.init: {'l0': {'fwd': {...}}, ...}") from None
        size = cells.input_size_of(self.cell, first)
        if size is None and x is not None and jnp.ndim(x) == 3:
            size = int(jnp.shape(x)[-1])
        if size is None:
            raise ValueError(f"{cells.name_of(self.cell)} cannot say its input size from its params: pass the inputs")
        return size

    def constrain(self, params):
        """Every cell's params projected onto its constraint set (``cell.constrain``): what a
        training step applies after the optimiser's update (IndRNN's ``|u| <= U_bound``)."""
        return {
            layer: {d: cells.constrain(self.cell, p) for d, p in directions.items()}
            for layer, directions in params.items()
        }

    def dropout_scales(self, dropout_key, shape, dtype):
        """Inverted dropout between layers: ``keep / (1 - p)`` for the inputs of layers
        ``1..L-1``, each ``shape``; ``None`` without a key (evaluation) or dropout."""
        if self.dropout == 0 or dropout_key is None or self.num_layers == 1:
            return None
        keys = jax.random.split(dropout_key, self.num_layers - 1)
        return [jax.random.bernoulli(k, 1.0 - self.dropout, shape).astype(dtype) / (1.0 - self.dropout) for k in keys]

    def initial_carry(self, batch_size: int, dtype=jnp.float32):
        """Zeros laid out like PyTorch's ``h_0`` (and ``c_0``): ``[D*L, B, H]``."""
        return cells.initial_carry(self.cell, (self.num_layers * self.num_directions, batch_size), dtype)

    def compute_dtype(self, x, params):
        """The dtype the layer computes in: ``dtype``, else the inputs' and params' promoted."""
        if self.dtype is not None:
            return jnp.dtype(self.dtype)
        return jnp.result_type(x.dtype, *(p.dtype for p in jax.tree.leaves(params)))

    @staticmethod
    def carry_dtype(compute_dtype):
        """float32 for a half-precision computation, else the computation's dtype."""
        return jnp.float32 if jnp.finfo(compute_dtype).bits < 32 else compute_dtype

    def cast(self, x, params):
        """``(x, params)`` in the computation dtype."""
        dtype = self.compute_dtype(x, params)
        return x.astype(dtype), jax.tree.map(lambda p: p.astype(dtype), params)

    def check_inputs(self, params, x, lengths=None, initial_carry=None, hidden_perturbation=None):
        """``apply``'s arguments checked against this layer: ``(x, lengths)`` as arrays."""
        input_size = self.params_input_size(params, x)
        validation.check_tree_shapes(
            "params",
            params,
            self.param_specs(input_size),
            hint=f" (this layer: {cells.name_of(self.cell)}({cells.hidden_size(self.cell)}), "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional})",
        )
        x = validation.check_sequence(x, time_major=not self.batch_first, input_size=input_size)
        batch_size, num_steps = x.shape[:2] if self.batch_first else x.shape[1::-1]
        lengths = validation.check_lengths(lengths, batch_size, num_steps)
        num_scans = self.num_layers * self.num_directions
        H = cells.hidden_size(self.cell)
        if hidden_perturbation is not None:
            if jnp.ndim(hidden_perturbation) != 4 or len(hidden_perturbation) != num_scans:
                raise ValueError(
                    f"hidden_perturbation must be [num_layers * num_directions = {num_scans}, "
                    f"...outputs of one direction], got shape {tuple(jnp.shape(hidden_perturbation))}"
                )
            check_perturbation(hidden_perturbation[0], (num_steps, batch_size, H), not self.batch_first)
        if initial_carry is not None:
            expected = jax.eval_shape(lambda: self.initial_carry(batch_size, x.dtype))
            validation.check_tree_shapes(
                "initial_carry", initial_carry, expected, hint=" ([num_layers * num_directions, B, H])"
            )
        carry_b = jax.eval_shape(lambda: cells.initial_carry(self.cell, (batch_size,), x.dtype))
        for layer in range(min(self.num_layers, 2)):  # layer 0's input width, and the deeper layers'
            layer_params = params[f"l{layer}"]["fwd"]
            width = self.layer_input_size(layer, input_size)
            check_step(self.cell, layer_params, carry_b, jax.ShapeDtypeStruct((batch_size, width), x.dtype))
        return x, lengths

    def apply(
        self,
        params,
        x,
        lengths=None,
        initial_carry=None,
        *,
        dropout_key=None,
        hidden_perturbation=None,
        return_info=False,
    ):
        """Run the stack; see the module docstring for layouts.  Returns ``(outputs, final)``.

        ``hidden_perturbation``, for gradient diagnostics, is ``[D*L, B, T, H]``
        (``[D*L, T, B, H]`` if not batch_first), indexed like ``h_n``: slice k is
        added to layer-direction k's hidden states (see ``rnnlab.unroll.unroll``).
        ``return_info`` (the ``newton``/``quasi_newton`` paths) appends the list of every
        layer-direction's ``rnnlab.newton.NewtonInfo``, indexed like ``h_n``.
        """
        x, lengths = self.check_inputs(params, x, lengths, initial_carry, hidden_perturbation)
        if return_info and self.resolved_path not in ("newton", "quasi_newton"):
            raise ValueError(
                f"return_info applies to paths ('newton', 'quasi_newton'), not path={self.resolved_path!r}"
            )
        x, params = self.cast(x, params)
        compute_dtype = x.dtype
        carry_dtype = self.carry_dtype(compute_dtype)
        if initial_carry is None:
            initial_carry = self.initial_carry(x.shape[0] if self.batch_first else x.shape[1], carry_dtype)
        initial_carry = jax.tree.map(lambda c: jnp.asarray(c, carry_dtype), initial_carry)
        scales = self.dropout_scales(dropout_key, x.shape[:-1] + (self.output_size,), x.dtype)
        index = lambda tree, k: None if tree is None else jax.tree.map(lambda a: a[k], tree)
        finals, infos = [], []
        for layer in range(self.num_layers):
            if layer > 0 and scales is not None:
                x = x * scales[layer - 1]
            outputs = []
            for d, name in enumerate(DIRECTIONS[: self.num_directions]):
                k = layer * self.num_directions + d  # this layer-direction's index in h_n
                y, final, *info = run(
                    self.cell,
                    params[f"l{layer}"][name],
                    x.astype(compute_dtype),  # a deeper layer's inputs are the float32 carry's outputs
                    index(initial_carry, k),
                    lengths,
                    index(hidden_perturbation, k),
                    path=self.resolved_path,
                    reverse=self.reverse or name == "bwd",
                    time_major=not self.batch_first,
                    scan_unroll=self.scan_unroll,
                    newton_options=self.newton_options,
                    return_info=return_info,
                )
                outputs.append(y)
                finals.append(final)
                infos.extend(info)
            x = jnp.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        final = jax.tree.map(lambda *leaves: jnp.stack(leaves), *finals)
        return (x, final, infos) if return_info else (x, final)
