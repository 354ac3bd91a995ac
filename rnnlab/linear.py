"""Linear recurrences: cells whose state update is linear, ``h_t = a_t ⊙ h_{t-1} + b_t``,
with ``a_t`` and ``b_t`` functions of the input ``x_t`` only.

    layer = RNN(LRUBlock(64), path="associative")     # same API as the other cells
    outputs, final = layer.apply(params, x_bti, lengths_b)

Because the update is linear in ``h``, the whole sequence can be evaluated two ways, chosen
by the layer's ``path`` in the core's one dispatch (``rnnlab.unroll.recurrence``):

  ``"sequential"``   ``jax.lax.scan``, one step after another (T sequential steps);
  ``"associative"``  ``jax.lax.associative_scan`` with the composition of affine maps
                     ``(a1, b1) then (a2, b2) = (a2 a1, a2 b1 + b2)``: O(log T) depth.

Both take the projections of every step at once (one matmul over ``T*B`` rows), and both
are differentiated by JAX.  The cells:

  ``LRUBlock``     the Linear Recurrent Unit (Orvieto et al. 2023) in its block (norm, LRU,
                  GLU, residual): a diagonal complex recurrence ``s_t = λ ⊙ s_{t-1} + γ ⊙ (B v_t)``,
                  ``λ = exp(-exp(ν_log) + i exp(θ_log))``, ``γ = sqrt(1 - |λ|^2)``, ring init;
  ``MinGRUCell``  minGRU (Feng et al. 2024): ``z = σ(W_z x)``, ``h = (1 - z) h + z g(W_h x)``;
  ``MinLSTMCell`` minLSTM: ``f, i = σ(W_f x), σ(W_i x)``, ``h = f/(f+i) h + i/(f+i) g(W_h x)``.

``g(v) = v + 1/2`` for ``v >= 0`` and ``σ(v)`` below: the papers' activation of their
log-space form, which keeps the values positive.  Their log-space evaluation exists for
a parallel scan built from cumulative sums and products (Heinsen's), which divides by
products of ``a`` that underflow; the associative scan here composes affine maps and
never divides, so it evaluates the same recurrence in linear space.

The complex state of the LRU is carried as its real and imaginary parts (``LRUState``), so
that carries, perturbations and checkpoints stay real; the associative evaluation scans it
as complex numbers, which compiled and ran faster than the pairs (benchmarks/README.md).

Semantics shared with every cell: a padded step is the identity (``a = 1``, ``b = 0``),
so the final state is the last valid step's; the hidden perturbation ``eps_t`` is added
to the additive term (to ``b_t``, the LRU's real part), so its gradient is ``dL/dh_t``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from rnnlab.affine import solve_affine
from rnnlab.cells import CellDefaults
from rnnlab.scan import SequenceInputs
from rnnlab.validation import check_positive_int, is_concrete

LINEAR_PATHS = ("sequential", "associative")


class LinearCell(Protocol):
    """The contract of a linear (affine-in-state) cell, ``h_t = a_t ⊙ h_{t-1} + b_t`` with ``a_t``,
    ``b_t`` functions of the inputs only: the ``sequential`` and ``associative`` paths call these.

    Besides ``init``, ``param_specs``, ``input_size_of``, ``initial_carry``, ``carry_hidden``,
    ``replace_hidden``, ``step``, ``recurrent_blocks`` and ``constrain`` (as ``rnnlab.cells.Cell`` and its optional parts):
    """

    hidden_size: int
    paths: tuple[str, ...]

    def prepare(self, params, x_tbi):
        """What ``coefficients`` and ``readout`` read, computed once for all steps."""

    def coefficients(self, params, inputs):
        """``(a, b)``, each ``[T, B, H]`` (or a pair of them, for a complex state)."""

    def readout(self, params, h_tbh, inputs):
        """The outputs ``y [T, B, H]`` from the states (and the prepared inputs)."""

    def mul(self, u, v):
        """The product of two coefficients (complex for the LRU)."""

    def add(self, u, v):
        """Their sum."""

    def add_real(self, b, eps):
        """``b + eps`` for a real ``eps`` (the hidden perturbation)."""

    def where(self, keep, u, v):
        """``u`` where ``keep``, else ``v``."""

    def identity(self, like):
        """``(a, b) = (1, 0)`` shaped like ``like``: what a padded step applies."""

    def to_scan(self, z):
        """How the associative scan holds a coefficient."""

    def from_scan(self, z):
        """Back from the associative scan's form."""


def positive_values(v):
    """``g(v) = v + 1/2`` for ``v >= 0``, ``σ(v)`` below: continuous, positive, increasing."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


class LRUState(NamedTuple):
    """The LRU's complex state ``x = re + i im``, each ``[..., N]``."""

    re: jax.Array
    im: jax.Array


@dataclasses.dataclass(frozen=True)
class LinearCellBase(CellDefaults):
    """``LinearCell`` with real coefficients; subclasses give ``init``, ``coefficients`` and ``readout``."""

    hidden_size: int

    paths: ClassVar[tuple[str, ...]] = LINEAR_PATHS

    def __post_init__(self):
        check_positive_int("hidden_size", self.hidden_size)

    def param_specs(self, input_size: int, dtype=jnp.float32):
        params = jax.eval_shape(lambda: self.init(jax.random.key(0), input_size, dtype))
        return {name: jax.ShapeDtypeStruct(p.shape, p.dtype) for name, p in params.items()}

    # the algebra of the coefficients: real numbers here, complex pairs in the LRU
    def mul(self, u, v):
        return u * v

    def add(self, u, v):
        return u + v

    def add_real(self, b, eps):
        """``b + eps`` for a real ``eps`` (the hidden perturbation)."""
        return b + eps

    def where(self, keep, u, v):
        return jax.tree.map(lambda p, q: jnp.where(keep, p, q), u, v)

    def identity(self, like):
        """``(a, b) = (1, 0)`` shaped like ``like``: what a padded step applies."""
        return jnp.ones_like(like), jnp.zeros_like(like)

    # how the associative scan holds the values (the LRU: as complex numbers)
    def to_scan(self, z):
        return z

    def from_scan(self, z):
        return z

    def prepare(self, params, x_tbi):
        """What ``coefficients`` and ``readout`` read, computed once: the inputs themselves here."""
        return x_tbi

    def coefficients(self, params, inputs):  # pragma: no cover - abstract
        """``(a, b)``, each ``[T, B, H]`` (or an ``LRUState`` of them), from the prepared inputs alone."""
        raise NotImplementedError

    def readout(self, params, h_tbh, inputs):
        """The output ``y_t`` from the state ``h_t`` (and the prepared inputs, for the LRU's skip)."""
        return h_tbh

    def step(self, params, carry, x):
        """One step, for reference loops and the Lyapunov exponents: ``(carry, y)``."""
        inputs = self.prepare(params, x[None])
        a, b = jax.tree.map(lambda v: v[0], self.coefficients(params, inputs))
        carry = self.add(self.mul(a, carry), b)
        return carry, self.readout(params, jax.tree.map(lambda v: v[None], carry), inputs)[0]


def _pytorch_linear(key, rows: int, input_size: int, dtype):
    """``torch.nn.Linear``'s init: weight and bias ``U(±1/sqrt(fan_in))``."""
    k_w, k_b = jax.random.split(key)
    bound = 1.0 / math.sqrt(input_size)
    return (
        jax.random.uniform(k_w, (rows, input_size), dtype, -bound, bound),
        jax.random.uniform(k_b, (rows,), dtype, -bound, bound),
    )


@dataclasses.dataclass(frozen=True)
class MinGRUCell(LinearCellBase):
    r"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"), its log-space model:

        z_t = σ(W_z x_t + b_z),   h̃_t = g(W_h x_t + b_h)
        h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t,   y_t = h_t

    params ``w_ih [2H, I]``, ``b_ih [2H]`` (rows z, h), ``torch.nn.Linear``'s init.

    >>> import jax, jax.numpy as jnp
    >>> from rnnlab import RNN
    >>> layer = RNN(MinGRUCell(4), path="associative")   # parallel over time
    >>> params = layer.init(jax.random.key(0), input_size=2)
    >>> x = jax.random.normal(jax.random.key(1), (3, 16, 2))
    >>> y_par = layer.apply(params, x)[0]
    >>> y_seq = RNN(MinGRUCell(4)).apply(params, x)[0]    # the default: lax.scan
    >>> bool(jnp.allclose(y_par, y_seq, atol=1e-5))
    True
    """

    num_gates: ClassVar[int] = 2

    def init(self, key, input_size: int, dtype=jnp.float32):
        w, b = _pytorch_linear(key, 2 * self.hidden_size, input_size, dtype)
        return {"w_ih": w, "b_ih": b}

    def coefficients(self, params, x_tbi):
        k_z, v = jnp.split(self.project_inputs(params, x_tbi), 2, axis=-1)
        z = jax.nn.sigmoid(k_z)
        return 1.0 - z, z * positive_values(v)


@dataclasses.dataclass(frozen=True)
class MinLSTMCell(LinearCellBase):
    r"""minLSTM (Feng et al. 2024), its log-space model with normalised gates:

        f_t = σ(W_f x_t + b_f),   i_t = σ(W_i x_t + b_i),   h̃_t = g(W_h x_t + b_h)
        h_t = f_t / (f_t + i_t) ⊙ h_{t-1} + i_t / (f_t + i_t) ⊙ h̃_t,   y_t = h_t

    ``f / (f + i) = σ(log f - log i)``, computed so.  params ``w_ih [3H, I]``, ``b_ih [3H]``
    (rows f, i, h).

    >>> import jax, jax.numpy as jnp
    >>> cell = MinLSTMCell(4)
    >>> params = cell.init(jax.random.key(0), input_size=2)
    >>> h, y = cell.step(params, cell.initial_carry((3,)), jnp.ones((3, 2)))
    >>> bool(jnp.all(y > 0))  # g(v) > 0 and the weights f/(f+i), i/(f+i) are positive: from h = 0, h stays > 0
    True
    """

    num_gates: ClassVar[int] = 3

    def init(self, key, input_size: int, dtype=jnp.float32):
        w, b = _pytorch_linear(key, 3 * self.hidden_size, input_size, dtype)
        return {"w_ih": w, "b_ih": b}

    def coefficients(self, params, x_tbi):
        k_f, k_i, v = jnp.split(self.project_inputs(params, x_tbi), 3, axis=-1)
        diff = jax.nn.log_sigmoid(k_f) - jax.nn.log_sigmoid(k_i)  # log f - log i
        return jax.nn.sigmoid(diff), jax.nn.sigmoid(-diff) * positive_values(v)


def _lecun_normal(key, rows: int, fan_in: int, dtype):
    """Flax ``Dense``'s kernel init (LeCun normal: variance 1 / fan_in; truncation aside)."""
    return jax.random.normal(key, (rows, fan_in), dtype) / math.sqrt(fan_in)


def _layer_norm(v, scale, bias, eps=1e-6):
    mean = jnp.mean(v, axis=-1, keepdims=True)
    var = jnp.mean((v - mean) ** 2, axis=-1, keepdims=True)
    return (v - mean) * jax.lax.rsqrt(var + eps) * scale + bias


@dataclasses.dataclass(frozen=True)
class LRUBlock(LinearCellBase):
    r"""The Linear Recurrent Unit (Orvieto et al. 2023) in its block, width H = ``hidden_size``:

        u_t = W_in x_t + b_in                        the block's input at width H
        v_t = LayerNorm(u_t)                         norm (before the LRU)
        s_t = λ ⊙ s_{t-1} + γ ⊙ (B v_t)              the LRU: H complex states
        y_t = u_t + GLU(gelu(Re(C s_t) + D ⊙ v_t))   GLU(z) = (W_1 z + b_1) ⊙ σ(W_2 z + b_2); residual

    ``λ = exp(-exp(ν_log) + i exp(θ_log))``, ``γ = exp(γ_log)``, ``γ_log = log sqrt(1 - |λ|^2)``
    at init (the γ normalisation, §3.3; ``gamma_normalization=False`` is the ablation without it,
    ``γ = 1`` and no ``gamma_log`` parameter).  Ring init (the paper's): ``|λ|^2 ~ U(r_min^2, r_max^2)``
    (``ν_log = log(-log(u1 (r_max^2 - r_min^2) + r_min^2) / 2)``), phase ``θ = max_phase u2``;
    ``B = (N(0,1) + i N(0,1)) / sqrt(2 H)``, ``C = (N(0,1) + i N(0,1)) / sqrt(H)``, ``D ~ N(0, 1)``
    (as the minimal-LRU code an author recommends, NicolasZucchet/minimal-LRU).  The Dense
    layers have Flax's init.  Every layer of a stack starts with ``W_in`` (the paper's stack
    has one encoder before its first layer) so that any input width fits.  The state's real
    part is what the hidden perturbation moves.

    >>> import jax
    >>> block = LRUBlock(8, r_min=0.9, r_max=0.99)
    >>> params = block.init(jax.random.key(0), input_size=3)
    >>> lam = block.eigenvalues(params)
    >>> bool(((lam.re**2 + lam.im**2) ** 0.5).min() >= 0.9)   # the ring init
    True
    >>> block.paths
    ('sequential', 'associative')
    """

    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    gamma_normalization: bool = True
    carry_type: ClassVar[type] = LRUState
    hidden_field: ClassVar[str] = "re"  # the real part is what the hidden perturbation moves

    def __post_init__(self):
        super().__post_init__()
        if is_concrete(self.r_min) and is_concrete(self.r_max):
            if not 0.0 <= self.r_min < self.r_max <= 1.0:
                raise ValueError(f"LRU needs 0 <= r_min < r_max <= 1, got r_min={self.r_min}, r_max={self.r_max}")
        if is_concrete(self.max_phase) and not 0.0 < self.max_phase <= 2 * math.pi:
            raise ValueError(f"LRU max_phase must lie in (0, 2*pi], got {self.max_phase}")
        if not isinstance(self.gamma_normalization, bool):  # --cell-options parses true/false/1/0 to a bool
            raise ValueError(f"LRU gamma_normalization must be a bool, got {self.gamma_normalization!r}")

    def init(self, key, input_size: int, dtype=jnp.float32):
        H = self.hidden_size
        k_u1, k_u2, k_b, k_bi, k_c, k_ci, k_d, k_in, k_glu = jax.random.split(key, 9)
        u1 = jax.random.uniform(k_u1, (H,), dtype)
        u2 = jax.random.uniform(k_u2, (H,), dtype)
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2))
        modulus = jnp.exp(-jnp.exp(nu_log))
        normal = lambda k, shape, scale: jax.random.normal(k, shape, dtype) * scale
        gamma = {"gamma_log": jnp.log(jnp.sqrt(1.0 - modulus**2))} if self.gamma_normalization else {}
        return {
            "w_ih": _lecun_normal(k_in, H, input_size, dtype),
            "b_ih": jnp.zeros((H,), dtype),
            "norm_scale": jnp.ones((H,), dtype),
            "norm_bias": jnp.zeros((H,), dtype),
            "nu_log": nu_log,
            "theta_log": jnp.log(self.max_phase * u2),
            **gamma,
            "B_re": normal(k_b, (H, H), 1.0 / math.sqrt(2 * H)),
            "B_im": normal(k_bi, (H, H), 1.0 / math.sqrt(2 * H)),
            "C_re": normal(k_c, (H, H), 1.0 / math.sqrt(H)),
            "C_im": normal(k_ci, (H, H), 1.0 / math.sqrt(H)),
            "D": normal(k_d, (H,), 1.0),
            "w_glu": _lecun_normal(k_glu, 2 * H, H, dtype),
            "b_glu": jnp.zeros((2 * H,), dtype),
        }

    def eigenvalues(self, params) -> LRUState:
        """``λ`` as ``(Re, Im)``."""
        modulus = jnp.exp(-jnp.exp(params["nu_log"]))
        phase = jnp.exp(params["theta_log"])
        return LRUState(modulus * jnp.cos(phase), modulus * jnp.sin(phase))

    def recurrent_blocks(self, params):
        """``diag(λ)``, complex: ``[1, H, H]``."""
        lam = self.eigenvalues(params)
        return jnp.diag(jax.lax.complex(lam.re, lam.im))[None]

    def mul(self, u, v):
        return LRUState(u.re * v.re - u.im * v.im, u.re * v.im + u.im * v.re)

    def add(self, u, v):
        return LRUState(u.re + v.re, u.im + v.im)

    def add_real(self, b, eps):
        return b._replace(re=b.re + eps)

    def identity(self, like):
        zeros = jnp.zeros_like(like.re)
        return LRUState(jnp.ones_like(like.re), zeros), LRUState(zeros, zeros)

    # complex numbers in the associative scan: on jax 0.10 that compiled 3x faster and ran
    # 1.5x faster than the same scan over (re, im) pairs (benchmarks/README.md)
    def to_scan(self, z):
        return jax.lax.complex(z.re, z.im)

    def from_scan(self, z):
        return LRUState(z.real, z.imag)

    def prepare(self, params, x_tbi):
        """The block's input ``u`` and its normalisation ``v``: the LRU reads ``v``, the residual ``u``."""
        u = self.project_inputs(params, x_tbi)
        return u, _layer_norm(u, params["norm_scale"], params["norm_bias"])

    def coefficients(self, params, inputs):
        _, v = inputs
        gamma = jnp.exp(params["gamma_log"]) if self.gamma_normalization else 1.0
        b = LRUState(gamma * (v @ params["B_re"].T), gamma * (v @ params["B_im"].T))
        a = jax.tree.map(lambda lam, like: jnp.broadcast_to(lam, like.shape), self.eigenvalues(params), b)
        return a, b

    def readout(self, params, h_tbh, inputs):
        u, v = inputs
        z = h_tbh.re @ params["C_re"].T - h_tbh.im @ params["C_im"].T + params["D"] * v  # Re(C s) + D v
        z1, z2 = jnp.split(jax.nn.gelu(z) @ params["w_glu"].T + params["b_glu"], 2, axis=-1)
        return u + z1 * jax.nn.sigmoid(z2)


def recurrence(cell, params, seq: SequenceInputs, *, associative=False, scan_unroll=1):
    """``(final carry, y [T, B, H])`` of a linear cell over ``seq``: ``jax.lax.scan`` (``scan_unroll``
    steps per iteration), or ``jax.lax.associative_scan`` when ``associative`` (``rnnlab.affine``).

    Padded steps (``mask_tb`` false) are the identity map, so the last state is each
    sequence's last valid one; their outputs are zero.  ``eps_tbh`` is added to ``b_t``."""
    x_tbi, carry0, mask_tb, eps_tbh = seq
    inputs = cell.prepare(params, x_tbi)
    # the state in the carry's dtype: float32 for a half-precision layer, as the sequential cells keep
    # it (and the associative scan's complex numbers have no bfloat16 kind)
    carry_dtype = jax.tree.leaves(carry0)[0].dtype
    a, b = jax.tree.map(lambda v: v.astype(carry_dtype), cell.coefficients(params, inputs))
    if eps_tbh is not None:
        b = cell.add_real(b, eps_tbh)
    if mask_tb is not None:
        one, zero = cell.identity(b)
        keep = mask_tb[..., None]
        a, b = cell.where(keep, a, one), cell.where(keep, b, zero)
    # the initial state enters as step 0's additive term: b_0 <- a_0 h_0 + b_0
    first = lambda tree: jax.tree.map(lambda v: v[0], tree)
    b0 = cell.add(cell.mul(first(a), carry0), first(b))
    first_t = lambda v: (jnp.arange(v.shape[0]) == 0).reshape((-1,) + (1,) * (v.ndim - 1))
    b = jax.tree.map(lambda v, v0: jnp.where(first_t(v), v0[None], v), b, b0)  # a select: no scatter to shard
    if not associative:

        def step(h, ab):
            h = cell.add(cell.mul(ab[0], h), ab[1])
            return h, h

        zero_carry = jax.tree.map(jnp.zeros_like, carry0)
        _, h_t = jax.lax.scan(step, zero_carry, (a, b), unroll=scan_unroll)
    else:
        h_t = cell.from_scan(solve_affine(cell.to_scan(a), cell.to_scan(b)))
    y_tbh = cell.readout(params, h_t, inputs)
    if mask_tb is not None:
        y_tbh = jnp.where(mask_tb[..., None], y_tbh, 0)
    return jax.tree.map(lambda v: v[-1], h_t), y_tbh
