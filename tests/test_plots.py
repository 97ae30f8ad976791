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
