"""Transforms on params: a layer trained through other parameters than the ones its cells use.

    layer = Orthogonal(RNN(ElmanCell(64)))       # expRNN
    params = layer.init(key, input_size)         # {"l0": {"fwd": {"w_ih", "a_hh", "b_ih", "b_hh"}}}
    outputs, final = layer.apply(params, x)      # the cells see w_hh = expm(A - A^T)
    cell_params = layer.materialize(params)      # what the cells compute with

A wrapper holds the layer it reparametrises and answers every other attribute
(``cell``, ``num_layers``, ``output_size``, ...) from it, so the Flax shells and
the diagnostics take it wherever they take a layer (Equinox's ``WeightNorm``
wraps a layer the same way).  ``RNN.materialize`` is the identity.

``Orthogonal`` keeps every recurrent matrix orthogonal while training, as
expRNN does (Lezcano-Casado & Martínez-Rubio 2019): the params hold a generator
``a_hh [G*H, H]`` in place of ``w_hh``, and each gate block is ``W = expm(S)``,
``S = triu(A, 1) - triu(A, 1)^T``, the exponential of a skew-symmetric matrix,
computed once per call (``skew_exponential``; its gradient is JAX's derivative
of those matmuls).  Only ``A``'s strict upper triangle is a parameter, as in
the authors' code (lezcano/expRNN ``orthogonal.py``): a full ``A - A^T`` would
move ``S`` twice as fast for the same learning rate.  The generator starts as
Henaff et al.'s (2016) rotations: 2x2 blocks with angles ``U(-pi, pi)``.
(expRNN multiplies ``h expm(S)``, rnnlab ``h W^T = h expm(-S)``: the same model
under ``A -> -A``, and the init's angles are symmetric.)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from rnnlab import cells, validation
from rnnlab.cells import IndRNNCell
from rnnlab.layers import DIRECTIONS, RNN


def skew_exponential(a_hh, taylor_order: int = 10, max_squarings: int = 24) -> jax.Array:
    """``expm(S)``, ``S = triu(A, 1) - triu(A, 1)^T``: orthogonal for any square ``A``.

    Scaling and squaring with matmuls only: ``S / 2^k`` (``k`` from its Frobenius norm,
    so the scaled norm is <= 1/2) through a Taylor series of ``taylor_order`` terms
    (remainder < 0.5^11 / 11! ~ 1e-11), then squared ``k`` times.  ``jax.scipy.linalg.expm``
    computes the same (tested against it) but its branches on the norm fail to
    compile inside a sweep's sharded vmap; this one has no branches.
    """
    upper_hh = jnp.triu(a_hh, 1)
    s_hh = upper_hh - upper_hh.T
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
class Orthogonal:
    """``layer`` with every ``w_hh`` gate block ``expm(S(A))``, trained through ``a_hh``."""

    layer: RNN

    def __post_init__(self):
        cell = self.layer.cell
        H, w_hh = cells.hidden_size(cell), cells.param_specs(cell, 1).get("w_hh")
        if w_hh is None or w_hh.shape[-1] != H or w_hh.shape[0] % H:
            raise ValueError(
                f"Orthogonal wraps a layer whose cell has a dense recurrent matrix w_hh [G*H, H] "
                f"(Elman, LSTM, GRU); {type(cell).__name__} has none"
            )

    def __getattr__(self, name):
        if name == "layer" or name.startswith("__"):  # not set yet (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.layer, name)

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32):
        """The layer's init with each ``w_hh`` replaced by rotation generators, drawn from
        ``fold_in(k, 1)`` of that cell's key ``k`` (the same split as ``RNN.init``)."""
        params = self.layer.init(key, input_size, dtype)
        keys = jax.random.split(key, self.layer.num_layers * self.layer.num_directions)
        cell = self.layer.cell
        for layer in range(self.layer.num_layers):
            for d, name in enumerate(DIRECTIONS[: self.layer.num_directions]):
                p = params[f"l{layer}"][name]
                num_gates = len(p.pop("w_hh")) // cell.hidden_size
                generator_key = jax.random.fold_in(keys[layer * self.layer.num_directions + d], 1)
                p["a_hh"] = rotation_generators(generator_key, num_gates, cell.hidden_size, dtype)
        return params

    def param_specs(self, input_size: int, dtype=jnp.float32):
        specs = self.layer.param_specs(input_size, dtype)
        rename = lambda p: {("a_hh" if k == "w_hh" else k): v for k, v in p.items()}
        return {layer: {d: rename(p) for d, p in directions.items()} for layer, directions in specs.items()}

    def materialize(self, params):
        """The params the cells compute with: every generator ``a_hh`` replaced by ``w_hh``."""
        H = self.layer.cell.hidden_size

        def cell_params(p):
            p = dict(p)
            a_ghh = p.pop("a_hh").reshape(-1, H, H)
            p["w_hh"] = jax.vmap(skew_exponential)(a_ghh).reshape(-1, H)
            return p

        return {layer: {d: cell_params(p) for d, p in directions.items()} for layer, directions in params.items()}

    def apply(self, params, x, lengths=None, initial_carry=None, **options):
        """``RNN.apply`` (same arguments and results) with the materialised params."""
        validation.check_tree_shapes("params", params, self.param_specs(self.layer.params_input_size(params)))
        return self.layer.apply(self.materialize(params), x, lengths, initial_carry, **options)


@dataclasses.dataclass(frozen=True)
class IndRNNStack:
    """A stack of IndRNN layers with the authors' per-layer init: ``u ~ U(0, U_bound)`` in every
    layer but the last, ``U(1/U_bound, U_bound)`` in the last, the one the output reads
    (Sunnydreamrain/IndRNN_Theano_Lasagne ``adding/adding.py``; their README: "only the last
    one not all").  One layer is the last layer.  Nothing else differs from ``layer``.

    >>> import jax
    >>> from rnnlab.cells import IndRNNCell
    >>> stack = IndRNNStack(RNN(IndRNNCell(512, t_max=100), num_layers=2))
    >>> params = stack.init(jax.random.key(0), input_size=2)
    >>> bool(params["l0"]["fwd"]["u"].min() < 0.1), bool(params["l1"]["fwd"]["u"].min() > 0.99)
    (True, True)
    """

    layer: RNN

    def __post_init__(self):
        if not isinstance(self.layer.cell, IndRNNCell):
            raise ValueError(f"IndRNNStack wraps a layer of IndRNNCell, got {type(self.layer.cell).__name__}")

    def __getattr__(self, name):
        if name == "layer" or name.startswith("__"):  # not set yet (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.layer, name)

    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32):
        """``RNN.init`` with the same keys; the layers below the last re-drawn with ``u_init="uniform"``."""
        params = self.layer.init(key, input_size, dtype)
        lower = dataclasses.replace(self.layer.cell, u_init="uniform")
        directions = DIRECTIONS[: self.layer.num_directions]
        keys = jax.random.split(key, self.layer.num_layers * len(directions))
        for layer in range(self.layer.num_layers - 1):
            for d, name in enumerate(directions):
                size = self.layer.layer_input_size(layer, input_size)
                params[f"l{layer}"][name] = lower.init(keys[layer * len(directions) + d], size, dtype)
        return params
