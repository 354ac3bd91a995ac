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
(``"bwd"`` only when bidirectional).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rnnlab import validation
from rnnlab.cells import Cell
from rnnlab.scan import BACKWARDS, unroll, unroll_both_directions

DIRECTIONS = ("fwd", "bwd")


@dataclasses.dataclass(frozen=True)
class RNN:
    """A stack of ``num_layers`` recurrent layers of ``cell``, optionally bidirectional."""

    cell: Cell
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    batch_first: bool = True
    unroll: int = 1
    remat: bool = False
    backward: str = "fused"  # or "autodiff": JAX's own derivative (see rnnlab.scan.unroll)
    # a bidirectional layer's two directions in one scan (rnnlab.scan.unroll_both_directions), or
    # one scan per direction (the readable reference; same numbers).  None: one scan except on
    # CPU, where it measured 6-19% slower (benchmarks/README.md); on a GPU each scan step is
    # latency-bound, which is what one scan halves (not measured here: no GPU)
    one_scan_per_layer: bool | None = None

    def __post_init__(self):
        if not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {self.num_layers!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout!r}")
        if self.backward not in BACKWARDS:
            raise ValueError(f"backward must be 'fused' or 'autodiff', got {self.backward!r}")

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.num_directions * self.cell.hidden_size

    def layer_input_size(self, layer: int, input_size: int) -> int:
        return input_size if layer == 0 else self.output_size

    def _one_scan(self) -> bool:
        if self.one_scan_per_layer is None:
            return jax.default_backend() != "cpu"
        return self.one_scan_per_layer

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32):
        keys = jax.random.split(key, self.num_layers * self.num_directions)
        params = {}
        for layer in range(self.num_layers):
            size = self.layer_input_size(layer, input_size)
            params[f"l{layer}"] = {
                name: self.cell.init(keys[layer * self.num_directions + d], size, dtype)
                for d, name in enumerate(DIRECTIONS[: self.num_directions])
            }
        return params

    def param_specs(self, input_size: int, dtype=jnp.float32):
        return {
            f"l{layer}": {
                name: self.cell.param_specs(self.layer_input_size(layer, input_size), dtype)
                for name in DIRECTIONS[: self.num_directions]
            }
            for layer in range(self.num_layers)
        }

    def initial_carry(self, batch_size: int, dtype=jnp.float32):
        """Zeros laid out like PyTorch's ``h_0`` (and ``c_0``): ``[D*L, B, H]``."""
        return self.cell.initial_carry((self.num_layers * self.num_directions, batch_size), dtype)

    def apply(self, params, x, lengths=None, initial_carry=None, *, dropout_key=None, hidden_perturbation=None):
        """Run the stack; see the module docstring for layouts.  Returns ``(outputs, final)``.

        ``hidden_perturbation``, for gradient diagnostics, is ``[D*L, B, T, H]``
        (``[D*L, T, B, H]`` if not batch_first), indexed like ``h_n``: slice k is
        added to layer-direction k's hidden states (see ``rnnlab.scan.unroll``).
        """
        time_major = not self.batch_first
        try:
            input_size = int(params["l0"]["fwd"]["w_ih"].shape[1])
        except (KeyError, TypeError, AttributeError):
            raise ValueError("params must come from RNN.init: {'l0': {'fwd': {...}}, ...}") from None
        validation.check_tree_shapes(
            "params", params, self.param_specs(input_size),
            hint=f" (this layer: {type(self.cell).__name__}({self.cell.hidden_size}), "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional})",
        )
        x = validation.check_sequence(x, time_major=time_major, input_size=input_size)
        batch_size = x.shape[0 if self.batch_first else 1]
        num_steps = x.shape[1 if self.batch_first else 0]
        lengths = validation.check_lengths(lengths, batch_size, num_steps)
        if hidden_perturbation is not None and (
            jnp.ndim(hidden_perturbation) != 4 or len(hidden_perturbation) != self.num_layers * self.num_directions
        ):
            raise ValueError(
                f"hidden_perturbation must be [num_layers * num_directions = "
                f"{self.num_layers * self.num_directions}, ...outputs of one direction], "
                f"got shape {tuple(jnp.shape(hidden_perturbation))}"
            )
        if initial_carry is not None:
            expected = jax.eval_shape(lambda: self.initial_carry(batch_size, x.dtype))
            validation.check_tree_shapes(
                "initial_carry", initial_carry, expected, hint=" ([num_layers * num_directions, B, H])"
            )

        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and dropout_key is not None:
                dropout_key, sub = jax.random.split(dropout_key)
                keep = jax.random.bernoulli(sub, 1.0 - self.dropout, x.shape)
                x = jnp.where(keep, x / (1.0 - self.dropout), 0.0)
            first = layer * self.num_directions  # this layer's index in h_n
            if self.bidirectional and self._one_scan():
                pair = lambda tree: None if tree is None else jax.tree.map(lambda a: a[first:first + 2], tree)
                y_d, final_d = unroll_both_directions(
                    self.cell, jax.tree.map(lambda f, b: jnp.stack([f, b]), params[f"l{layer}"]["fwd"], params[f"l{layer}"]["bwd"]), x,
                    lengths=lengths, initial_carry_d=pair(initial_carry), time_major=time_major, unroll=self.unroll,
                    remat=self.remat, hidden_perturbation_d=pair(hidden_perturbation), backward=self.backward,
                )
                outputs = [y_d[0], y_d[1]]
                finals += [jax.tree.map(lambda a: a[d], final_d) for d in range(2)]
            else:
                outputs = []
                for d, name in enumerate(DIRECTIONS[: self.num_directions]):
                    carry0 = None if initial_carry is None else jax.tree.map(lambda a: a[first + d], initial_carry)
                    eps = None if hidden_perturbation is None else hidden_perturbation[first + d]
                    y, final = unroll(
                        self.cell, params[f"l{layer}"][name], x,
                        lengths=lengths, initial_carry=carry0, reverse=(name == "bwd"),
                        time_major=time_major, unroll=self.unroll, remat=self.remat, hidden_perturbation=eps,
                        backward=self.backward,
                    )
                    outputs.append(y)
                    finals.append(final)
            x = jnp.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        return x, jax.tree.map(lambda *leaves: jnp.stack(leaves), *finals)
