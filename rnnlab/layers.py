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

``orthogonal_recurrence=True`` keeps every recurrent matrix orthogonal while
training, as expRNN does (Lezcano-Casado & Martínez-Rubio 2019): the params
hold a generator ``a_hh [G*H, H]`` in place of ``w_hh``, and each gate block is
``W = expm(A - A^T)``, the exponential of a skew-symmetric matrix, computed
once per call by scaling and squaring (``skew_exponential``; its gradient is
JAX's derivative of those matmuls).  The generator
starts as Henaff et al.'s (2016) rotations: 2x2 blocks with angles
``U(-pi, pi)``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rnnlab import validation
from rnnlab.cells import NAMED_CELLS, Cell, ElmanCell, GRUCell, LSTMCell, make_cell
from rnnlab.scan import BACKWARDS, unroll, unroll_both_directions, unroll_layers

DIRECTIONS = ("fwd", "bwd")


def skew_exponential(a_hh, taylor_order: int = 10, max_squarings: int = 24) -> jax.Array:
    """``expm(S)``, ``S = A - A^T``: orthogonal for any square ``A``.

    Scaling and squaring with matmuls only: ``S / 2^k`` (``k`` from its Frobenius norm,
    so the scaled norm is <= 1/2) through a Taylor series of ``taylor_order`` terms
    (remainder < 0.5^11 / 11! ~ 1e-11), then squared ``k`` times.  ``jax.scipy.linalg.expm``
    computes the same (tested against it) but its branches on the norm fail to
    compile inside a sweep's sharded vmap; this one has no branches.
    """
    s_hh = a_hh - a_hh.T
    norm = jnp.sqrt(jnp.sum(s_hh * s_hh))
    k = jnp.clip(jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-30))) + 1, 0, max_squarings)
    x_hh = s_hh / 2.0**k
    eye = jnp.eye(s_hh.shape[0], dtype=s_hh.dtype)
    w_hh = eye
    for n in range(taylor_order, 0, -1):  # Horner: I + X/1 (I + X/2 (I + ...))
        w_hh = eye + (x_hh @ w_hh) / n
    for i in range(max_squarings):
        w_hh = jnp.where(i < k, w_hh @ w_hh, w_hh)
    return w_hh


def rotation_generators(key, num_gates: int, hidden_size: int, dtype=jnp.float32) -> jax.Array:
    """``[G*H, H]`` generators whose ``skew_exponential`` is a block rotation: angles
    ``U(-pi, pi)`` on the 2x2 diagonal blocks (Henaff et al. 2016; an odd unit keeps 1)."""
    half = hidden_size // 2
    theta = jax.random.uniform(key, (num_gates, half), dtype, -jnp.pi, jnp.pi)
    a = jnp.zeros((num_gates, hidden_size, hidden_size), dtype)
    a = a.at[:, 2 * jnp.arange(half), 2 * jnp.arange(half) + 1].set(theta)
    return a.reshape(num_gates * hidden_size, hidden_size)


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
    # a unidirectional stack as one scan of T + L - 1 steps, layer l at time t - l
    # (rnnlab.scan.unroll_layers, with its own fused VJP).  Off by default: on a CPU it
    # measured slower than layer after layer; it is the lever for latency-bound GPU
    # steps, not measured here (benchmarks/README.md).  With a hidden_perturbation (the
    # diagnostics) the per-layer path runs.
    wavefront: bool = False
    orthogonal_recurrence: bool = False  # expRNN: w_hh = expm(A - A^T), trained through A

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
            params[f"l{layer}"] = {}
            for d, name in enumerate(DIRECTIONS[: self.num_directions]):
                cell_params = self.cell.init(keys[layer * self.num_directions + d], size, dtype)
                if self.orthogonal_recurrence:
                    generator_key = jax.random.fold_in(keys[layer * self.num_directions + d], 1)
                    cell_params["a_hh"] = rotation_generators(
                        generator_key, self.cell.num_gates, self.cell.hidden_size, dtype
                    )
                    del cell_params["w_hh"]
                params[f"l{layer}"][name] = cell_params
        return params

    def param_specs(self, input_size: int, dtype=jnp.float32):
        def cell_specs(size):
            specs = self.cell.param_specs(size, dtype)
            if self.orthogonal_recurrence:
                specs["a_hh"] = specs.pop("w_hh")
            return specs

        return {
            f"l{layer}": {
                name: cell_specs(self.layer_input_size(layer, input_size)) for name in DIRECTIONS[: self.num_directions]
            }
            for layer in range(self.num_layers)
        }

    def recurrent_matrices(self, params):
        """The params the cells compute with: ``params`` itself, or with every generator
        ``a_hh`` replaced by its orthogonal ``w_hh`` (``orthogonal_recurrence``)."""
        if not self.orthogonal_recurrence:
            return params
        H = self.cell.hidden_size

        def cell_params(p):
            p = dict(p)
            a_ghh = p.pop("a_hh").reshape(-1, H, H)
            p["w_hh"] = jax.vmap(skew_exponential)(a_ghh).reshape(-1, H)
            return p

        return {layer: {d: cell_params(p) for d, p in directions.items()} for layer, directions in params.items()}

    def _dropout_scales(self, dropout_key, shape, dtype):
        """Inverted dropout between layers: ``keep / (1 - p)`` for the inputs of layers
        ``1..L-1``, each ``shape``; ``None`` without a key (evaluation) or dropout."""
        if self.dropout == 0 or dropout_key is None or self.num_layers == 1:
            return None
        keys = jax.random.split(dropout_key, self.num_layers - 1)
        return [jax.random.bernoulli(k, 1.0 - self.dropout, shape).astype(dtype) / (1.0 - self.dropout) for k in keys]

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
            "params",
            params,
            self.param_specs(input_size),
            hint=f" (this layer: {type(self.cell).__name__}({self.cell.hidden_size}), "
            f"num_layers={self.num_layers}, bidirectional={self.bidirectional})",
        )
        params = self.recurrent_matrices(params)
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

        scales = self._dropout_scales(dropout_key, x.shape[:-1] + (self.output_size,), x.dtype)
        if self.wavefront and not self.bidirectional and self.num_layers > 1 and hidden_perturbation is None:
            return unroll_layers(
                self.cell,
                [params[f"l{layer}"]["fwd"] for layer in range(self.num_layers)],
                x,
                lengths=lengths,
                initial_carry_l=initial_carry,
                time_major=time_major,
                unroll=self.unroll,
                remat=self.remat,
                input_scale_l=None if scales is None else jnp.stack(scales),
                backward=self.backward,
            )
        finals = []
        for layer in range(self.num_layers):
            if layer > 0 and scales is not None:
                x = x * scales[layer - 1]
            first = layer * self.num_directions  # this layer's index in h_n
            if self.bidirectional and self._one_scan():
                pair = lambda tree: None if tree is None else jax.tree.map(lambda a: a[first : first + 2], tree)
                y_d, final_d = unroll_both_directions(
                    self.cell,
                    jax.tree.map(
                        lambda f, b: jnp.stack([f, b]), params[f"l{layer}"]["fwd"], params[f"l{layer}"]["bwd"]
                    ),
                    x,
                    lengths=lengths,
                    initial_carry_d=pair(initial_carry),
                    time_major=time_major,
                    unroll=self.unroll,
                    remat=self.remat,
                    hidden_perturbation_d=pair(hidden_perturbation),
                    backward=self.backward,
                )
                outputs = [y_d[0], y_d[1]]
                finals += [jax.tree.map(lambda a: a[d], final_d) for d in range(2)]
            else:
                outputs = []
                for d, name in enumerate(DIRECTIONS[: self.num_directions]):
                    carry0 = None if initial_carry is None else jax.tree.map(lambda a: a[first + d], initial_carry)
                    eps = None if hidden_perturbation is None else hidden_perturbation[first + d]
                    y, final = unroll(
                        self.cell,
                        params[f"l{layer}"][name],
                        x,
                        lengths=lengths,
                        initial_carry=carry0,
                        reverse=(name == "bwd"),
                        time_major=time_major,
                        unroll=self.unroll,
                        remat=self.remat,
                        hidden_perturbation=eps,
                        backward=self.backward,
                    )
                    outputs.append(y)
                    finals.append(final)
            x = jnp.concatenate(outputs, axis=-1) if len(outputs) > 1 else outputs[0]
        return x, jax.tree.map(lambda *leaves: jnp.stack(leaves), *finals)


# -- the named models the experiments compare: cells, and the remedies for vanishing gradients --

REMEDIES = {
    "lstm_chrono": "LSTM, chrono initialisation with T_max = the sequence length (Tallec & Ollivier 2018)",
    "gru_chrono": "GRU, chrono initialisation of the update gate, T_max = the sequence length",
    "rnn_orthogonal": "tanh Elman RNN, orthogonal recurrent init",
    "exprnn": "tanh Elman RNN, W_hh = expm(A - A^T) kept orthogonal (Lezcano-Casado & Martinez-Rubio 2019)",
}
NAMED_MODELS = {**NAMED_CELLS, **REMEDIES}
CHRONO_MODELS = ("lstm_chrono", "gru_chrono")  # their init depends on t_max


def make_layer(name: str, hidden_size: int, *, t_max: float | None = None, forget_bias: float = 1.0) -> RNN:
    """A one-layer ``RNN`` of one of ``NAMED_MODELS``.  ``t_max`` (the longest dependency,
    usually the sequence length) is needed by the chrono models; ``forget_bias`` is the
    plain LSTM's (it may be traced: a sweep over it shares one program)."""
    if name in CHRONO_MODELS:
        if t_max is None:
            raise ValueError(f"{name} needs t_max (the sequence length) for its chrono initialisation")
        cell_type = LSTMCell if name == "lstm_chrono" else GRUCell
        return RNN(cell_type(hidden_size, chrono_t_max=float(t_max)))
    if name == "rnn_orthogonal":
        return RNN(ElmanCell(hidden_size, recurrent_init="orthogonal"))
    if name == "exprnn":
        return RNN(ElmanCell(hidden_size), orthogonal_recurrence=True)
    return RNN(make_cell(name, hidden_size, forget_bias=forget_bias))
