"""From a layer's outputs to one vector per sequence, framework-free: the Linen and NNX
task models (``rnnlab.linen``, ``rnnlab.nnx``) both pool with these."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnlab import cells


def last_valid(outputs_bth, lengths_b=None):
    """Each sequence's output at its last valid step: ``[B, H]``."""
    if lengths_b is None:
        return outputs_bth[:, -1]
    return jnp.take_along_axis(outputs_bth, (lengths_b - 1)[:, None, None], axis=1)[:, 0]


def masked_mean(outputs_bth, lengths_b=None):
    """Mean over each sequence's valid steps: ``[B, H]`` (padded outputs are zero already)."""
    if lengths_b is None:
        return jnp.mean(outputs_bth, axis=1)
    return jnp.sum(outputs_bth, axis=1) / lengths_b[:, None].astype(outputs_bth.dtype)


def final_hidden_concat(layer, final) -> jax.Array:
    """The top layer's final hidden state, both directions concatenated: ``[B, D*H]``."""
    h_n = cells.carry_hidden(layer.cell, final)  # [D*L, B, H]
    top = h_n[-layer.num_directions :]
    return jnp.concatenate(list(top), axis=-1)


POOLINGS = ("final", "mean")


def pool(layer, outputs_bth, final, lengths_b, pooling: str):
    """``"final"``: the top layer's final states, both directions; ``"mean"``: the masked mean."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be 'final' or 'mean', got {pooling!r}")
    return final_hidden_concat(layer, final) if pooling == "final" else masked_mean(outputs_bth, lengths_b)
