"""The arithmetic behind every "mean ± 95% CI" and paired gain the README reports, checked
against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metarl.curves import Z95, Curve, mean_ci95


def test_mean_ci95_by_hand():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    mean, ci = mean_ci95(values)
    # sample std (ddof 1) of 1..4 is sqrt(5/3); the half-width is 1.96 * std / sqrt(n)
    assert mean == 2.5
    assert ci == pytest.approx(1.959963984540054 * math.sqrt(5 / 3) / 2)
    assert abs(Z95 - 1.959964) < 1e-6  # the normal 97.5% quantile
    assert math.isnan(mean_ci95(np.array([3.0]))[1])  # one task: no interval


def test_paired_gain_cancels_the_task_to_task_spread():
    # three tasks of very different difficulty, each improving by exactly 1 or 2
    before = np.array([10.0, 50.0, 90.0])
    after = before - np.array([1.0, 2.0, 1.0])
    curve = Curve.from_values("mse", [0, 5], np.stack([before, after]))
    assert curve.mean == [50.0, pytest.approx(48.666666666666664)]
    (g0, c0), (g1, c1) = curve.gains()
    assert (g0, c0) == (0.0, 0.0)
    assert g1 == pytest.approx(-4 / 3)
    # paired: the CI of the per-task differences (-1, -2, -1), not of the two means
    assert c1 == pytest.approx(Z95 * np.std([-1.0, -2.0, -1.0], ddof=1) / math.sqrt(3))
    assert c1 < 1.0 < curve.ci95[1]  # unpaired intervals (about 45 wide) would overlap
    payload = curve.to_json()
    assert payload["gain"] == [0.0, g1] and payload["gain_ci95"] == [0.0, c1]
    assert [row["step"] for row in payload["curve"]] == [0, 5]
    assert payload["per_task"] == [[10.0, 50.0, 90.0], [9.0, 48.0, 89.0]]
