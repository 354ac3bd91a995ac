"""Synthetic long-range tasks, generated from a key: batch ``i`` of a run is
``task(jax.random.fold_in(key, i), ...)``, so the data position is the step.

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

import jax
import jax.numpy as jnp

ADDING_BASELINE_MSE = 1.0 / 6.0
COPY_SYMBOLS, COPY_LENGTH, COPY_BLANK, COPY_DELIMITER = 8, 10, 0, 9


def _check_length(num_steps: int, minimum: int) -> None:
    if not isinstance(num_steps, int) or num_steps < minimum:
        raise ValueError(f"sequence length T must be an int >= {minimum}, got {num_steps!r}")


def adding_problem(key, batch_size: int, num_steps: int) -> dict:
    """``{"x": [B, T, 2] float32, "y": [B] float32}``."""
    _check_length(num_steps, 2)
    k_val, k_first, k_second = jax.random.split(key, 3)
    values_bt = jax.random.uniform(k_val, (batch_size, num_steps))
    half = num_steps // 2
    first_b = jax.random.randint(k_first, (batch_size,), 0, half)
    second_b = jax.random.randint(k_second, (batch_size,), half, num_steps)
    t_1t = jnp.arange(num_steps)[None, :]
    marker_bt = ((t_1t == first_b[:, None]) | (t_1t == second_b[:, None])).astype(jnp.float32)
    x_bt2 = jnp.stack([values_bt, marker_bt], axis=-1)
    return {"x": x_bt2, "y": jnp.sum(values_bt * marker_bt, axis=1)}


def adding_problem_baseline_mse() -> float:
    """MSE of always predicting 1 on ``adding_problem``: Var(U + U) = 1/6."""
    return ADDING_BASELINE_MSE


def adding_problem_hs97(key, batch_size: int, num_steps: int) -> dict:
    """The 1997 variant: ``{"x": [B, T + T//10, 2], "y": [B], "lengths": [B]}``."""
    _check_length(num_steps, 24)  # room for 10 + T/2 - 1 distinct positions
    max_steps = num_steps + num_steps // 10
    k_val, k_len, k_first, k_second = jax.random.split(key, 4)
    values_bt = jax.random.uniform(k_val, (batch_size, max_steps), minval=-1.0, maxval=1.0)
    lengths_b = jax.random.randint(k_len, (batch_size,), num_steps, max_steps + 1)
    first_b = jax.random.randint(k_first, (batch_size,), 0, 10)
    # the second marker: one of the first T/2 - 1 steps other than the first marker
    second_b = jax.random.randint(k_second, (batch_size,), 0, num_steps // 2 - 2)
    second_b = jnp.where(second_b >= first_b, second_b + 1, second_b)
    t_1t = jnp.arange(max_steps)[None, :]
    marked_bt = (t_1t == first_b[:, None]) | (t_1t == second_b[:, None])
    ends_bt = (t_1t == 0) | (t_1t == lengths_b[:, None] - 1)
    marker_bt = jnp.where(marked_bt, 1.0, jnp.where(ends_bt, -1.0, 0.0))
    values_bt = jnp.where((t_1t == 0) & marked_bt, 0.0, values_bt)  # X1 = 0 if the first pair is marked
    values_bt = jnp.where(t_1t < lengths_b[:, None], values_bt, 0.0)
    marker_bt = jnp.where(t_1t < lengths_b[:, None], marker_bt, 0.0)
    x_bt2 = jnp.stack([values_bt, marker_bt], axis=-1)
    y_b = 0.5 + jnp.sum(jnp.where(marked_bt, values_bt, 0.0), axis=1) / 4.0
    return {"x": x_bt2, "y": y_b, "lengths": lengths_b}


def copy_memory(key, batch_size: int, num_steps: int) -> dict:
    """``{"tokens": [B, T + 20] int32, "targets": [B, T + 20] int32}``; vocabulary size 10."""
    _check_length(num_steps, 1)
    total = num_steps + 2 * COPY_LENGTH
    symbols_bs = jax.random.randint(key, (batch_size, COPY_LENGTH), 1, COPY_SYMBOLS + 1)
    tokens = jnp.full((batch_size, total), COPY_BLANK, jnp.int32)
    tokens = tokens.at[:, :COPY_LENGTH].set(symbols_bs)
    tokens = tokens.at[:, COPY_LENGTH + num_steps - 1].set(COPY_DELIMITER)
    targets = jnp.full((batch_size, total), COPY_BLANK, jnp.int32).at[:, -COPY_LENGTH:].set(symbols_bs)
    return {"tokens": tokens, "targets": targets}


def copy_memory_baseline(num_steps: int) -> float:
    """Cross-entropy per step of the best memoryless strategy: ``10 log 8 / (T + 20)``."""
    return COPY_LENGTH * math.log(COPY_SYMBOLS) / (num_steps + 2 * COPY_LENGTH)


TASKS = {"adding": adding_problem, "adding_hs97": adding_problem_hs97, "copy": copy_memory}
