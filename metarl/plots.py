"""PNG figures a person would rather look at than read: adaptation curves, fitted sines.

matplotlib runs with the Agg backend, so figures are drawn without a display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FuncFormatter,
    MaxNLocator,
    NullLocator,
    ScalarFormatter,
)

from metarl.atomic import atomic_write_bytes  # noqa: E402
from metarl.curves import Curve  # noqa: E402
from metarl.protocol import TaskBatch  # noqa: E402


def drawable(text: str) -> str:
    """`text` with the bytes of a name that is not UTF-8 (decoded to surrogates, which a
    font cannot draw) shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _save(fig: plt.Figure, path: Path) -> Path:
    """Write the figure atomically (no half-written PNG if interrupted)."""
    import io

    for text in fig.findobj(Text):  # titles and labels made from file names
        text.set_text(drawable(text.get_text()))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curves(
    series: Mapping[str, Curve] | Sequence[tuple[str, Curve]],
    path: Path,
    title: str = "",
    xlabel: str = "adaptation steps",
    symlog_steps: bool = False,
    x: Sequence[Sequence[float]] | None = None,
) -> Path:
    """Several adaptation curves of one metric on the same axes (e.g. meta-trained against
    random init, or two runs of a task), each with its 95% CI as a band. Curves whose label
    starts with "random" or "joint" are baselines: drawn dashed, in fixed colours.

    A curve that diverges never hides the others: the axis is fitted to the curves being
    compared (the baselines too, unless they blow up past 3x their top), bands are clipped to
    it, and a point beyond it is marked at the top edge with its value and how many tasks
    diverged there (`Curve.diverged`).

    Args:
        series: Label -> curve (or pairs, to keep an order): the curves of one metric.
        path: The PNG to write.
        title: The figure's title.
        xlabel: The x axis's label.
        symlog_steps: Space the steps logarithmically past 1 (ticks at the steps
            evaluated), for curves evaluated at, say, 0, 1, 3 and 50 steps.
        x: Each curve's positions instead of its step counts (env steps spent adapting,
            where curves of different units of adaptation share the axis).

    Returns:
        `path`, written atomically.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from pathlib import Path
        >>> from metarl.curves import Curve
        >>> from metarl.plots import plot_curves
        >>> values = np.random.default_rng(0).uniform(size=(3, 10))
        >>> meta = Curve.from_values("mse", [0, 1, 10], values / [[1], [2], [4]])
        >>> random = Curve.from_values("mse", [0, 1, 10], values)
        >>> path = Path(tempfile.mkdtemp()) / "curves.png"
        >>> plot_curves({"meta-trained": meta, "random init": random}, path).stat().st_size > 0
        True
    """
    items = list(series.items()) if isinstance(series, Mapping) else list(series)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    metric, n_tasks = items[0][1].metric, items[0][1].n_tasks
    log = items[0][1].lower_is_better and all(
        m > 0 for _, c in items for m in c.mean if np.isfinite(m)
    )
    low, high = _limits(items, log)
    colours = iter(COLOURS)
    for index, (label, curve) in enumerate(items):
        steps = np.array(curve.steps if x is None else x[index], dtype=float)
        mean = np.array(curve.mean, dtype=float)
        band_low, band_high = _band(curve)
        style = BASELINE_STYLES.get(label.split()[0], {})
        colour = style.get("color") or next(colours)
        ax.plot(steps, mean, marker="o", label=label, color=colour, linestyle=style.get("ls", "-"))
        inside = np.isfinite(mean) & (mean <= high)
        ax.fill_between(
            steps,
            np.clip(band_low, low, high),
            np.clip(band_high, low, high),
            where=inside,
            alpha=0.2,
            color=colour,
            linewidth=0,
        )
        diverged = curve.diverged()
        for i in np.flatnonzero(~inside):
            value = "not finite" if not np.isfinite(mean[i]) else f"{mean[i]:.3g}"
            count = f", {diverged[i]}/{curve.n_tasks} diverged" if diverged[i] else ""
            ax.plot(steps[i], high, marker="^", color=colour, clip_on=False, zorder=4)
            ax.annotate(
                f"{value}{count}",
                (steps[i], high),
                xytext=(-6, -12),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                color=colour,
            )
    ax.set_ylim(low, high)
    if log:
        _log_axis(ax)
    ax.set_ylabel(f"{metric} (mean over {n_tasks} tasks, 95% CI)")
    _finish(ax, xlabel, title or "adaptation curve")
    if symlog_steps:
        ax.set_xscale("symlog", linthresh=1.0)
        ticks = sorted({s for _, c in items for s in c.steps})
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0] - 0.15, ticks[-1] * 1.15)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_locator(NullLocator())
    elif x is not None:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are counts
    return _save(fig, path)


FIGSIZE = (6.4, 4.2)
COLOURS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:olive"]
"""The runs' colours, in order, in every figure (the baselines have their own)."""


def _finish(ax: plt.Axes, xlabel: str, title: str) -> None:
    """What every figure shares: grid, legend below the axes (the curves fill the plot
    where a legend inside would go), the title."""
    ax.set_xlabel(xlabel)
    ax.grid(True, alpha=0.3)
    below = -0.14 - 0.06 * xlabel.count("\n")  # clear of a label of several lines
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, below), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title, fontsize=11)


def _band(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """The curve's 95% band (`Curve.bounds`), collapsed onto the mean where an end is not
    finite (one task: no interval)."""
    mean = np.array(curve.mean, dtype=float)
    low, high = (np.array(b, dtype=float) for b in curve.bounds())
    return np.where(np.isfinite(low), low, mean), np.where(np.isfinite(high), high, mean)


def _limits(items: Sequence[tuple[str, Curve]], log: bool) -> tuple[float, float]:
    """The y range: every band, except where a curve goes past 3x the top of the runs' bands
    (a baseline blowing up under the run's inner lr): the axis is cut there."""

    def ends(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray]:
        mean = np.concatenate([np.array(c.mean, dtype=float) for c in curves])
        bands = [_band(c) for c in curves]
        bottom = np.concatenate([b for b, _ in bands])
        top = np.concatenate([t for _, t in bands])
        ok = np.isfinite(mean)
        return bottom[ok], top[ok]

    runs = [c for label, c in items if label.split()[0] not in BASELINE_STYLES]
    _, runs_top = ends(runs or [c for _, c in items])
    lows, tops = ends([c for _, c in items])
    if not len(tops):  # nothing finite to show
        return (0.1, 10.0) if log else (0.0, 1.0)
    cap = math.inf
    if items[0][1].lower_is_better and len(runs_top):  # a loss blows up upwards only
        cap = 3 * float(runs_top.max())
    means = np.array([m for _, c in items for m in c.mean if np.isfinite(m) and m <= cap])
    if log:
        bottom = float(means.min()) / 1.5 if len(means) else cap / 100
        return bottom, min(cap, float(tops.max()) * 1.3)
    bottom, top = float(lows.min()), min(cap, float(tops.max()))
    if items[0][1].metric in ("accuracy", "success"):  # a rate: the band stays in [0, 1]
        bottom, top = max(bottom, 0.0), min(top, 1.0)
    margin = 0.05 * (top - bottom or 1.0)
    return bottom - margin, top + margin


def _log_axis(ax: plt.Axes) -> None:
    """A log error axis with plain tick labels (0.5, 1, 2 rather than 5x10^-1)."""
    low, high = ax.get_ylim()
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    if high / low < 30:  # minor labels only where they do not crowd
        ax.yaxis.set_minor_formatter(plain)


BASELINE_STYLES = {
    "random": {"color": "tab:gray", "ls": "--"},
    "joint": {"color": "tab:brown", "ls": "--"},
}


def plot_against_time(
    series: dict[str, list[tuple[float, float, float]]], path: Path, ylabel: str, title: str
) -> Path:
    """One line per name through its (seconds, mean, 95% CI) points, the CI as a band: a
    metric against training wall time, e.g. two training loops given the same minutes.

    Args:
        series: Name -> its (seconds, mean, 95% CI) points.
        path: The PNG to write.
        ylabel: The metric's name.
        title: The figure's title.

    Returns:
        `path`, written atomically.
    """
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for (name, points), colour in zip(series.items(), COLOURS * 4, strict=False):
        seconds, mean, ci = (np.array(column) for column in zip(*points, strict=True))
        ax.plot(seconds, mean, marker="o", label=name, color=colour)
        ax.fill_between(seconds, mean - ci, mean + ci, alpha=0.2, color=colour, linewidth=0)
    ax.set_ylabel(ylabel)
    _finish(ax, "training wall time (s)", title)
    return _save(fig, path)


TRAINING_METRICS = (
    ("return_before", "return_after", "return"),
    ("loss_before", "query_loss", "loss"),
    ("loss_before", "loss_last_step", "loss"),
)
"""(before adaptation, after it, the metric's name) in a run's metrics.jsonl: RL logs the
meta-batch's returns, supervised learners their losses."""


def training_metric(rows: Sequence[Mapping[str, float]]) -> tuple[str, str, str] | None:
    """The (before, after, name) of `TRAINING_METRICS` a run's metrics.jsonl logs: the first
    with both keys, else the first with one (a joint baseline logs no "after"); None where
    it logs neither a loss nor a return."""
    keys = {key for row in rows for key in row}
    for both in (True, False):
        for before, after, name in TRAINING_METRICS:
            if (before in keys and after in keys) if both else (before in keys or after in keys):
                return before, after, name
    return None


def plot_training_curves(
    runs: Mapping[str, Sequence[Mapping[str, float]]],
    path: Path,
    title: str = "",
    window: int = 10,
    tasks: Mapping[str, str] | None = None,
) -> Path:
    """Training curves of runs: the meta-batch's metric before adaptation (dashed) and after
    it (solid), one colour per run (baselines named "joint..." or "random..." in their own),
    against environment steps (RL: the sum of `env_steps` and `query_env_steps` so far) or
    iterations. Each line is a running mean over `window` logged iterations, or a 40th of the
    run where that is more (a joint baseline logs one row per task), the raw values faint
    behind it.

    Runs share a panel only where their numbers share a scale: the same task (`tasks`: run
    name -> task name), the same metric (a loss, a return) and the same x axis (env steps,
    iterations). A folder of sine and Navigation2D runs gets one panel each, instead of the
    returns drawn against the losses' axis (or left out); each panel's y axis is fitted to
    its running means, so a few early outliers do not flatten the curves being compared.
    Runs that log neither a loss nor a return are left out (`training_metric`).

    Args:
        runs: Label -> the run's rows of `metrics.jsonl` (`RunDir.read_metrics`).
        path: The PNG to write.
        title: The figure's title.
        window: Logged iterations per running mean (at least).
        tasks: Label -> the run's task name, which decides the panels.

    Returns:
        `path`, written atomically.
    """
    panels: dict[tuple[str, str, bool], list[str]] = {}
    for name, rows in runs.items():
        found = training_metric(rows) if rows else None
        if found is not None:
            key = ((tasks or {}).get(name, ""), found[2], "env_steps" in rows[0])
            panels.setdefault(key, []).append(name)
    ncols = 1 if len(panels) <= 1 else 2
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(FIGSIZE[0] * ncols, FIGSIZE[1] * nrows), squeeze=False
    )
    for ax, ((task, metric, by_env_steps), names) in zip(axes.flat, panels.items(), strict=False):
        panel = f"{task}: {metric}" if task else metric
        _training_panel(ax, {n: runs[n] for n in names}, by_env_steps, window)
        _finish(
            ax,
            "env steps" if by_env_steps else "meta-iteration",
            (title or "training curves") if len(panels) == 1 else panel,
        )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    if len(panels) > 1:
        fig.suptitle(title or "training curves", fontsize=12)
    fig.tight_layout()
    return _save(fig, path)


def _training_panel(
    ax: plt.Axes, runs: Mapping[str, Sequence[Mapping[str, float]]], by_env_steps: bool, window: int
) -> None:
    """One panel of `plot_training_curves`: runs of one task, metric and x axis."""
    colours = iter(COLOURS * 4)
    low, high = np.inf, -np.inf
    name_of_metric = ""
    for name, rows in runs.items():
        before, after, name_of_metric = training_metric(rows) or TRAINING_METRICS[0]
        style = BASELINE_STYLES.get(name.split()[0], {})
        colour = style.get("color") or next(colours)
        if by_env_steps:
            spent = [r.get("env_steps", 0.0) + r.get("query_env_steps", 0.0) for r in rows]
            x = np.cumsum(spent)
        else:
            x = np.array([r.get("iteration", i + 1) for i, r in enumerate(rows)], dtype=float)
        span = max(window, len(rows) // 40)
        dots = "o" if len(rows) <= 10 else None  # a line of 1 row draws nothing
        for key, dash, suffix in ((before, "--", "before"), (after, "-", "after")):
            y = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            if not np.isfinite(y).any():
                continue
            smooth = _running_mean(y, span)
            ax.plot(x, y, color=colour, linestyle=dash, alpha=0.12, linewidth=0.7)
            ax.plot(
                x,
                smooth,
                color=colour,
                linestyle=dash,
                label=f"{name}, {suffix}",
                marker=dots,
                markersize=4,
            )
            finite = smooth[np.isfinite(smooth)]
            low, high = min(low, finite.min()), max(high, finite.max())
    if np.isfinite(low) and np.isfinite(high):
        pad = 0.08 * max(high - low, 1e-9)
        ax.set_ylim(low - pad, high + pad)
    ax.set_ylabel(f"{name_of_metric} of the meta-batch (running mean)")
    if by_env_steps:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1e6:g} M"))


def _running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` finite values at each point (fewer at the start)."""
    out = np.full_like(y, np.nan)
    for i in range(len(y)):
        chunk = y[max(0, i - window + 1) : i + 1]
        chunk = chunk[np.isfinite(chunk)]
        if chunk.size:
            out[i] = chunk.mean()
    return out


def plot_sine_fits(
    batch: TaskBatch, before: torch.Tensor, after: torch.Tensor, path: Path, steps: int
) -> Path:
    """A few held-out sine tasks (`batch`): the true wave, the support points, the prediction
    `before` adaptation (the meta-learned initialization) and `after` `steps` adaptation steps
    (both `[tasks, query, 1]`, on the query inputs).

    Args:
        batch: The tasks' support and query points.
        before: Predictions on the query inputs before adapting.
        after: Predictions after `steps` steps.
        path: The PNG to write.
        steps: The adaptation steps of `after`, for the legend.

    Returns:
        `path`, written atomically.
    """
    n = batch.num_tasks
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), sharey=True)
    for i, ax in enumerate(np.atleast_1d(axes)):
        qx = batch.query_x[i, :, 0].cpu().numpy()
        ax.plot(qx, batch.query_y[i, :, 0].cpu().numpy(), "k-", lw=2, label="true")
        ax.plot(qx, before[i, :, 0].cpu().numpy(), "--", color="tab:gray", label="before (phi)")
        ax.plot(
            qx, after[i, :, 0].cpu().numpy(), "-", color="tab:red", label=f"after {steps} steps"
        )
        ax.scatter(
            batch.support_x[i, :, 0].cpu().numpy(),
            batch.support_y[i, :, 0].cpu().numpy(),
            color="tab:blue",
            zorder=3,
            label="support",
        )
        ax.set_xlabel("x")
        ax.grid(True, alpha=0.3)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle(f"sine: {batch.support_x.shape[1]}-shot adaptation")
    return _save(fig, path)
