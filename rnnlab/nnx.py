"""Flax NNX modules around the pure core: the same cells, scans and layers, held as
``nnx.Param`` leaves so that ``nnx.jit``, ``nnx.grad``, ``nnx.Optimizer``,
``nnx.split``/``nnx.merge`` and Orbax see an ordinary NNX model.

    from flax import nnx
    from rnnlab import LSTMCell
    from rnnlab.nnx import RNN

    m = RNN(LSTMCell(64), input_size=8, num_layers=2, bidirectional=True, dropout=0.0, rngs=nnx.Rngs(0))
    outputs, final = m(x, lengths=None, initial_carry=None)   # rnnlab.RNN.apply's shapes and semantics
    layer, params = m.to_pure()                               # the pure layer and its params tree
    m2 = RNN.from_pure(layer, params)                         # e.g. from rnnlab.interop.torch.from_torch(...)

The params keep the pure layer's tree and PyTorch layout (``m.params["l0"]["fwd"]["w_hh"]``
is ``[G*H, H]``).  Dropout between layers draws its key from ``rngs`` (the
``"dropout"`` stream) unless the module is ``deterministic`` (``m.eval()``) or the
call says so.  The task models compose this layer with ``nnx.Embed`` and
``nnx.Linear`` in a few lines each (``SequenceRegressor``, ``LanguageModel``,
``SequenceClassifier``, ``Seq2Seq`` below), as the Linen shells in ``rnnlab.linen``
do: with the same options and params, the same outputs (tests/test_nnx.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab import layers
from rnnlab.readout import last_valid, pool
from rnnlab.unroll import Cell
from rnnlab.validation import check_embedding_ids, check_tree_shapes


class RNN(nnx.Module):
    """A stack of ``num_layers`` recurrent layers of ``cell`` (optionally bidirectional), as
    ``rnnlab.RNN`` computes it; the parameters live here as ``nnx.Param``."""

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = True,
        path: str | None = None,
        newton_options=None,
        scan_unroll: int = 1,
        dtype=None,
        param_dtype=jnp.float32,
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ):
        # Flax's convention: params stored in param_dtype, computed in dtype (None: promoted)
        if not jnp.issubdtype(jnp.dtype(param_dtype), jnp.floating):
            raise ValueError(f"param_dtype must be a floating-point dtype (e.g. jnp.float32), got {param_dtype!r}")
        layer = layers.RNN(
            cell,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            batch_first=batch_first,
            path=path,
            newton_options=newton_options,
            scan_unroll=scan_unroll,
            dtype=dtype,
        )
        params = layer.init(rngs.params(), input_size, param_dtype)
        self._set(layer, params, rngs if dropout > 0 else None, deterministic)

    def _set(self, layer: layers.RNN, params, rngs, deterministic: bool) -> None:
        self.layer = layer  # static: a frozen dataclass
        self.params = nnx.data(jax.tree.map(nnx.Param, params))
        self.rngs = rngs["dropout"].fork() if rngs is not None else nnx.data(None)
        self.deterministic = deterministic

    @classmethod
    def from_pure(cls, layer: layers.RNN, params, *, rngs: nnx.Rngs | None = None, deterministic: bool = False) -> RNN:
        """Wrap a pure layer and its params (``layer.init``, a checkpoint, ``from_torch``...).
        ``rngs`` is needed only for dropout between layers."""
        input_size = layer.params_input_size(params)
        check_tree_shapes("params", params, layer.param_specs(input_size))
        if layer.dropout > 0 and rngs is None and not deterministic:
            raise ValueError(f"dropout={layer.dropout} between layers needs rngs=nnx.Rngs(dropout=...)")
        module = cls(
            layer.cell,
            input_size,
            num_layers=layer.num_layers,
            bidirectional=layer.bidirectional,
            dropout=layer.dropout,
            batch_first=layer.batch_first,
            path=layer.path,
            newton_options=layer.newton_options,
            scan_unroll=layer.scan_unroll,
            deterministic=deterministic,
            rngs=rngs if rngs is not None else nnx.Rngs(0),
        )
        module._set(layer, params, rngs if layer.dropout > 0 else None, deterministic)  # the given params
        return module

    def to_pure(self):
        """``(layer, params)``: the pure ``rnnlab.RNN`` and a plain tree of arrays."""
        return self.layer, jax.tree.map(lambda p: p[...], self.params, is_leaf=lambda x: isinstance(x, nnx.Param))

    def __call__(
        self, x, lengths=None, initial_carry=None, *, deterministic: bool | None = None, hidden_perturbation=None
    ):
        deterministic = self.deterministic if deterministic is None else deterministic
        dropout_key = None
        if self.layer.dropout > 0 and self.layer.num_layers > 1 and not deterministic:
            dropout_key = self.rngs()
        _, params = self.to_pure()
        return self.layer.apply(
            params, x, lengths, initial_carry, dropout_key=dropout_key, hidden_perturbation=hidden_perturbation
        )


# -- the task models, composed -----------------------------------------------------


class SequenceRegressor(nnx.Module):
    """RNN, then ``Linear`` on each sequence's last valid output: ``[B, out_features]``."""

    def __init__(self, rnn: RNN, out_features: int = 1, *, rngs: nnx.Rngs):
        self.rnn, self.head = rnn, nnx.Linear(rnn.layer.output_size, out_features, rngs=rngs)

    def __call__(self, x, lengths=None, *, hidden_perturbation=None):
        outputs, _ = self.rnn(x, lengths, hidden_perturbation=hidden_perturbation)
        return self.head(last_valid(outputs, lengths))


class LanguageModel(nnx.Module):
    """``Embed -> RNN -> Linear(vocab)``: ``logits [B, T, V], final = m(tokens [B, T], initial_carry)``;
    ``embed_dim=None`` feeds one-hot vectors instead of an embedding."""

    def __init__(self, vocab_size: int, embed_dim: int | None, rnn: RNN, *, rngs: nnx.Rngs):
        self.vocab_size = vocab_size
        self.embed = None if embed_dim is None else nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        self.rnn, self.head = rnn, nnx.Linear(rnn.layer.output_size, vocab_size, rngs=rngs)

    def __call__(self, tokens_bt, initial_carry=None, *, hidden_perturbation=None):
        check_embedding_ids(tokens_bt, self.vocab_size, "LanguageModel tokens")
        x = jax.nn.one_hot(tokens_bt, self.vocab_size) if self.embed is None else self.embed(tokens_bt)
        outputs, final = self.rnn(x, None, initial_carry, hidden_perturbation=hidden_perturbation)
        return self.head(outputs), final


class SequenceClassifier(nnx.Module):
    """``Embed -> (bidirectional) RNN with lengths -> pooling -> Dropout -> Linear(classes)``.

    ``pooling``: ``"final"`` (the top layer's final states, both directions) or
    ``"mean"`` (masked mean of the outputs over valid steps)."""

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        rnn: RNN,
        num_classes: int,
        *,
        pooling: str = "final",
        dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        self.vocab_size, self.pooling = vocab_size, pooling
        self.embed = nnx.Embed(vocab_size, embed_dim, rngs=rngs)
        self.rnn, self.head = rnn, nnx.Linear(rnn.layer.output_size, num_classes, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)

    def __call__(self, tokens_bt, lengths_b):
        check_embedding_ids(tokens_bt, self.vocab_size, "SequenceClassifier tokens")
        outputs, final = self.rnn(self.embed(tokens_bt), lengths_b)
        return self.head(self.dropout(pool(self.rnn.layer, outputs, final, lengths_b, self.pooling)))


class Seq2Seq(nnx.Module):
    """Encoder-decoder: the encoder's final state starts the decoder (teacher forcing in ``__call__``)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, embed_dim: int, encoder: RNN, decoder: RNN, *, rngs: nnx.Rngs):
        if encoder.layer.num_directions != 1:
            raise ValueError("the encoder must be unidirectional: its final state starts the decoder")
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.src_embed = nnx.Embed(src_vocab, embed_dim, rngs=rngs)
        self.tgt_embed = nnx.Embed(tgt_vocab, embed_dim, rngs=rngs)
        self.encoder, self.decoder = encoder, decoder
        self.head = nnx.Linear(decoder.layer.output_size, tgt_vocab, rngs=rngs)

    def encode(self, src_bt, src_lengths_b):
        check_embedding_ids(src_bt, self.src_vocab, "Seq2Seq source tokens")
        return self.encoder(self.src_embed(src_bt), src_lengths_b)[1]

    def decode(self, tgt_in_bt, carry):
        check_embedding_ids(tgt_in_bt, self.tgt_vocab, "Seq2Seq target tokens")
        outputs, final = self.decoder(self.tgt_embed(tgt_in_bt), None, carry)
        return self.head(outputs), final

    def __call__(self, src_bt, src_lengths_b, tgt_in_bt):
        return self.decode(tgt_in_bt, self.encode(src_bt, src_lengths_b))[0]
