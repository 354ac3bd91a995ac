"""Matplotlib figures.  Each function draws on an ``Axes`` it is given (or a new
figure) and returns the figure, so scripts save it and notebooks show it."""

from __future__ import annotations

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves
import numpy as np

COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green", "irnn": "tab:purple", "rnn_relu": "tab:orange"}


def _axes(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    return ax.figure, ax


def band(ax, x, y_sx, label, color=None, low=25, high=75):
    """Median over the first axis of ``y_sx`` with a ``low``-``high`` percentile band."""
    y_sx = np.asarray(y_sx, np.float64)
    median = np.median(y_sx, axis=0)
    ax.plot(x, median, label=label, color=color, lw=1.8)
    if y_sx.shape[0] > 1:
        ax.fill_between(x, np.percentile(y_sx, low, axis=0), np.percentile(y_sx, high, axis=0), color=color, alpha=0.2, lw=0)


def learning_curves(curves: dict, *, baseline: float | None = None, baseline_label: str = "baseline",
                    title: str, ylabel: str = "training MSE", ax=None):
    """``curves[model] = (steps [N], losses [S, N])``: median over seeds with the min-max range, log y."""
    fig, ax = _axes(ax)
    for model, (steps, losses_sn) in curves.items():
        band(ax, steps, losses_sn, f"{model} (median of {np.shape(losses_sn)[0]} seeds)", COLORS.get(model), 0, 100)
    if baseline is not None:
        ax.axhline(baseline, color="k", ls="--", lw=1, label=f"{baseline_label} = {baseline:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel + " (log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig
