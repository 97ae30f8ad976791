"""Adaptation curves: a metric's mean and 95% confidence interval per number of steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.959963984540054
DIVERGED_FACTOR = 10.0
"""A task's loss diverged at a step count when it is not finite or more than this many
times its loss at the first step count (before adaptation, usually): a rate that makes the
loss blow up, not noise."""


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval.

    Args:
        values: One value per task.

    Returns:
        The mean, and 1.96 standard errors (nan for fewer than two values).

    Examples:
        >>> import numpy as np
        >>> from metarl.curves import mean_ci95
        >>> mean, ci = mean_ci95(np.array([1.0, 2.0, 3.0, 4.0]))
        >>> mean, round(ci, 4)
        (2.5, 1.2652)
    """
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return mean, math.nan
    return mean, float(Z95 * np.std(values, ddof=1) / math.sqrt(n))


def wilson95(successes: int, n: int) -> tuple[float, float]:
    """The Wilson score 95% interval of a success rate from `successes` of `n` trials: the
    normal approximation's mean ± CI is wrong near 0 and 1 (0 of 50 is "0.00 ± 0.00", as
    if certain; 3 of 50 reaches below 0), the Wilson interval stays in [0, 1] and is not
    degenerate there.

    Args:
        successes: Trials that succeeded.
        n: Trials.

    Returns:
        The interval's low and high ends (nan, nan for no trials).

    Examples:
        >>> from metarl.curves import wilson95
        >>> low, high = wilson95(0, 50)
        >>> low, round(high, 3)
        (0.0, 0.071)
    """
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, no rounding
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


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
    env_steps: list[float] | None = None
    """RL: the env steps spent adapting to a task before each step count was measured (MAML:
    the inner updates' rollouts; RL²: the trial's earlier episodes), the one axis on which
    learners of both families compare; None where that is not counted (supervised)."""

    @classmethod
    def from_values(cls, metric: str, steps: list[int], values: np.ndarray) -> Curve:
        """The curve of raw per-task values.

        Args:
            metric: The metric's name ("mse", "accuracy", "return", "success").
            steps: The numbers of adaptation steps, one per row of `values`.
            values: `[len(steps), n_tasks]`.

        Returns:
            Means and 95% CIs per step, the values kept as `per_task`.

        Examples:
            >>> import numpy as np
            >>> from metarl.curves import Curve
            >>> curve = Curve.from_values("mse", [0, 1], np.array([[2.0, 4.0], [1.0, 1.0]]))
            >>> curve.mean, curve.n_tasks, curve.gains()[1][0]
            ([3.0, 1.0], 2, -2.0)
        """
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

    def paired_difference(self, other: Curve) -> list[tuple[float, float]]:
        """Per step: mean and 95% CI of (this curve - `other`), task by task: the two curves
        must come from the same held-out tasks (as `metarl eval`'s comparisons do).

        Args:
            other: a curve over the same steps and held-out tasks.

        Returns:
            `(mean, 95% CI half-width)` of the per-task difference, one pair per step.
        """
        if self.steps != other.steps or self.n_tasks != other.n_tasks:
            raise ValueError(
                f"paired curves need the same steps and tasks: {self.steps} x {self.n_tasks} "
                f"against {other.steps} x {other.n_tasks}"
            )
        return [mean_ci95(a - b) for a, b in zip(self.per_task, other.per_task, strict=True)]

    @property
    def binary(self) -> bool:
        """A success rate whose per-task values are all 0 or 1 (Meta-World's success of a
        goal): its intervals are Wilson's, not the normal approximation's."""
        values = np.asarray(self.per_task, dtype=float)
        return self.metric == "success" and values.size > 0 and bool(np.isin(values, (0, 1)).all())

    def bounds(self) -> tuple[list[float], list[float]]:
        """Per step: the 95% interval's lower and upper ends (Wilson's for a binary success
        rate, else mean ∓ ci95), what tables and figures draw."""
        if self.binary:
            ends = [wilson95(int(row.sum()), len(row)) for row in np.asarray(self.per_task)]
            return [lo for lo, _ in ends], [hi for _, hi in ends]
        return (
            [m - c for m, c in zip(self.mean, self.ci95, strict=True)],
            [m + c for m, c in zip(self.mean, self.ci95, strict=True)],
        )

    @property
    def lower_is_better(self) -> bool:
        """A loss (mse, cross-entropy), not an accuracy, success rate or return."""
        return self.metric in ("mse", "cross_entropy") or self.metric.endswith("loss")

    def diverged(self) -> list[int]:
        """Per step count: how many tasks diverged there (a non-finite value; for a loss
        also more than `DIVERGED_FACTOR` times the task's loss at the first step count)."""
        values = np.asarray(self.per_task, dtype=float)
        bad = ~np.isfinite(values)
        if self.lower_is_better and len(values):
            base = values[0]
            with np.errstate(invalid="ignore"):
                bad |= np.isfinite(base) & (values > DIVERGED_FACTOR * np.abs(base))
        return [int(n) for n in bad.sum(axis=1)]

    def to_json(self) -> dict[str, Any]:
        gains = self.gains()
        diverged = self.diverged()
        lows, highs = self.bounds()
        return {
            "metric": self.metric,
            "n_tasks": self.n_tasks,
            "steps": self.steps,
            "mean": self.mean,
            "ci95": self.ci95,
            # the interval's ends: Wilson's for a 0/1 success rate (then "interval" says so
            # and ci95 is only the normal approximation's half-width), else mean ∓ ci95
            "interval": "wilson" if self.binary else "normal",
            "ci95_low": lows,
            "ci95_high": highs,
            "gain": [g for g, _ in gains],
            "gain_ci95": [c for _, c in gains],
            "diverged": diverged,
            **({"env_steps": self.env_steps} if self.env_steps is not None else {}),
            # the raw values, [step][task], tasks in the evaluation's order: what a reader
            # needs to pair two runs' JSON or to break a mixture (ML10's skills) down
            "per_task": [[float(v) for v in row] for row in np.asarray(self.per_task)],
            "curve": [
                {"step": s, "mean": m, "ci95": c, "gain": g, "gain_ci95": gc, "diverged": d}
                for s, m, c, (g, gc), d in zip(
                    self.steps, self.mean, self.ci95, gains, diverged, strict=True
                )
            ],
        }
