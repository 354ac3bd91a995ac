"""Flax Linen shells around the pure core.

``Recurrent`` is the one adapter between Linen and ``rnnlab.layers.RNN``: it
registers the layer's params with ``self.param`` and calls the pure ``apply``
(no lifted ``nn.scan``, no second implementation of a cell).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab.layers import RNN


class Recurrent(nn.Module):
    """``outputs, final = Recurrent(layer)(x, lengths)``; params live under ``"rnn"``."""

    layer: RNN

    @nn.compact
    def __call__(self, x, lengths=None, initial_carry=None, *, deterministic: bool = True, hidden_perturbation=None):
        params = self.param("rnn", self.layer.init, x.shape[-1])
        dropout_key = None
        if not deterministic and self.layer.dropout > 0:
            dropout_key = self.make_rng("dropout")
        return self.layer.apply(
            params, x, lengths, initial_carry, dropout_key=dropout_key, hidden_perturbation=hidden_perturbation
        )


def recurrent_params(variables):
    """The pure layer's params inside a model built on ``Recurrent`` (for ``layer.apply``)."""
    return variables["params"]["recurrent"]["rnn"]


def last_valid(outputs_bth, lengths_b=None):
    """Each sequence's output at its last valid step: ``[B, H]``."""
    if lengths_b is None:
        return outputs_bth[:, -1]
    return jnp.take_along_axis(outputs_bth, (lengths_b - 1)[:, None, None], axis=1)[:, 0]


class SequenceRegressor(nn.Module):
    """RNN over a sequence, then ``Dense(out_features)`` on the last valid step's output: ``[B, out]``."""

    layer: RNN
    out_features: int = 1

    @nn.compact
    def __call__(self, x, lengths=None, *, deterministic: bool = True, hidden_perturbation=None):
        outputs, _ = Recurrent(self.layer, name="recurrent")(
            x, lengths, deterministic=deterministic, hidden_perturbation=hidden_perturbation
        )
        return nn.Dense(self.out_features, name="head")(last_valid(outputs, lengths))
