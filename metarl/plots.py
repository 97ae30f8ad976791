"""PNG figures a person would rather look at than read: adaptation curves, fitted sines.

matplotlib runs with the Agg backend, so figures are drawn without a display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

from metarl.atomic import atomic_write_bytes  # noqa: E402
from metarl.curves import Curve  # noqa: E402
from metarl.protocol import TaskBatch  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    """Write the figure atomically (no half-written PNG if interrupted)."""
    import io

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
) -> Path:
    """Several adaptation curves of one metric on the same axes (e.g. meta-trained against
    random init, or two runs of a task), each with its 95% CI as a band. Curves whose label
    starts with "random" or "joint" are baselines: drawn dashed, in fixed colours."""
    items = list(series.items()) if isinstance(series, Mapping) else list(series)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    metric, n_tasks = items[0][1].metric, items[0][1].n_tasks
    colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for label, curve in items:
        steps = np.array(curve.steps)
        mean = np.array(curve.mean)
        ci = np.nan_to_num(np.array(curve.ci95))
        style = BASELINE_STYLES.get(label.split()[0], {})
        colour = style.get("color") or next(colours)
        ax.plot(steps, mean, marker="o", label=label, color=colour, linestyle=style.get("ls", "-"))
        ax.fill_between(steps, mean - ci, mean + ci, alpha=0.2, color=colour, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are counts
    ax.set_ylabel(f"{metric} (mean over {n_tasks} tasks, 95% CI)")
    if metric == "mse" and all(min(c.mean) > 0 for _, c in items):
        _log_axis(ax, items)
    ax.grid(True, alpha=0.3)
    # below the axes: the curves fill the plot where a legend inside would go
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8, frameon=False)
    ax.set_title(title or "adaptation curve")
    return _save(fig, path)


def _log_axis(ax: plt.Axes, series: Sequence[tuple[str, Curve]]) -> None:
    """A log error axis with plain tick labels, cut at 3x the highest band of the non-baseline
    curves: a baseline that diverges (a random init blowing up under the run's inner lr) is
    marked with its value at the top edge instead of squashing the curves being compared."""
    ax.set_yscale("log")
    runs = [c for label, c in series if label.split()[0] not in BASELINE_STYLES] or [
        c for _, c in series
    ]
    cap = 3 * max(m + np.nan_to_num(ci) for c in runs for m, ci in zip(c.mean, c.ci95, strict=True))
    bottom = min(min(c.mean) for _, c in series) / 1.5
    if max(max(c.mean) for _, c in series) > cap:
        ax.set_ylim(bottom, cap)
        for label, c in series:
            for step, m in zip(c.steps, c.mean, strict=True):
                if m > cap:
                    ax.annotate(
                        f"{m:.3g} ↑",
                        (step, cap),
                        xytext=(0, -12),
                        textcoords="offset points",
                        ha="center",
                        fontsize=8,
                        color=BASELINE_STYLES.get(label.split()[0], {}).get("color", "k"),
                    )
    low, high = ax.get_ylim()
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 0.5, 1, 2 rather than 5x10^-1
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
    metric against training wall time, e.g. two training loops given the same minutes."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in series.items():
        seconds, mean, ci = (np.array(column) for column in zip(*points, strict=True))
        ax.plot(seconds, mean, marker="o", label=name)
        ax.fill_between(seconds, mean - ci, mean + ci, alpha=0.2)
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def plot_sine_fits(
    batch: TaskBatch, before: torch.Tensor, after: torch.Tensor, path: Path, steps: int
) -> Path:
    """A few held-out sine tasks (`batch`): the true wave, the support points, the prediction
    `before` adaptation (the meta-learned initialization) and `after` `steps` adaptation steps
    (both `[tasks, query, 1]`, on the query inputs)."""
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
