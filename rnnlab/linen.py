"""Flax Linen shells around the pure core (``rnnlab.nnx`` is the same in NNX, side by side).

``Recurrent`` is the one adapter between Linen and ``rnnlab.layers.RNN`` (or a
wrapper of it from ``rnnlab.parametrizations``): it registers the layer's params
with ``self.param`` and calls the pure ``apply`` (no lifted ``nn.scan``, no
second implementation of a cell).  Every task model takes ``hidden_perturbation``
(``[D*L, ...outputs of one direction]``, see ``RNN.apply``), so the gradient
diagnostics run on the model as it is.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from rnnlab import diagnostics, initializers
from rnnlab.layers import RNN
from rnnlab.readout import last_valid, pool
from rnnlab.validation import check_embedding_ids


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


def constrain_recurrent(layer, variables):
    """``variables`` with the ``Recurrent`` layer's params projected by ``layer.constrain`` (each
    cell's constraint, e.g. IndRNN's ``|u| <= U_bound``): a train step's ``constrain``."""
    params = variables["params"]
    recurrent = {**params["recurrent"], "rnn": layer.constrain(params["recurrent"]["rnn"])}
    return {**variables, "params": {**params, "recurrent": recurrent}}


READOUTS = ("last", "flatten")


class SequenceRegressor(nn.Module):
    """RNN over a sequence, then ``Dense(out_features)``: ``[B, out]`` (regression, or the logits
    of a sequence classifier).

    ``readout``: ``"last"`` reads the last valid step's output (the long-range papers'
    classifiers); ``"flatten"`` reads every step's output at once, ``[B, T * H]``
    (MNIST-1D's GRU baseline; needs full-length sequences).  ``head_init``: the readout's initial
    draw, ``"lecun"`` (Flax's ``Dense``: LeCun normal, zero bias) or ``"pytorch"`` (``torch.nn.Linear``:
    weight and bias ``U(±1/sqrt(fan_in))``; ``rnnlab.initializers.pytorch_linear``)."""

    layer: RNN
    out_features: int = 1
    readout: str = "last"
    head_init: str = "lecun"

    @nn.compact
    def __call__(self, x, lengths=None, *, deterministic: bool = True, hidden_perturbation=None):
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        initializers.check_name("head_init", self.head_init, initializers.HEAD_INITS)
        if self.readout == "flatten" and lengths is not None:
            raise ValueError("readout='flatten' reads every step, so it takes no lengths (pad-free sequences)")
        outputs, _ = Recurrent(self.layer, name="recurrent")(
            x, lengths, deterministic=deterministic, hidden_perturbation=hidden_perturbation
        )
        features = outputs.reshape(outputs.shape[0], -1) if self.readout == "flatten" else last_valid(outputs, lengths)
        if self.head_init == "pytorch":
            draw = initializers.pytorch_linear(features.shape[-1])
            return nn.Dense(self.out_features, kernel_init=draw, bias_init=draw, name="head")(features)
        return nn.Dense(self.out_features, name="head")(features)


def regressor_gradient_profile(model: SequenceRegressor, variables, x_bti, y_b, lengths_b=None, *, jacobian=True):
    """``diagnostics.gradient_profile`` of a ``SequenceRegressor``'s (one-layer, forward) layer, the
    loss being the squared error of its prediction at each sequence's last valid step, summed over
    the batch: ``(||dL/dh_t|| [T], ||dh_T/dh_t||_2 [T])``.  Jittable; vmap it over seeds."""
    head = nn.Dense(model.out_features)
    predict = lambda out_bth: head.apply({"params": variables["params"]["head"]}, last_valid(out_bth, lengths_b))
    loss = lambda out_bth: jnp.sum((predict(out_bth)[:, 0] - y_b) ** 2)
    params = recurrent_params(variables)
    return diagnostics.gradient_profile(model.layer, params, loss, x_bti, lengths_b, jacobian=jacobian)


def regressor_mse(model: SequenceRegressor, variables, batch) -> jax.Array:
    """Mean squared error of a one-output ``SequenceRegressor`` on ``batch`` (``x``, ``y``, optional ``lengths``)."""
    pred = model.apply(variables, batch["x"], batch.get("lengths"))[:, 0]
    return jnp.mean((pred - batch["y"]) ** 2)


def regressor_profile(model: SequenceRegressor, variables, x_bti, y_b, lengths_b=None, *, jacobian=True):
    """``regressor_gradient_profile`` and, along the same inputs, the layer's Lyapunov exponents
    (``diagnostics.layer_lyapunov_exponents``, the QR estimate) and its exact finite-time
    ``lambda_1(T)`` (``diagnostics.layer_finite_time_exponent``):
    ``(grad_t [T], jac_t [T], lambda_k [K], lambda_1_T [])``."""
    grad_t, jac_t = regressor_gradient_profile(model, variables, x_bti, y_b, lengths_b, jacobian=jacobian)
    params = recurrent_params(variables)
    exponents = diagnostics.layer_lyapunov_exponents(model.layer, params, x_bti, lengths_b)
    return grad_t, jac_t, exponents, diagnostics.layer_finite_time_exponent(model.layer, params, x_bti, lengths_b)


class LanguageModel(nn.Module):
    """The seeds' text generator: ``Embed -> RNN stack -> Dense(vocab)``.

    ``logits [B, T, V], final = LanguageModel(...)(tokens [B, T], initial_carry)``; feeding
    ``final`` back in continues the text without re-reading it (the sampler does this).
    ``embed_dim=None`` feeds one-hot vectors instead of an embedding (the copy task's
    inputs in the uRNN and expRNN papers).
    """

    vocab_size: int
    embed_dim: int | None
    layer: RNN

    @nn.compact
    def __call__(self, tokens_bt, initial_carry=None, *, deterministic: bool = True, hidden_perturbation=None):
        check_embedding_ids(tokens_bt, self.vocab_size, "LanguageModel tokens")
        if self.embed_dim is None:
            x = jax.nn.one_hot(tokens_bt, self.vocab_size)
        else:
            x = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(tokens_bt)
        outputs, final = Recurrent(self.layer, name="recurrent")(
            x, None, initial_carry, deterministic=deterministic, hidden_perturbation=hidden_perturbation
        )
        return nn.Dense(self.vocab_size, name="head")(outputs), final


class SequenceClassifier(nn.Module):
    """``Embed -> (bidirectional) RNN with lengths -> pooling -> Dense(classes)``.

    ``pooling``: ``"final"`` (the top layer's final states, both directions) or
    ``"mean"`` (masked mean of the outputs over valid steps).
    """

    vocab_size: int
    embed_dim: int
    layer: RNN
    num_classes: int
    pooling: str = "final"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, tokens_bt, lengths_b, *, deterministic: bool = True):
        check_embedding_ids(tokens_bt, self.vocab_size, "SequenceClassifier tokens")
        x = nn.Embed(self.vocab_size, self.embed_dim, name="embed")(tokens_bt)
        outputs, final = Recurrent(self.layer, name="recurrent")(x, lengths_b, deterministic=deterministic)
        pooled = pool(self.layer, outputs, final, lengths_b, self.pooling)
        pooled = nn.Dropout(self.dropout, deterministic=deterministic)(pooled)
        return nn.Dense(self.num_classes, name="head")(pooled)


class Seq2Seq(nn.Module):
    """Encoder-decoder (the seeds' translation shape): the encoder's final state starts the decoder.

    Training uses teacher forcing: ``logits = model(src, src_lengths, tgt_in)`` where
    ``tgt_in`` is the target shifted right behind a start token.  ``encode`` and
    ``decode`` are exposed for greedy and beam-search decoding one step at a time.
    Encoder and decoder layers must have the same cell kind, size and depth.
    """

    src_vocab: int
    tgt_vocab: int
    embed_dim: int
    encoder: RNN
    decoder: RNN

    def setup(self):
        if self.encoder.num_directions != 1:
            raise ValueError("the encoder must be unidirectional: its final state starts the decoder")
        self.src_embed = nn.Embed(self.src_vocab, self.embed_dim)
        self.tgt_embed = nn.Embed(self.tgt_vocab, self.embed_dim)
        self.encoder_rnn = Recurrent(self.encoder)
        self.decoder_rnn = Recurrent(self.decoder)
        self.head = nn.Dense(self.tgt_vocab)

    def encode(self, src_bt, src_lengths_b):
        check_embedding_ids(src_bt, self.src_vocab, "Seq2Seq source tokens")
        _, final = self.encoder_rnn(self.src_embed(src_bt), src_lengths_b)
        return final

    def decode(self, tgt_in_bt, carry):
        check_embedding_ids(tgt_in_bt, self.tgt_vocab, "Seq2Seq target tokens")
        outputs, final = self.decoder_rnn(self.tgt_embed(tgt_in_bt), None, carry)
        return self.head(outputs), final

    def __call__(self, src_bt, src_lengths_b, tgt_in_bt):
        return self.decode(tgt_in_bt, self.encode(src_bt, src_lengths_b))[0]
