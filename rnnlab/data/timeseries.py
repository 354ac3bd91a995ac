"""Time series for forecasting: generators, CSV columns, windows, a split by time.

series = mackey_glass(3000)                    # or sine_mixture(...), load_csv_column(path, "Close")
train, val = split_by_time(series, 0.2)        # the validation part is the future
x_nw1, y_n = make_windows(train, window=50)    # (inputs, next value) pairs
"""

from __future__ import annotations

import numpy as np

from rnnlab.data.files import FLOAT32_MAX, column_values, load_table, numeric_cells, text_cells
from rnnlab.validation import InputError


def sine_mixture(num_steps: int, seed: int = 0, periods=(20.0, 53.0, 127.0), noise: float = 0.05) -> np.ndarray:
    """``sum_k a_k sin(2 pi t / P_k + phi_k) + noise * N(0, 1)``, random amplitudes and phases: ``[T]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_steps, dtype=np.float64)
    amplitudes = rng.uniform(0.5, 1.0, len(periods))
    phases = rng.uniform(0, 2 * np.pi, len(periods))
    clean = sum(a * np.sin(2 * np.pi * t / p + phi) for a, p, phi in zip(amplitudes, periods, phases))
    return (clean + noise * rng.normal(size=num_steps)).astype(np.float32)


def mackey_glass(
    num_steps: int,
    tau: float = 17.0,
    beta: float = 0.2,
    gamma: float = 0.1,
    n: float = 10.0,
    dt: float = 0.1,
    sample_every: int = 10,
    x0: float = 1.2,
    warmup: int = 500,
) -> np.ndarray:
    """The Mackey-Glass delay equation, chaotic for ``tau = 17``: ``[T]``.

        dx/dt = beta * x(t - tau) / (1 + x(t - tau)^n) - gamma * x(t)

    Integrated with Euler steps of ``dt`` (history constant ``x0``), sampled
    every ``sample_every`` steps (one unit of time by default), after
    ``warmup`` samples are dropped.
    """
    delay = int(round(tau / dt))
    total = (num_steps + warmup) * sample_every
    x = np.empty(total + delay)
    x[: delay + 1] = x0
    for i in range(delay, total + delay - 1):
        lagged = x[i - delay]
        x[i + 1] = x[i] + dt * (beta * lagged / (1.0 + lagged**n) - gamma * x[i])
    return x[delay::sample_every][warmup : warmup + num_steps].astype(np.float32)


def load_csv_column(path, column: str) -> np.ndarray:
    """One numeric column of a CSV file, loaded through Hugging Face ``datasets``: ``[T]``.

    An empty, NaN, inf or non-numeric cell is an error naming its row and the column.
    """
    return load_csv_series(path, column)[0]


def load_csv_series(path, column: str, time_column: str | None = None) -> tuple[np.ndarray, list[str] | None]:
    """``(values [T], time labels [T] or None)``: a numeric column (as ``load_csv_column``) and,
    given ``time_column``, that column's cells as text (dates, years), from one read of the file."""
    table = load_table(path)
    values = numeric_cells(column_values(table, column, path), column, path)
    if time_column is None:
        return values, None
    return values, text_cells(column_values(table, time_column, path), time_column, path)


def split_by_time(series: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(past, future)``: the last ``val_fraction`` of the series is the validation part."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    cut = int(round(len(series) * (1.0 - val_fraction)))
    return series[:cut], series[cut:]


def make_windows(series: np.ndarray, window: int, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``x [N, window, 1]`` and ``y [N, horizon]``: each window and the ``horizon`` values after it."""
    series = np.asarray(series)
    if series.ndim != 1:
        raise ValueError(f"series must be 1-D, got shape {series.shape}")
    if series.dtype == np.bool_ or not (
        np.issubdtype(series.dtype, np.integer) or np.issubdtype(series.dtype, np.floating)
    ):
        raise InputError(f"a series must be real numbers, got dtype {series.dtype}")  # complex: never dropped silently
    if series.size and not np.all(np.abs(series.astype(np.float64)) <= FLOAT32_MAX):  # NaN fails too
        bad = int(np.argmin(np.abs(series.astype(np.float64)) <= FLOAT32_MAX))
        raise InputError(f"the series' step {bad} is {series[bad]}, not a finite float32 number")
    series = series.astype(np.float32)
    count = len(series) - window - horizon + 1
    if window < 1 or horizon < 1 or count < 1:
        raise InputError(f"a series of {len(series)} steps has no window of {window} followed by {horizon}")
    idx = np.arange(count)[:, None] + np.arange(window + horizon)[None, :]
    chunks = series[idx]
    return chunks[:, :window, None], chunks[:, window:]


def standardize(train: np.ndarray, *others: np.ndarray):
    """Scale by the training part's mean and std only (no peeking at the future).

    Returns ``(mean, std, train_scaled, *others_scaled)``.
    """
    mean, std = float(np.mean(train)), float(np.std(train)) or 1.0
    return (mean, std) + tuple((np.asarray(a) - mean) / std for a in (train, *others))
