"""Weight initializers for recurrent cells, chosen by name.

Every recurrent cell has an input matrix ``w_ih [G*H, I]``, a recurrent matrix
``w_hh [G*H, H]`` and two biases ``b_ih, b_hh [G*H]`` (G gates of H units).
Recurrent initializers act on each gate's ``[H, H]`` block separately, so an
"orthogonal" LSTM has four orthogonal blocks, as in Keras and Saxe et al. 2014.

Names
-----
input_init:      "pytorch"  U(-1/sqrt(H), 1/sqrt(H))   (torch.nn.RNN/LSTM/GRU default)
                 "xavier_uniform"  U(-a, a), a = sqrt(6 / (fan_in + fan_out))
                 "kaiming_normal"  N(0, 2 / I): He et al.'s ReLU gain, fan_in = I
                                   (expRNN's input kernel, torch.nn.init.kaiming_normal_)
recurrent_init:  "pytorch"  as above
                 "orthogonal"  gain * Q, Q from the QR of a Gaussian matrix
                 "identity"    gain * I (Le, Jaitly & Hinton 2015, "IRNN")
                 "normal"      N(0, gain^2 / H): spectral radius close to gain
bias_init:       "pytorch"  as above;  "zeros"

A task model's linear readout (``rnnlab.linen.SequenceRegressor``'s ``head_init``):
                 "lecun"    Flax ``Dense``'s default: LeCun normal weight, zero bias
                 "pytorch"  ``torch.nn.Linear``'s: weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))

``spectral_radius``, when set, rescales each recurrent block after any of the
above so that ``max |eig(W)| == spectral_radius`` exactly (Pascanu et al. 2013:
for tanh, largest singular value < 1 is sufficient for vanishing gradients).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

INPUT_INITS = ("pytorch", "xavier_uniform", "kaiming_normal")
RECURRENT_INITS = ("pytorch", "orthogonal", "identity", "normal")
BIAS_INITS = ("pytorch", "zeros")
HEAD_INITS = ("lecun", "pytorch")


def check_name(kind: str, name: str, allowed: tuple[str, ...]) -> None:
    if name not in allowed:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(allowed)}")


def _pytorch_uniform(key, shape, hidden_size, dtype):
    bound = 1.0 / math.sqrt(hidden_size)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def input_weights(name: str, key, num_gates: int, hidden_size: int, input_size: int, dtype):
    """``w_ih [G*H, I]``."""
    check_name("input_init", name, INPUT_INITS)
    shape = (num_gates * hidden_size, input_size)
    if name == "pytorch":
        return _pytorch_uniform(key, shape, hidden_size, dtype)
    if name == "kaiming_normal":
        return math.sqrt(2.0 / input_size) * jax.random.normal(key, shape, dtype)
    bound = math.sqrt(6.0 / (input_size + hidden_size))  # per gate: fan_out = H
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _recurrent_block(name: str, key, hidden_size: int, gain: float, dtype):
    shape = (hidden_size, hidden_size)
    if name == "pytorch":
        return _pytorch_uniform(key, shape, hidden_size, dtype)
    if name == "orthogonal":
        return gain * jax.nn.initializers.orthogonal()(key, shape, dtype)
    if name == "identity":
        return gain * jnp.eye(hidden_size, dtype=dtype)
    return gain / math.sqrt(hidden_size) * jax.random.normal(key, shape, dtype)


def spectral_radius(w_hh):
    """``max |eig(w_hh)|`` of a square matrix, computed on the host (works under jit)."""
    result = jax.ShapeDtypeStruct((), w_hh.dtype)
    host_radius = lambda w: np.asarray(np.max(np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))), w.dtype)
    return jax.pure_callback(host_radius, result, w_hh, vmap_method="sequential")


def recurrent_weights(
    name: str, key, num_gates: int, hidden_size: int, dtype, gain: float = 1.0, radius: float | None = None
):
    """``w_hh [G*H, H]``: G independently initialised ``[H, H]`` blocks."""
    check_name("recurrent_init", name, RECURRENT_INITS)
    blocks = []
    for gate_key in jax.random.split(key, num_gates):
        w_hh = _recurrent_block(name, gate_key, hidden_size, gain, dtype)
        if radius is not None:
            w_hh = w_hh * (radius / spectral_radius(w_hh))
        blocks.append(w_hh)
    return jnp.concatenate(blocks, axis=0)


def biases(name: str, key, num_gates: int, hidden_size: int, dtype):
    """``(b_ih, b_hh)``, each ``[G*H]``."""
    check_name("bias_init", name, BIAS_INITS)
    shape = (num_gates * hidden_size,)
    if name == "zeros":
        return jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)
    key_ih, key_hh = jax.random.split(key)
    return _pytorch_uniform(key_ih, shape, hidden_size, dtype), _pytorch_uniform(key_hh, shape, hidden_size, dtype)


def pytorch_linear(fan_in: int):
    """``torch.nn.Linear``'s draw for a Flax ``Dense`` of ``fan_in`` inputs, as its
    ``kernel_init`` and ``bias_init`` both: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (torch's
    ``kaiming_uniform_(a=sqrt(5))`` for the weight, the same bound for the bias)."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
