"""Synthetic long-range tasks, generated on the host with NumPy from a seed:
batch ``i`` of a run is ``task((seed, i), ...)``, so the data position is the
step.  (NumPy rather than ``jax.random``: no compilation per sequence length,
and the arrays are made where a data pipeline makes them.)

Adding problem (Hochreiter & Schmidhuber 1997; the form of Le et al. 2015 and
Arjovsky et al. 2016): inputs ``x [B, T, 2]`` — channel 0 values ~ U[0, 1],
channel 1 a marker that is 1 at one step of each half — target the sum of the
two marked values.  Always predicting 1 scores MSE = Var(sum) = 2/12 ≈ 0.167.

The 1997 variant (``adding_problem_hs97``): values ~ U[-1, 1], one marker
among the first 10 steps, one among the first T/2 - 1 unmarked steps, markers
-1 at the first and last steps, lengths random in T..T + T/10 (so the batch
carries ``lengths``), target ``0.5 + (X1 + X2) / 4``.

Copy memory (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016): tokens
``[B, T + 20]`` — 10 symbols from 1..8, T - 1 blanks (0), a delimiter (9),
10 blanks — and targets: T + 10 blanks then the 10 symbols.  Predicting
blanks then uniform symbols (no memory) scores cross-entropy
``10 log 8 / (T + 20)`` per step.
"""

from __future__ import annotations

import math

import numpy as np

ADDING_BASELINE_MSE = 1.0 / 6.0
COPY_SYMBOLS, COPY_LENGTH, COPY_BLANK, COPY_DELIMITER = 8, 10, 0, 9


def _check_length(num_steps: int, minimum: int) -> None:
    if not isinstance(num_steps, int) or num_steps < minimum:
        raise ValueError(f"sequence length T must be an int >= {minimum}, got {num_steps!r}")


def adding_problem(seed, batch_size: int, num_steps: int) -> dict:
    """``{"x": [B, T, 2] float32, "y": [B] float32}``; ``seed``: anything ``np.random.default_rng`` takes."""
    _check_length(num_steps, 2)
    rng = np.random.default_rng(seed)
    values_bt = rng.uniform(size=(batch_size, num_steps)).astype(np.float32)
    half = num_steps // 2
    first_b = rng.integers(0, half, batch_size)
    second_b = rng.integers(half, num_steps, batch_size)
    t_1t = np.arange(num_steps)[None, :]
    marker_bt = ((t_1t == first_b[:, None]) | (t_1t == second_b[:, None])).astype(np.float32)
    x_bt2 = np.stack([values_bt, marker_bt], axis=-1)
    return {"x": x_bt2, "y": np.sum(values_bt * marker_bt, axis=1, dtype=np.float32)}


def adding_problem_baseline_mse() -> float:
    """MSE of always predicting 1 on ``adding_problem``: Var(U + U) = 1/6."""
    return ADDING_BASELINE_MSE


def adding_problem_hs97(seed, batch_size: int, num_steps: int) -> dict:
    """The 1997 variant: ``{"x": [B, T + T//10, 2], "y": [B], "lengths": [B]}``."""
    _check_length(num_steps, 24)  # room for 10 + T/2 - 1 distinct positions
    rng = np.random.default_rng(seed)
    max_steps = num_steps + num_steps // 10
    values_bt = rng.uniform(-1.0, 1.0, size=(batch_size, max_steps))
    lengths_b = rng.integers(num_steps, max_steps + 1, batch_size).astype(np.int32)
    first_b = rng.integers(0, 10, batch_size)
    # the second marker: one of the first T/2 - 1 steps other than the first marker
    second_b = rng.integers(0, num_steps // 2 - 2, batch_size)
    second_b = np.where(second_b >= first_b, second_b + 1, second_b)
    t_1t = np.arange(max_steps)[None, :]
    valid_bt = t_1t < lengths_b[:, None]
    marked_bt = (t_1t == first_b[:, None]) | (t_1t == second_b[:, None])
    ends_bt = (t_1t == 0) | (t_1t == lengths_b[:, None] - 1)
    marker_bt = np.where(marked_bt, 1.0, np.where(ends_bt, -1.0, 0.0))
    values_bt = np.where((t_1t == 0) & marked_bt, 0.0, values_bt)  # X1 = 0 if the first pair is marked
    x_bt2 = np.stack([values_bt, marker_bt], axis=-1) * valid_bt[..., None]
    y_b = 0.5 + np.sum(np.where(marked_bt, values_bt, 0.0), axis=1) / 4.0
    return {"x": x_bt2.astype(np.float32), "y": y_b.astype(np.float32), "lengths": lengths_b}


def copy_memory(seed, batch_size: int, num_steps: int) -> dict:
    """``{"tokens": [B, T + 20] int32, "targets": [B, T + 20] int32}``; vocabulary size 10."""
    _check_length(num_steps, 1)
    total = num_steps + 2 * COPY_LENGTH
    symbols_bs = np.random.default_rng(seed).integers(1, COPY_SYMBOLS + 1, (batch_size, COPY_LENGTH))
    tokens = np.full((batch_size, total), COPY_BLANK, np.int32)
    tokens[:, :COPY_LENGTH] = symbols_bs
    tokens[:, COPY_LENGTH + num_steps - 1] = COPY_DELIMITER
    targets = np.full((batch_size, total), COPY_BLANK, np.int32)
    targets[:, -COPY_LENGTH:] = symbols_bs
    return {"tokens": tokens, "targets": targets}


def copy_memory_baseline(num_steps: int) -> float:
    """Cross-entropy per step of the best memoryless strategy: ``10 log 8 / (T + 20)``."""
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (num_steps + 2 * COPY_LENGTH)


SELECTIVE_SYMBOLS, SELECTIVE_TOKENS = 8, 8


def selective_copy(
    seed, batch_size: int, num_steps: int, tokens: int = SELECTIVE_TOKENS, symbols: int = SELECTIVE_SYMBOLS
) -> dict:
    """Selective copying (Gu & Dao 2023, section 4.1), scaled down: ``tokens`` symbols from
    ``1..symbols`` at random (sorted, distinct) positions among ``num_steps`` blanks (0), then
    ``tokens`` markers (``symbols + 1``) during which the model must output the symbols in order.

    ``{"tokens": [B, T + K] int32, "targets": [B, T + K] int32}`` (targets blank but for the
    last K); vocabulary ``symbols + 2``.  The paper's setting is T = 4096, K = 16, 16 symbols;
    unlike the copy task the symbols' positions vary, so a fixed delay does not solve it."""
    _check_length(num_steps, tokens)
    rng = np.random.default_rng(seed)
    symbols_bk = rng.integers(1, symbols + 1, (batch_size, tokens))
    # K distinct positions in 0..T-1 per sequence, in increasing order
    positions_bk = np.sort(np.argsort(rng.random((batch_size, num_steps)), axis=1)[:, :tokens], axis=1)
    total = num_steps + tokens
    out = np.zeros((batch_size, total), np.int32)
    np.put_along_axis(out, positions_bk, symbols_bk, axis=1)
    out[:, num_steps:] = symbols + 1
    targets = np.zeros((batch_size, total), np.int32)
    targets[:, num_steps:] = symbols_bk
    return {"tokens": out, "targets": targets}


def associative_recall(seed, batch_size: int, num_steps: int, pairs: int = 8, keys: int = 16, values: int = 16) -> dict:
    """Multi-query associative recall (Arora et al. 2023, zoology's MQAR), small: ``pairs``
    key-value pairs (distinct keys from ``1..keys``, values from ``keys+1..keys+values``) at
    the start, then every key queried once, in random order, at random (sorted, distinct)
    positions among the remaining ``num_steps - 2 pairs`` blanks; at a query the target is its
    key's value (blank elsewhere).

    ``{"tokens": [B, T] int32, "targets": [B, T] int32, "answer": [B, T] bool}`` (the query
    positions); vocabulary ``1 + keys + values``.  zoology's settings run T = 64..512, 4..64
    pairs and a vocabulary of 8192."""
    _check_length(num_steps, 3 * pairs)
    if pairs > keys:
        raise ValueError(f"associative recall: {pairs} pairs need at least as many keys, got {keys}")
    rng = np.random.default_rng(seed)
    key_bp = np.argsort(rng.random((batch_size, keys)), axis=1)[:, :pairs] + 1
    value_bp = rng.integers(keys + 1, keys + values + 1, (batch_size, pairs))
    tokens = np.zeros((batch_size, num_steps), np.int32)
    tokens[:, 0 : 2 * pairs : 2], tokens[:, 1 : 2 * pairs : 2] = key_bp, value_bp
    free = num_steps - 2 * pairs
    query_bp = np.sort(np.argsort(rng.random((batch_size, free)), axis=1)[:, :pairs], axis=1) + 2 * pairs
    order_bp = np.argsort(rng.random((batch_size, pairs)), axis=1)  # which pair each query asks for
    np.put_along_axis(tokens, query_bp, np.take_along_axis(key_bp, order_bp, 1), axis=1)
    targets = np.zeros((batch_size, num_steps), np.int32)
    np.put_along_axis(targets, query_bp, np.take_along_axis(value_bp, order_bp, 1), axis=1)
    answer = np.zeros((batch_size, num_steps), bool)
    np.put_along_axis(answer, query_bp, True, axis=1)
    return {"tokens": tokens, "targets": targets, "answer": answer}


TASKS = {"adding": adding_problem, "adding_hs97": adding_problem_hs97, "copy": copy_memory}


def seeded_batches(task, seed: int, runs, batch_size: int, num_steps: int):
    """``batch(step) -> {k: [S, B, ...]}``: fresh data for each run at every step, a pure
    function of ``(seed, run, step)`` (``seed`` an int or a tuple of ints).  ``runs``: a count
    (runs 0..S-1) or each row's run index (sweep points that share a seed share its data)."""
    runs = range(runs) if isinstance(runs, int) else [int(r) for r in runs]
    prefix = tuple(seed) if isinstance(seed, tuple) else (seed,)

    def batch(step: int) -> dict:
        per_run = [task((*prefix, run, step), batch_size, num_steps) for run in runs]
        return {k: np.stack([b[k] for b in per_run]) for k in per_run[0]}

    return batch


def padded_rows(task, seed_of, lengths, seeds, batch_size: int, max_steps: int):
    """``batch(step) -> {k: [S, B, ...], "lengths": [S, B]}``: row s holds ``task``'s data of
    length ``lengths[s]``, a pure function of ``(seed_of(lengths[s]), seeds[s], step)``, zero-padded
    along time to ``max_steps``, so that sweep points of different lengths share one program."""

    def row(T: int, seed: int, step: int) -> dict:
        data = task((seed_of(T), seed, step), batch_size, T)
        pad = lambda a: np.pad(a, [(0, 0), (0, max_steps - T)] + [(0, 0)] * (a.ndim - 2)) if a.ndim > 1 else a
        return {**{k: pad(v) for k, v in data.items()}, "lengths": np.full(batch_size, T, np.int32)}

    def batch(step: int) -> dict:
        rows = [row(int(T), int(s), step) for T, s in zip(lengths, seeds)]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}

    return batch


# -- review-like text whose label needs context on both sides ------------------

POSITIVE = ("good", "great", "fine", "excellent", "enjoyable", "wonderful")
NEGATIVE = ("bad", "awful", "boring", "poor", "dull", "terrible")
FILLER = (
    "the",
    "movie",
    "film",
    "plot",
    "acting",
    "was",
    "a",
    "really",
    "quite",
    "story",
    "and",
    "i",
    "thought",
    "it",
    "cast",
    "ending",
    "music",
    "overall",
    "this",
    "one",
    "of",
    "in",
    "scenes",
    "some",
)


def negation_reviews(seed, count: int, min_len: int = 16, max_len: int = 40) -> tuple[list[str], np.ndarray]:
    """Generated reviews and labels (1 positive, 0 negative) where a sentiment word's
    meaning depends on words on both sides of it:

    * ``not`` before it flips it ("not good" is negative);
    * a contrast after it overrides it: "good , but not great" is negative,
      "bad , but great" is positive (the clause after "but" decides).

    The phrase sits early in the review, followed by filler words, so a
    left-to-right RNN must carry it to the end while a backward pass meets it last.
    """
    rng = np.random.default_rng(seed)

    def clause():
        positive = rng.random() < 0.5
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        if rng.random() < 0.5:
            return ["not", word], not positive
        return [word], positive

    texts, labels = [], []
    for _ in range(count):
        words, label = clause()
        if rng.random() < 0.4:
            second, label = clause()
            words = words + [",", "but"] + second
        length = int(rng.integers(min_len, max_len + 1))
        start = int(rng.integers(0, 4))
        filler = list(rng.choice(FILLER, max(length - len(words), 0)))
        texts.append(" ".join(filler[:start] + words + filler[start:]))
        labels.append(int(label))
    return texts, np.array(labels, np.int32)


def addition_pairs(seed, count: int, digits: int = 2) -> list[tuple[str, str]]:
    """Distinct "a+b" -> "sum" string pairs with a, b < 10**digits (the Keras addition
    task, a sequence-to-sequence problem small enough to learn on a CPU)."""
    limit = 10**digits
    if count > limit * limit:
        raise ValueError(f"only {limit * limit} distinct pairs exist with {digits} digits, asked for {count}")
    rng = np.random.default_rng(seed)
    flat = rng.choice(limit * limit, size=count, replace=False)
    return [(f"{a}+{b}", str(a + b)) for a, b in zip(flat // limit, flat % limit)]
