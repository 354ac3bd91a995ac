"""Pure recurrent cells: Elman (simple RNN), LSTM and GRU.

A cell is a frozen dataclass of static hyperparameters with pure methods

    init(key, input_size)             -> params
    initial_carry(batch_shape)        -> carry (zeros)
    step(params, carry, x)            -> (carry, y)

Params are a dict in PyTorch's layout, gates fused along the first axis:
``w_ih [G*H, I]``, ``w_hh [G*H, H]``, ``b_ih [G*H]``, ``b_hh [G*H]`` (the
biases are absent when ``use_bias=False``), G = 1 (Elman), 4 (LSTM), 3 (GRU).
A cell whose gate arithmetic has parameters of its own (modReLU's bias
``b_mod [H]``) names them in ``cell.elementwise``; they reach the arithmetic as
the dict ``cell.elementwise_params(params)``.

A step also comes in pieces: ``project_inputs`` (``x W_ih^T + b_ih``),
``recurrent_projection`` (``h W_hh^T + b_hh``) and the elementwise gate
arithmetic ``step_from_projections``; ``step`` is them composed.
``rnnlab.scan`` computes the projections its own way (both inside the loop,
see there) and calls ``step_from_projections``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab import initializers
from rnnlab.validation import check_positive_int, is_concrete

Params = dict[str, jax.Array]


def modrelu(z: jax.Array, b: jax.Array) -> jax.Array:
    r"""modReLU (Arjovsky, Shah & Bengio 2016), real-valued as in expRNN:

        modReLU(z) = sign(z) * relu(|z| + b)

    A unit passes ``z`` shrunk towards 0 by ``-b`` (or grown by ``b > 0``); ``|z| < -b``
    gives 0.  The bias enters after ``|z|``, which is why it is not a projection bias."""
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + b)


ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "linear": lambda z: z, "modrelu": modrelu}


class LSTMState(NamedTuple):
    """The LSTM carry: hidden state ``h`` and cell state ``c``, each ``[..., H]``."""

    h: jax.Array
    c: jax.Array


@dataclasses.dataclass(frozen=True)
class _Cell:
    """Hyperparameters shared by every cell (see ``rnnlab.initializers`` for the names).

    The numeric init options (``recurrent_gain``, ``spectral_radius``, the LSTM's
    ``forget_bias``) only change the values ``init`` returns, never ``step``: a
    sweep builds the cell with them traced inside ``jax.vmap(init)`` and runs
    every point through one compiled step.
    """

    hidden_size: int
    use_bias: bool = True
    input_init: str = "pytorch"
    recurrent_init: str = "pytorch"
    recurrent_gain: float = 1.0
    spectral_radius: float | None = None
    bias_init: str = "pytorch"

    num_gates: ClassVar[int] = 1
    elementwise: ClassVar[tuple[str, ...]] = ()  # params of the gate arithmetic itself, each [H]
    # True when ``step_from_projections`` uses ``xp`` and ``hp`` only through
    # ``xp + hp``: the fused backward then saves and differentiates one array.
    sums_projections: ClassVar[bool] = True

    def __post_init__(self):
        check_positive_int("hidden_size", self.hidden_size)
        initializers.check_name("input_init", self.input_init, initializers.INPUT_INITS)
        initializers.check_name("recurrent_init", self.recurrent_init, initializers.RECURRENT_INITS)
        initializers.check_name("bias_init", self.bias_init, initializers.BIAS_INITS)
        # numeric init options may be traced (a sweep vmaps over them); they are checked when concrete
        if self.spectral_radius is not None and is_concrete(self.spectral_radius) and not self.spectral_radius > 0:
            raise ValueError(f"spectral_radius must be > 0, got {self.spectral_radius!r}")

    # -- parameters -------------------------------------------------------
    def init(self, key: jax.Array, input_size: int, dtype=jnp.float32) -> Params:
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size must be a positive int, got {input_size!r}")
        key_ih, key_hh, key_b = jax.random.split(key, 3)
        G, H = self.num_gates, self.hidden_size
        params = {
            "w_ih": initializers.input_weights(self.input_init, key_ih, G, H, input_size, dtype),
            "w_hh": initializers.recurrent_weights(
                self.recurrent_init, key_hh, G, H, dtype, self.recurrent_gain, self.spectral_radius
            ),
        }
        if self.use_bias:
            params["b_ih"], params["b_hh"] = initializers.biases(self.bias_init, key_b, G, H, dtype)
        return params | self.init_elementwise(jax.random.fold_in(key, 2), dtype)

    def init_elementwise(self, key, dtype=jnp.float32) -> Params:
        """The params named in ``elementwise`` (none for most cells)."""
        return {}

    def elementwise_params(self, params: Params) -> Params:
        """The params the gate arithmetic uses (``step_from_projections``' last argument)."""
        return {name: params[name] for name in self.elementwise}

    def param_specs(self, input_size: int, dtype=jnp.float32) -> dict[str, jax.ShapeDtypeStruct]:
        """The shape of every parameter, for validation and for checkpoints."""
        GH = self.num_gates * self.hidden_size
        shapes = {"w_ih": (GH, input_size), "w_hh": (GH, self.hidden_size)}
        if self.use_bias:
            shapes.update(b_ih=(GH,), b_hh=(GH,))
        shapes.update({name: (self.hidden_size,) for name in self.elementwise})
        return {name: jax.ShapeDtypeStruct(shape, dtype) for name, shape in shapes.items()}

    def initial_carry(self, batch_shape: tuple[int, ...] = (), dtype=jnp.float32) -> Any:
        return jnp.zeros(tuple(batch_shape) + (self.hidden_size,), dtype)

    def carry_hidden(self, carry) -> jax.Array:
        """The hidden state ``h`` inside a carry (the carry itself for Elman and GRU)."""
        return carry

    def replace_hidden(self, carry, h: jax.Array):
        """The carry with its hidden state replaced by ``h``."""
        return h

    # -- the step ---------------------------------------------------------
    def project_inputs(self, params: Params, x: jax.Array) -> jax.Array:
        """``x W_ih^T + b_ih`` for inputs ``x [..., I]`` -> ``[..., G*H]``."""
        xp = x @ params["w_ih"].T
        return xp + params["b_ih"] if self.use_bias else xp

    def recurrent_projection(self, params: Params, h: jax.Array) -> jax.Array:
        """``h W_hh^T + b_hh`` -> ``[..., G*H]``."""
        hp = h @ params["w_hh"].T
        return hp + params["b_hh"] if self.use_bias else hp

    def step(self, params: Params, carry, x: jax.Array):
        return self.step_projected(params, carry, self.project_inputs(params, x))

    def step_projected(self, params: Params, carry, xp: jax.Array):
        """One step from the projected input ``xp = x W_ih^T + b_ih``."""
        hp = self.recurrent_projection(params, self.carry_hidden(carry))
        return self.step_from_projections(carry, xp, hp, self.elementwise_params(params))

    def step_from_projections(self, carry, xp: jax.Array, hp: jax.Array, elementwise: Params):  # pragma: no cover
        """The gate arithmetic given both projections ``xp`` and ``hp = h W_hh^T + b_hh`` and
        the cell's ``elementwise_params``: elementwise only, so the scan can do the matmuls its own way."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ElmanCell(_Cell):
    r"""Elman's simple recurrent network (SRN), ``torch.nn.RNN``'s cell.

        h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   y_t = h_t

    with ``act`` = ``"tanh"``, ``"relu"``, ``"linear"`` (the identity: a linear RNN, whose
    Lyapunov exponents are the logs of ``|eig(W_hh)|``) or ``"modrelu"``:
    ``act(z) = modrelu(z, b_mod)`` with its own bias ``b_mod [H] ~ U(-0.01, 0.01)``
    (expRNN's draw, lezcano/expRNN ``orthogonal.py``), usually with ``use_bias=False``.
    """

    activation: str = "tanh"

    def __post_init__(self):
        super().__post_init__()
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {', '.join(ACTIVATIONS)}")

    @property
    def elementwise(self) -> tuple[str, ...]:
        return ("b_mod",) if self.activation == "modrelu" else ()

    def init_elementwise(self, key, dtype=jnp.float32):
        if self.activation != "modrelu":
            return {}
        return {"b_mod": jax.random.uniform(key, (self.hidden_size,), dtype, -0.01, 0.01)}

    def step_from_projections(self, h, xp, hp, elementwise):
        z = xp + hp
        h = modrelu(z, elementwise["b_mod"]) if self.activation == "modrelu" else ACTIVATIONS[self.activation](z)
        return h, h


@dataclasses.dataclass(frozen=True)
class LSTMCell(_Cell):
    r"""Long short-term memory, ``torch.nn.LSTM``'s cell (gate order i, f, g, o).

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   candidate
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t),   y_t = h_t

    ``W_i* = w_ih[k*H:(k+1)*H]`` for gate k in (i, f, g, o), likewise ``w_hh``,
    ``b_ih``, ``b_hh``.  ``forget_bias``, when set, makes the forget gate's
    total bias ``b_if + b_hf`` equal to it at init (``b_if = forget_bias``,
    ``b_hf = 0``); ``None`` keeps the ``bias_init`` draw, as PyTorch does.
    ``chrono_t_max``, when set, is Tallec & Ollivier's (2018) chrono
    initialisation instead: ``b_f ~ log U(1, T_max - 1)`` per unit and
    ``b_i = -b_f`` (the ``b_hh`` parts zero), so the units' forget time
    constants ``~ 1 / (1 - σ(b_f))`` spread over ``1..T_max``.
    Nothing is added in the forward pass: the bias lives in the params.
    """

    forget_bias: float | None = None
    chrono_t_max: float | None = None
    num_gates: ClassVar[int] = 4

    def __post_init__(self):
        super().__post_init__()
        if self.forget_bias is not None and not self.use_bias:
            raise ValueError("forget_bias needs use_bias=True")
        if self.forget_bias is not None and self.chrono_t_max is not None:
            raise ValueError("forget_bias and chrono_t_max both set the forget-gate bias: choose one")
        _check_chrono(self)

    def init(self, key, input_size, dtype=jnp.float32):
        params = super().init(key, input_size, dtype)
        H = self.hidden_size
        if self.forget_bias is not None:
            params["b_ih"] = params["b_ih"].at[H : 2 * H].set(self.forget_bias)
            params["b_hh"] = params["b_hh"].at[H : 2 * H].set(0.0)
        if self.chrono_t_max is not None:
            b_f = chrono_biases(key, H, self.chrono_t_max, dtype)
            params["b_ih"] = params["b_ih"].at[: 2 * H].set(jnp.concatenate([-b_f, b_f]))
            params["b_hh"] = params["b_hh"].at[: 2 * H].set(0.0)
        return params

    def initial_carry(self, batch_shape=(), dtype=jnp.float32):
        zeros = super().initial_carry(batch_shape, dtype)
        return LSTMState(h=zeros, c=zeros)

    def carry_hidden(self, carry):
        return carry.h

    def replace_hidden(self, carry, h):
        return carry._replace(h=h)

    def step_from_projections(self, carry, xp, hp, elementwise):
        i, f, g, o = jnp.split(xp + hp, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return LSTMState(h, c), h


@dataclasses.dataclass(frozen=True)
class GRUCell(_Cell):
    r"""Gated recurrent unit in PyTorch's formulation (gate order r, z, n).

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)             reset gate
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)             update gate
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))  candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1},   y_t = h_t

    ``b_hn`` stays inside the reset product, which is why both biases exist.
    ``chrono_t_max``, when set, is the chrono initialisation (Tallec & Ollivier
    2018) of the update gate, the GRU's forget gate (``z`` keeps ``h_{t-1}``):
    ``b_z ~ log U(1, T_max - 1)`` in ``b_ih``, ``0`` in ``b_hh``.
    """

    chrono_t_max: float | None = None
    num_gates: ClassVar[int] = 3
    sums_projections: ClassVar[bool] = False  # r * (W_hn h + b_hn) needs hp alone

    def __post_init__(self):
        super().__post_init__()
        _check_chrono(self)

    def init(self, key, input_size, dtype=jnp.float32):
        params = super().init(key, input_size, dtype)
        if self.chrono_t_max is not None:
            H = self.hidden_size
            params["b_ih"] = params["b_ih"].at[H : 2 * H].set(chrono_biases(key, H, self.chrono_t_max, dtype))
            params["b_hh"] = params["b_hh"].at[H : 2 * H].set(0.0)
        return params

    def step_from_projections(self, h, xp, hp, elementwise):
        x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(hp, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h = (1.0 - z) * n + z * h
        return h, h


Cell = ElmanCell | LSTMCell | GRUCell


def chrono_biases(key, hidden_size: int, t_max, dtype=jnp.float32) -> jax.Array:
    """``log U(1, T_max - 1)`` per unit: the chrono forget-gate biases (Tallec & Ollivier 2018).
    Drawn from their own stream of ``key``, so every other parameter is the plain init's."""
    u = jax.random.uniform(jax.random.fold_in(key, 0x636872), (hidden_size,), dtype, 1.0, t_max - 1.0)
    return jnp.log(u)


def _check_chrono(cell) -> None:
    t_max = cell.chrono_t_max
    if t_max is not None and not cell.use_bias:
        raise ValueError("chrono_t_max needs use_bias=True")
    if t_max is not None and is_concrete(t_max) and not t_max > 2:
        raise ValueError(f"chrono_t_max must be > 2 (the longest dependency, in steps), got {t_max!r}")
