"""Generating sequences: sampling from a language model, greedy and beam-search
decoding for an encoder-decoder.  The recurrent state is carried forward one
token at a time; nothing re-reads the prefix.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.validation import check_token_ids


def sample_logits(key, logits_bv, temperature: float = 1.0, top_k: int = 0):
    """One token per row from ``softmax(logits / temperature)``, restricted to the
    ``top_k`` most likely tokens when ``top_k > 0``; temperature 0 is argmax."""
    if temperature == 0:
        return jnp.argmax(logits_bv, axis=-1)
    logits_bv = logits_bv / temperature
    if top_k:
        kth = jax.lax.top_k(logits_bv, top_k)[0][..., -1:]
        logits_bv = jnp.where(logits_bv < kth, -jnp.inf, logits_bv)
    return jax.random.categorical(key, logits_bv, axis=-1)


def sample_text(model, params, prime_ids, length: int, key, *, temperature: float = 1.0, top_k: int = 0):
    """Continue ``prime_ids [P]`` by ``length`` tokens from a ``LanguageModel``: ids ``[length]``.

    The prime is read once; then each sampled token is fed back with the carried state.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 <= top_k <= model.vocab_size:
        raise ValueError(f"top_k must lie in 0..{model.vocab_size}, got {top_k}")
    prime = check_token_ids(prime_ids, model.vocab_size, "prime token ids")
    if prime.ndim != 1 or len(prime) == 0:
        raise ValueError("the prime must be a non-empty 1-D sequence of token ids")
    return np.asarray(_sample(model, params, jnp.asarray(prime)[None], length, key, temperature, top_k))[0]


def _sample_impl(model, params, prime_1p, length, key, temperature, top_k):
    logits, carry = model.apply(params, prime_1p)

    def step(state, key):
        logits_1v, carry = state
        token_1 = sample_logits(key, logits_1v, temperature, top_k)
        logits, carry = model.apply(params, token_1[:, None], carry)
        return (logits[:, -1], carry), token_1

    _, tokens_l1 = jax.lax.scan(step, (logits[:, -1], carry), jax.random.split(key, length))
    return tokens_l1.T


_sample = jax.jit(_sample_impl, static_argnums=(0, 3, 5, 6))


def greedy_decode(model, params, src_bt, src_lengths_b, *, start_id: int, max_len: int):
    """Most likely token at each step from a ``Seq2Seq``: ids ``[B, max_len]`` (stop tokens included)."""
    return np.asarray(_greedy(model, params, jnp.asarray(src_bt), jnp.asarray(src_lengths_b), start_id, max_len))


def _greedy_impl(model, params, src_bt, src_lengths_b, start_id, max_len):
    carry = model.apply(params, src_bt, src_lengths_b, method=model.encode)

    def step(state, _):
        token_b, carry = state
        logits, carry = model.apply(params, token_b[:, None], carry, method=model.decode)
        token_b = jnp.argmax(logits[:, -1], axis=-1)
        return (token_b, carry), token_b

    start = jnp.full((src_bt.shape[0],), start_id, jnp.int32)
    _, tokens_tb = jax.lax.scan(step, (start, carry), None, length=max_len)
    return tokens_tb.T


_greedy = jax.jit(_greedy_impl, static_argnums=(0, 4, 5))


def beam_search(model, params, src_t, src_length: int, *, start_id: int, end_id: int, max_len: int, beam: int = 4):
    """Beam search for one source sequence: ``(best ids without the end token, its log-probability)``.

    Keeps the ``beam`` best prefixes by total log-probability; a prefix that
    emits ``end_id`` is finished.  Hypotheses are compared by total
    log-probability (no length normalisation).
    """
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    encode, step = _beam_fns(model)
    carry = encode(params, jnp.asarray(src_t)[None], jnp.asarray([src_length]))
    beams = [((), 0.0, carry)]  # (tokens, log-probability, carry)
    finished = []
    for _ in range(max_len):
        tokens_k = jnp.asarray([b[0][-1] if b[0] else start_id for b in beams])
        carry_k = jax.tree.map(lambda *leaves: jnp.concatenate(leaves, axis=1), *[b[2] for b in beams])
        logp_kv, carry_k = step(params, tokens_k, carry_k)
        logp_kv = np.asarray(logp_kv)
        candidates = []
        for i, (tokens, score, _) in enumerate(beams):
            for v in np.argsort(logp_kv[i])[::-1][:beam]:
                candidates.append((score + float(logp_kv[i, v]), tokens + (int(v),), i))
        candidates.sort(key=lambda c: -c[0])
        beams = []
        for score, tokens, i in candidates[:beam]:
            carry_i = jax.tree.map(lambda a: a[:, i : i + 1], carry_k)
            (finished if tokens[-1] == end_id else beams).append((tokens, score, carry_i))
        if not beams or (finished and max(f[1] for f in finished) >= beams[0][1]):
            break
    best_tokens, best_score, _ = max(finished + beams, key=lambda b: b[1])
    return [t for t in best_tokens if t != end_id], best_score


@functools.lru_cache(maxsize=16)
def _beam_fns(model):
    """Jitted encoder and one decoder step, compiled once per model."""

    @jax.jit
    def encode(params, src_1t, src_lengths_1):
        return model.apply(params, src_1t, src_lengths_1, method=model.encode)

    @jax.jit
    def step(params, tokens_k, carry):
        logits, carry = model.apply(params, tokens_k[:, None], carry, method=model.decode)
        return jax.nn.log_softmax(logits[:, -1]), carry

    return encode, step


def recursive_forecast(predict, history_w, horizon: int) -> np.ndarray:
    """Multi-step forecast: ``predict(x [1, W, 1]) -> [1, 1]`` is applied to the last
    ``W`` values and each prediction is fed back as the newest input: ``[horizon]``."""

    def step(window_w, _):
        y = predict(window_w[None, :, None])[0, 0]
        return jnp.concatenate([window_w[1:], y[None]]), y

    return np.asarray(jax.lax.scan(step, jnp.asarray(history_w), None, length=horizon)[1])
