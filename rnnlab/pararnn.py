r"""ParaRNN's cells (Danieli et al. 2025, apple/ml-pararnn; public fork xaviergonzalez/ml-pararnn
``pararnn/rnn_cell/gru_diag_mh.py``, ``lstm_cifg_diag_mh.py``, ``pararnn/utils/init.py``): a GRU
and a CIFG LSTM whose recurrences are *diagonal*, so that each unit only reads itself and the
Jacobian of a step is diagonal (ParaGRU) or 2x2 per unit (ParaLSTM's ``(h, c)``).  Newton's
method over the sequence (``rnnlab.newton``) then needs no approximation: the ``quasi_newton``
path, which keeps each unit's block of the Jacobian, IS exact Newton for them.

The input projection is split into heads as in the authors' code: ``B [heads, I/heads, 3, H/heads]``
is block diagonal, head k's state units reading only head k's slice of the input (``num_heads``
must divide both I and H; the authors' default is 2).  Params keep the authors' names and layout
(``A``, ``B``, ``b``, ``C``), so their weights load without arithmetic.  The initialisation is the
defaults of the Apple authors' cell code (the ``Config`` of ``gru_diag_mh.py`` and
``lstm_cifg_diag_mh.py``, the functions in ``pararnn/utils/init.py``): ``a_init_fn="xlstm"``,
``w_init_fn="xavier_uniform"``, ``b_init_fn="bias_minus_linspace"``.  (The fork's ``training/``
folder, added by a later commit of the fork, is not the Apple authors' code.)

The cells are theirs, not their solver: theirs runs a fixed ``max_its = 3`` Newton iterations
with no tolerance test, from the guess ``f(0, x_t)``, in float32
(``pararnn/parallel_reduction/parallel_reduction.py``); ``rnnlab.newton`` stops on its own
tolerance, from zeros unless given ``initial_guess`` (docs/reproductions.md, section 8).

Both are three-method cells plus the Jacobian structure (``rnnlab.cells.JacobianCell``): they
run the ``autodiff``, ``remat``, ``newton`` and ``quasi_newton`` paths (not ``fused``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from rnnlab.cells import STEP_PATHS, CellDefaults, LSTMState, StepJacobian, check_class_switches
from rnnlab.validation import check_positive_int


def xlstm_normal(key, shape, fan_in, dtype):
    """``a_init_fn="xlstm"``: ``N(0, (2 / sqrt(5 fan_in))^2)`` with ``fan_in`` = H."""
    return (2.0 / math.sqrt(5.0 * fan_in)) * jax.random.normal(key, shape, dtype)


def xavier_uniform(key, shape, fan_in, fan_out, dtype):
    """``w_init_fn="xavier_uniform"``: ``U(±sqrt(6 / (fan_in + fan_out)))``."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def bias_minus_linspace(shape, dtype):
    """``b_init_fn="bias_minus_linspace"``: zeros, and the first gate's row ``-linspace(0, 1, H)``."""
    return jnp.zeros(shape, dtype).at[0].set(-jnp.linspace(0.0, 1.0, shape[-1], dtype=dtype))


@dataclasses.dataclass(frozen=True)
class _ParaCell(CellDefaults):
    hidden_size: int
    num_heads: int = 2

    paths: ClassVar[tuple[str, ...]] = STEP_PATHS
    num_rows: ClassVar[int] = 3  # gate rows of A, B, b

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_class_switches(cls)

    def __post_init__(self):
        check_positive_int("hidden_size", self.hidden_size)
        check_positive_int("num_heads", self.num_heads)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"{type(self).__name__}: num_heads={self.num_heads} must divide hidden_size={self.hidden_size}"
            )

    def _check_input(self, input_size):
        check_positive_int("input_size", input_size)
        if input_size % self.num_heads:
            raise ValueError(
                f"{type(self).__name__}: num_heads={self.num_heads} must divide the input size {input_size} "
                "(each head reads its own slice of the input)"
            )

    def input_size_of(self, params):
        try:
            return int(params["B"].shape[0] * params["B"].shape[1])
        except (KeyError, TypeError, IndexError, AttributeError):
            raise ValueError(
                f"params must be a dict with 'B' [heads, I/heads, 3, H/heads] for {type(self).__name__}"
            ) from None

    def param_specs(self, input_size, dtype=jnp.float32):
        params = jax.eval_shape(lambda: self.init(jax.random.key(0), input_size, dtype))
        return {name: jax.ShapeDtypeStruct(p.shape, p.dtype) for name, p in params.items()}

    def _init_ab(self, key, input_size, dtype, fan_out_b):
        self._check_input(input_size)
        H, heads = self.hidden_size, self.num_heads
        k_a, k_b = jax.random.split(key)
        return {
            "A": xlstm_normal(k_a, (self.num_rows, H), H, dtype),
            "B": xavier_uniform(
                k_b, (heads, input_size // heads, self.num_rows, H // heads), input_size // heads, fan_out_b, dtype
            ),
            "b": bias_minus_linspace((self.num_rows, H), dtype),
        }

    def project_inputs(self, params, x):
        """``B x + b``: ``[..., I] -> [..., 3, H]``, head k's units from head k's inputs
        (the authors' ``einsum('...hi,hivj->...vhj')``)."""
        heads = params["B"].shape[0]
        xh = x.reshape(x.shape[:-1] + (heads, -1))
        proj = jnp.einsum("...hi,hivj->...vhj", xh, params["B"])
        return proj.reshape(proj.shape[:-2] + (-1,)) + params["b"]


@dataclasses.dataclass(frozen=True)
class ParaGRUCell(_ParaCell):
    r"""ParaRNN's diagonal GRU (``GRUDiagMH``): gate rows ``(z, r, h)``, every recurrent matrix diagonal.

        z_t = σ(A_z ⊙ h_{t-1} + (B x_t)_z + b_z)                  update gate
        r_t = σ(A_r ⊙ h_{t-1} + (B x_t)_r + b_r)                  reset gate
        ĥ_t = tanh(A_h ⊙ (h_{t-1} ⊙ r_t) + (B x_t)_h + b_h)       candidate
        h_t = z_t ⊙ ĥ_t + (1 - z_t) ⊙ h_{t-1},   y_t = h_t

    (``z`` weighs the candidate: the opposite of PyTorch's GRU.)  Params ``A [3, H]``,
    ``B [heads, I/heads, 3, H/heads]``, ``b [3, H]``.  Init: ``A ~ N(0, 4/(5H))`` (xlstm),
    ``B ~ U(±sqrt(6/(I/heads + H)))`` (xavier_uniform, fan_out = H as in their code), ``b = 0``
    with ``b_z = -linspace(0, 1, H)``.

    >>> import jax, jax.numpy as jnp
    >>> cell = ParaGRUCell(4)
    >>> params = cell.init(jax.random.key(0), input_size=2)
    >>> {k: v.shape for k, v in params.items()}
    {'A': (3, 4), 'B': (2, 1, 3, 2), 'b': (3, 4)}
    >>> h, y = cell.step(params, cell.initial_carry((5,)), jnp.ones((5, 2)))
    >>> y.shape
    (5, 4)
    """

    def init(self, key, input_size: int, dtype=jnp.float32):
        return self._init_ab(key, input_size, dtype, fan_out_b=self.hidden_size)

    def _gates(self, params, h, x):
        pre = self.project_inputs(params, x)
        A = params["A"]
        z_pre, r_pre = A[0] * h + pre[..., 0, :], A[1] * h + pre[..., 1, :]
        z, r = jax.nn.sigmoid(z_pre), jax.nn.sigmoid(r_pre)
        cand = jnp.tanh(A[2] * h * r + pre[..., 2, :])
        return z, r, cand, z * cand + (1.0 - z) * h

    def step(self, params, h, x):
        new_h = self._gates(params, h, x)[-1]
        return new_h, new_h

    def step_jacobian(self, params, h, x):
        """Diagonal: ``(1 - z) + (ĥ - h) z' A_z + z tanh' A_h (r + h r' A_r)`` (the authors'
        ``_compute_jacobians_inner``, without their residual's minus sign)."""
        z, r, cand, new_h = self._gates(params, h, x)
        A = params["A"]
        d_z, d_r, d_cand = z * (1.0 - z) * A[0], r * (1.0 - r) * A[1], (1.0 - cand**2) * A[2]
        diag = (1.0 - z) + (cand - h) * d_z + z * d_cand * (r + h * d_r)
        return new_h, new_h, StepJacobian(new_h.shape, new_h.dtype, ((diag,),))


@dataclasses.dataclass(frozen=True)
class ParaLSTMCell(_ParaCell):
    r"""ParaRNN's diagonal LSTM with coupled input and forget gates (``LSTMCIFGDiagMH``), with
    peepholes ``C``: gate rows ``(f, o, c)``.

        f_t = σ(A_f ⊙ h_{t-1} + (B x_t)_f + b_f + C_f ⊙ c_{t-1})     forget gate (input gate 1 - f)
        ĉ_t = tanh(A_c ⊙ h_{t-1} + (B x_t)_c + b_c)                  candidate
        c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ ĉ_t
        o_t = σ(A_o ⊙ h_{t-1} + (B x_t)_o + b_o + C_o ⊙ c_t)         output gate (peeks at the new c)
        h_t = o_t ⊙ tanh(c_t),   y_t = h_t

    Params ``A [3, H]``, ``B [heads, I/heads, 3, H/heads]``, ``b [3, H]``, ``C [2, H]``.  Init: ``A``
    and ``C ~ N(0, 4/(5H))`` (xlstm), ``B ~ U(±sqrt(6/(I/heads + H/heads)))`` (xavier_uniform,
    fan_out = H/heads as in their code), ``b = 0`` with ``b_f = -linspace(0, 1, H)``.  The carry is
    ``LSTMState(h, c)`` (the authors collate ``[c, h]``).

    >>> import jax, jax.numpy as jnp
    >>> cell = ParaLSTMCell(4)
    >>> params = cell.init(jax.random.key(0), input_size=2)
    >>> sorted((k, v.shape) for k, v in params.items())
    [('A', (3, 4)), ('B', (2, 1, 3, 2)), ('C', (2, 4)), ('b', (3, 4))]
    >>> carry, y = cell.step(params, cell.initial_carry((5,)), jnp.ones((5, 2)))
    >>> type(carry).__name__, bool(jnp.all(y == carry.h))
    ('LSTMState', True)
    """

    carry_type: ClassVar[type] = LSTMState
    hidden_field: ClassVar[str] = "h"

    def init(self, key, input_size: int, dtype=jnp.float32):
        params = self._init_ab(key, input_size, dtype, fan_out_b=self.hidden_size // self.num_heads)
        return params | {"C": xlstm_normal(jax.random.fold_in(key, 1), (2, self.hidden_size), self.hidden_size, dtype)}

    def _gates(self, params, carry, x):
        pre = self.project_inputs(params, x)
        A, C = params["A"], params["C"]
        h, c = carry.h, carry.c
        f_pre = A[0] * h + pre[..., 0, :] + C[0] * c
        c_pre = A[2] * h + pre[..., 2, :]
        f, cand = jax.nn.sigmoid(f_pre), jnp.tanh(c_pre)
        new_c = f * c + (1.0 - f) * cand
        o = jax.nn.sigmoid(A[1] * h + pre[..., 1, :] + C[1] * new_c)
        tc = jnp.tanh(new_c)
        return f, cand, o, tc, LSTMState(o * tc, new_c)

    def step(self, params, carry, x):
        new = self._gates(params, carry, x)[-1]
        return new, new.h

    def step_jacobian(self, params, carry, x):
        """2x2 per unit over ``(h, c)`` (the authors' ``Jcc, Jch, Jhc, Jhh``, signs as a step's)."""
        f, cand, o, tc, new = self._gates(params, carry, x)
        A, C = params["A"], params["C"]
        d_f = f * (1.0 - f)
        cc = f + (carry.c - cand) * d_f * C[0]  # ∂c'/∂c
        ch = (carry.c - cand) * d_f * A[0] + (1.0 - f) * (1.0 - cand**2) * A[2]  # ∂c'/∂h
        d_o = o * (1.0 - o)
        through_c = d_o * C[1] * tc + o * (1.0 - tc**2)  # ∂h'/∂c' (o peeks at c')
        hh = d_o * A[1] * tc + through_c * ch
        hc = through_c * cc
        return new, new.h, StepJacobian(new.h.shape, new.h.dtype, ((hh, hc), (ch, cc)))
