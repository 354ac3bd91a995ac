"""Matplotlib figures.  Each function draws on an ``Axes`` it is given (or a new
figure) and returns the figure, so scripts save it and notebooks show it."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves
import numpy as np

from rnnlab import zoo


def model_color(name: str) -> str | None:
    """The zoo's colour for model ``name`` (None for a name the zoo does not know)."""
    return zoo.MODELS[name].color if name in zoo.MODELS else None


def variant_colors(models: dict[str, str]) -> dict[str, tuple]:
    """``{variant: model}`` -> ``{variant: colour}``: each model's first variant in the zoo's colour,
    its later variants in lighter shades of it (an LRU and its ablations in one family of greys)."""
    from matplotlib.colors import to_rgb

    seen: dict[str, int] = {}
    out = {}
    for variant, model in models.items():
        k = seen[model] = seen.get(model, -1) + 1
        base = np.array(to_rgb(model_color(model) or "tab:gray"))
        out[variant] = tuple(float(c) for c in base + (1 - base) * min(0.75, 0.25 * k))  # toward white
    return out


GRADIENT_NORM = r"$\|\partial L/\partial h_t\|$"
JACOBIAN_NORM = r"$\|\partial h_T/\partial h_t\|_2$"


def _axes(ax):
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    return ax.figure, ax


def band(ax, x, y_sx, label, color=None, low=25, high=75):
    """Median over the first axis of ``y_sx`` with a ``low``-``high`` percentile band."""
    y_sx = np.asarray(y_sx, np.float64)
    with np.errstate(invalid="ignore"):  # a diverged run's NaNs are left out of the plot
        median = np.median(y_sx, axis=0)
        (line,) = ax.plot(x, median, label=label, color=color, lw=1.8)
        if y_sx.shape[0] > 1:
            ax.fill_between(
                x,
                np.percentile(y_sx, low, axis=0),
                np.percentile(y_sx, high, axis=0),
                color=line.get_color(),
                alpha=0.2,
                lw=0,
            )


def learning_curves(
    curves: dict,
    *,
    baseline: float | None = None,
    baseline_label: str = "baseline",
    title: str,
    ylabel: str = "training MSE",
    ax=None,
    colors: dict | None = None,
    yscale: str = "log",
):
    """``curves[model] = (steps [N], losses [S, N])``: median over seeds with the min-max range, log y
    (``yscale="linear"`` for a bounded metric such as an accuracy).  ``colors[model]`` overrides
    the zoo's colour of ``model``."""
    fig, ax = _axes(ax)
    colors = colors or {}
    for model, (steps, losses_sn) in curves.items():
        color = colors.get(model, model_color(model))
        label = textwrap.fill(
            f"{model} (median of {np.shape(losses_sn)[0]} seeds)", 42
        )  # a long name wraps, the axes keep their width
        band(ax, steps, losses_sn, label, color, 0, 100)
    if baseline is not None:
        ax.axhline(baseline, color="k", ls="--", lw=1, label=f"{baseline_label} = {baseline:.3g}")
    ax.set_yscale(yscale)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel + (" (log scale)" if yscale == "log" else ""))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return fig


def curve_panels(
    panels_: dict, *, title: str, suptitle: str, colors: dict | None = None, width: float = 6.4, height: float = 5.6
):
    """One row of ``learning_curves`` panels, ``panels_[ylabel] = (curves, yscale)`` (each panel's
    ``curves`` of the same models, titled ``title``), one legend below them all and ``suptitle``
    wrapped above: the legend of many models takes the figure's width, not a panel's."""
    fig, axes = panels(len(panels_), width=width, height=height, sharey=False)
    for ax, (ylabel, (curves, yscale)) in zip(axes, panels_.items()):
        learning_curves(curves, colors=colors, ax=ax, ylabel=ylabel, title=title, yscale=yscale)
        ax.get_legend().remove()
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=3, fontsize=7)
    fig.suptitle(textwrap.fill(suptitle, 150), fontsize=9)
    return fig


def norms_by_distance(series: dict, *, title: str, ylabel: str = GRADIENT_NORM, ax=None, styles: dict | None = None):
    """``series[label] = {"distance", "median", "q25", "q75"}`` (``diagnostics.summarize``'s
    format, as results.json stores it): median with the interquartile band, log y.

    Zeros (float32 underflow, below ~1e-38) cannot sit on a log axis and are left out.
    """
    fig, ax = _axes(ax)
    styles = styles or {}
    for label, s in series.items():
        d = np.asarray(s["distance"])
        med, lo, hi = (np.asarray(s[k], np.float64) for k in ("median", "q25", "q75"))
        style = {"color": model_color(label.split()[0]), **styles.get(label, {})}
        positive = med > 0
        (line,) = ax.plot(d[positive], med[positive], label=label, lw=1.6, **style)
        band_ok = (lo > 0) & (hi > 0)
        ax.fill_between(d[band_ok], lo[band_ok], hi[band_ok], alpha=0.18, lw=0, color=line.get_color())
    ax.set_yscale("log")
    ax.set_xlabel(r"distance from the last step, $T-1-t$")
    ax.set_ylabel(ylabel + " (log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def norms_grid(
    panels_: dict,
    *,
    columns: int,
    suptitle: str,
    ylabel: str = GRADIENT_NORM,
    styles: dict | None = None,
    width: float = 4.2,
):
    """``panels_[title] = series`` (``norms_by_distance``'s), in reading order, ``columns`` per row."""
    fig, axes = panels(columns, rows=-(-len(panels_) // columns), sharey=False, width=width)
    for ax, (title, series) in zip(axes, panels_.items()):
        norms_by_distance(series, title=title, ylabel=ylabel, ax=ax, styles=styles)
    fig.suptitle(suptitle, fontsize=10)
    return fig


def exponent_vs_decay(points: dict, *, title: str, colors: dict | None = None):
    """``points[label] = [(lambda_1, decay), ...]``: the largest Lyapunov exponent against the
    fitted decay rate of ``ln ||dL/dh_t||`` per step, with the line where they agree."""
    fig, ax = plt.subplots(figsize=(6.5, 5), constrained_layout=True)
    for label, xy in points.items():
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        ax.scatter(xy[:, 0], xy[:, 1], label=label, color=(colors or {}).get(label))
    finite = np.concatenate([np.asarray(v, np.float64).ravel() for v in points.values()])
    finite = finite[np.isfinite(finite)]
    lo, hi = (finite.min(), finite.max()) if finite.size else (-1.0, 0.0)
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="decay = exponent")
    ax.set_xlabel(r"largest Lyapunov exponent $\lambda_1$ (per step)")
    ax.set_ylabel(r"slope of $\ln\|\partial L/\partial h_t\|$ per step back")
    ax.set_title(title, fontsize=9, wrap=True)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def panels(count: int, *, rows: int = 1, width: float = 4.2, height: float = 3.6, sharey: bool = True):
    """``rows`` rows of ``count`` axes, as one list in reading order."""
    fig, axes = plt.subplots(
        rows, count, figsize=(width * count, height * rows), sharey=sharey, constrained_layout=True, squeeze=False
    )
    return fig, [ax for row in axes for ax in row]


def profiles(panels_: dict, *, xlabel: str, ylabel: str, suptitle: str, colors: dict | None = None):
    """``panels_[title] = {label: values [T]}``: one panel per title side by side, sharing a log y,
    each label's values against the time step t (a gradient's norm at every hidden state).  A
    curve that stops fell to 0: below float32's smallest number."""
    fig, axes = panels(len(panels_), width=5.5, height=3.8)
    for ax, (title, series) in zip(axes, panels_.items()):
        for label, values_t in series.items():
            ax.plot(values_t, label=label, color=(colors or {}).get(label))
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_title(title)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=8)
    fig.suptitle(suptitle, fontsize=10)
    return fig


def training_traces(traces: dict, *, title: str, axes=None):
    """``traces[label] = (steps [N], grad_norm [S, N], loss [S, N])``: pre-clip gradient norm
    and loss against the step, median over seeds with the min-max range, both log y."""
    if axes is None:
        fig, axes = panels(2, width=5.5, sharey=False)
    fig = axes[0].figure
    for label, (steps, grad_sn, loss_sn) in traces.items():
        color = None
        for ax, values in zip(axes, (grad_sn, loss_sn)):
            band(ax, steps, values, label, color, 0, 100)
            color = ax.lines[-1].get_color()
    for ax, ylabel in zip(axes, ("gradient global norm before clipping", "training loss (MSE)")):
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel + " (log scale)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def main_job_figures(cfg, results: dict, curves: dict, clip_traces: dict) -> dict:
    """experiments/vanishing_gradients.py's figures, ``{name: figure}``, from its ``results``: the gradient
    and Jacobian norms through time, the initialisation sweeps, lambda_1 against the gradient's decay,
    the clipping demo and the training curves (``cfg``: the run's config, for titles and legends)."""
    from rnnlab.data import synthetic

    figures = {}
    labels = {name: zoo.label(name, forget_bias=cfg.forget_bias) for name in cfg.models}
    colors = {labels[name]: model_color(name) for name in cfg.models}
    styles = {label: {"color": color} for label, color in colors.items()}
    phases = {"init": "at initialisation", "trained": f"after {cfg.steps} Adam steps"}
    dtype = "float64" if cfg.float64 else "float32"  # the legends name each model and its init
    for key, ylabel in {"gradient_norms": GRADIENT_NORM, "jacobian_norms": JACOBIAN_NORM}.items():
        if results[key][cfg.models[0]].get(str(cfg.lengths[0])):
            series = lambda T, phase: {labels[n]: results[key][n][str(T)][phase] for n in cfg.models}
            grid = {f"T = {T}, {how}": series(T, phase) for phase, how in phases.items() for T in cfg.lengths}
            title = f"{ylabel} on the adding problem, H={cfg.hidden}, median and IQR of {cfg.seeds} seeds (in {dtype})"
            figures[key] = norms_grid(grid, columns=len(cfg.lengths), ylabel=ylabel, styles=styles, suptitle=title)

    sweep = lambda kind, name: {f"{name} {v}": s for v, s in results["sweeps"][kind].items()}
    T = results["sweeps"]["length"]
    grid = {f"tanh RNN at init, W_hh rescaled to spectral radius ρ, T={T}": sweep("spectral_radius", "radius"),
              f"LSTM at init, forget-gate bias b_f, T={T}": sweep("forget_bias", "forget bias")}  # fmt: skip
    title = f"Initialisation decides the picture (H={cfg.hidden}, median and IQR of {cfg.seeds} seeds)"
    figures["init_sweeps"] = norms_grid(grid, columns=2, width=5.5, suptitle=title)

    pairs = lambda by_T: [(v[p]["exponent"], v[p]["gradient_decay"]) for v in by_T.values() for p in phases]
    points = {labels[n]: pairs(results["lyapunov"][n]) for n in cfg.models}
    title = f"λ_1 against the gradient's decay, adding problem, H={cfg.hidden}, T = {', '.join(map(str, cfg.lengths))}, at init and trained, median of {cfg.seeds} seeds"
    figures["lyapunov"] = exponent_vs_decay(points, title=title, colors=colors)

    c = results["clipping"]
    title = f"Exploding regime: tanh RNN with spectral radius {c['radius']:g}, T={c['length']}, SGD lr {c['learning_rate']:g}, {cfg.seeds} seeds (median, min-max)"
    figures["clipping"] = training_traces(clip_traces, title=title)

    fig, axes = panels(len(cfg.lengths))
    for ax, T in zip(axes, cfg.lengths):
        by_model = {labels[n]: curves[n][str(T)] for n in cfg.models}
        baseline = dict(baseline=synthetic.ADDING_BASELINE_MSE, baseline_label="predict 1")
        learning_curves(by_model, title=f"T = {T}", ax=ax, colors=colors, **baseline)
    settings = f"Adam lr {cfg.learning_rate:g}, clip {cfg.clip_norm:g}, batch {cfg.batch_size}, H={cfg.hidden}"
    fig.suptitle(f"Adding problem training loss, {settings}, {cfg.seeds} seeds", fontsize=10)
    figures["training_loss"] = fig
    return figures
