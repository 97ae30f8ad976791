"""PNG figures a person would rather look at than read: adaptation curves, fitted sines.

matplotlib runs with the Agg backend, so figures are drawn without a display.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from metarl.atomic import atomic_write_bytes  # noqa: E402
from metarl.curves import Curve  # noqa: E402
from metarl.learners.supervised import SupervisedMetaLearner  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    """Write the figure atomically (no half-written PNG if interrupted)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_curve(curve: Curve, path: Path, title: str = "", label: str = "meta-trained") -> Path:
    """Mean metric per number of adaptation steps, with the 95% CI as a band."""
    return plot_curves({label: curve}, path, title)


def plot_curves(curves: Mapping[str, Curve], path: Path, title: str = "") -> Path:
    """Several initializations' adaptation curves on one axis (e.g. meta-trained, random and
    joint), each mean with its 95% CI as a band."""
    fig, ax = plt.subplots(figsize=(6, 4))
    first = next(iter(curves.values()))
    for label, curve in curves.items():
        steps = np.array(curve.steps)
        mean = np.array(curve.mean)
        ci = np.nan_to_num(np.array(curve.ci95))
        ax.plot(steps, mean, marker="o", label=label)
        ax.fill_between(steps, mean - ci, mean + ci, alpha=0.25)
    ax.set_xlabel("adaptation steps")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{first.metric} (mean over {first.n_tasks} tasks, 95% CI)")
    if first.metric == "mse" and all(np.all(np.array(c.mean) > 0) for c in curves.values()):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "adaptation curve")
    return _save(fig, path)


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


def plot_sine_fits(meta: SupervisedMetaLearner, path: Path, steps: int = 10, n: int = 4) -> Path:
    """A few held-out sine tasks: the true wave, the support points, the prediction before
    adaptation (the meta-learned initialization) and after `steps` adaptation steps."""
    phi, learner = meta.evaluation_start()
    batch = meta.eval_batch(n).to(meta.device)
    adapted = learner.adapt(phi, batch, steps)
    before = learner.predict({k: v.expand(n, *v.shape) for k, v in phi.items()}, batch.query_x)
    after = learner.predict(adapted, batch.query_x)
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
    fig.suptitle(f"sine: {meta.evaluation.support_shots}-shot adaptation")
    return _save(fig, path)
