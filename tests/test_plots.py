"""Figures are written whole, as PNGs a viewer opens."""

from __future__ import annotations

from metarl.plots import plot_against_time


def test_plot_against_time_writes_a_png(tmp_path):
    path = tmp_path / "time.png"
    series = {
        "reference": [(180.0, 0.75, 0.02), (360.0, 0.79, 0.02)],
        "metarl": [(170.0, 0.79, 0.02), (350.0, 0.82, 0.02)],
    }
    assert plot_against_time(series, path, "accuracy", "two loops") == path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list(tmp_path.glob("*.tmp*"))  # nothing half-written beside it


def test_curves_with_far_apart_steps_on_a_symlog_axis(tmp_path):
    """Algorithms evaluated at their own step counts (3 and 50) share one readable axis."""
    import numpy as np

    from metarl.curves import Curve
    from metarl.plots import plot_curves

    rng = np.random.default_rng(0)
    reptile = Curve.from_values("accuracy", [0, 1, 50], rng.uniform(0.2, 0.9, (3, 40)))
    maml = Curve.from_values("accuracy", [0, 1, 3], rng.uniform(0.2, 0.9, (3, 40)))
    path = tmp_path / "steps.png"
    assert plot_curves([("Reptile", reptile), ("MAML", maml)], path, symlog_steps=True) == path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
