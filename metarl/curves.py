"""Adaptation curves: a metric's mean and 95% confidence interval per number of steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return mean, math.nan
    return mean, float(Z95 * np.std(values, ddof=1) / math.sqrt(n))


@dataclass
class Curve:
    """Mean and 95% confidence half-width of a metric per number of adaptation steps."""

    metric: str
    steps: list[int]
    mean: list[float]
    ci95: list[float]
    n_tasks: int
    per_task: np.ndarray
    """`[len(steps), n_tasks]`: the raw values behind the means."""

    @classmethod
    def from_values(cls, metric: str, steps: list[int], values: np.ndarray) -> Curve:
        stats = [mean_ci95(v) for v in values]
        return cls(
            metric=metric,
            steps=list(steps),
            mean=[m for m, _ in stats],
            ci95=[c for _, c in stats],
            n_tasks=int(values.shape[1]),
            per_task=values,
        )

    def gains(self) -> list[tuple[float, float]]:
        """Per step: mean and 95% CI of (metric after these steps - metric at the first
        step), paired task by task, so the task-to-task spread cancels out of the CI."""
        base = self.per_task[0]
        return [mean_ci95(row - base) for row in self.per_task]

    def to_json(self) -> dict[str, Any]:
        gains = self.gains()
        return {
            "metric": self.metric,
            "n_tasks": self.n_tasks,
            "steps": self.steps,
            "mean": self.mean,
            "ci95": self.ci95,
            "gain": [g for g, _ in gains],
            "gain_ci95": [c for _, c in gains],
            "curve": [
                {"step": s, "mean": m, "ci95": c, "gain": g, "gain_ci95": gc}
                for s, m, c, (g, gc) in zip(self.steps, self.mean, self.ci95, gains, strict=True)
            ],
        }
