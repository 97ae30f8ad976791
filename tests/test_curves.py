"""The arithmetic behind every "mean ± 95% CI" and paired gain the README reports, checked
against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metarl.curves import Z95, Curve, mean_ci95, wilson95


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


def test_wilson_interval_of_a_success_rate_near_0_is_neither_degenerate_nor_below_0():
    # reference values: the Wilson score interval, z = 1.96
    assert wilson95(3, 50) == pytest.approx((0.02064, 0.16217), abs=1e-4)
    low, high = wilson95(0, 50)
    assert low == 0.0 and high == pytest.approx(0.07135, abs=1e-4)
    assert wilson95(50, 50)[1] == 1.0 and wilson95(50, 50)[0] == pytest.approx(0.92865, abs=1e-4)


def test_a_binary_success_curve_reports_wilson_bounds_and_others_the_normal_ones():
    goals = np.zeros((2, 50))
    goals[1, :3] = 1.0  # 0 of 50 goals solved before, 3 after
    success = Curve.from_values("success", [0, 1], goals)
    assert success.binary
    payload = success.to_json()
    assert payload["interval"] == "wilson"
    assert payload["ci95_low"][0] == 0.0 and payload["ci95_high"][0] > 0.07  # not "± 0.00"
    assert payload["ci95_low"][1] > 0.0  # 3 of 50 is above 0; mean - ci95 is not
    assert success.mean[1] - success.ci95[1] < 0.0
    # a fraction of episodes per goal (1/3) is not a 0/1 outcome: normal bounds
    thirds = Curve.from_values("success", [0], np.array([[1 / 3, 0.0, 1.0]]))
    assert not thirds.binary and thirds.to_json()["interval"] == "normal"
    returns = Curve.from_values("return", [0], np.array([[0.0, 1.0, 1.0]]))
    assert not returns.binary
    low, high = returns.bounds()
    assert low[0] == pytest.approx(returns.mean[0] - returns.ci95[0])
    assert high[0] == pytest.approx(returns.mean[0] + returns.ci95[0])
