"""Figures are written whole, as PNGs a viewer opens."""

from __future__ import annotations

import numpy as np

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


def test_runs_plot_draws_supervised_and_rl_runs_on_panels_of_their_own(tmp_path):
    """`metarl runs --plot` over a folder of sine and Navigation2D runs: each task gets a
    panel with its own axes (the sine losses were dropped without a word, and RL's returns
    and a loss cannot share one y axis); a run it cannot draw is named in one line."""
    from matplotlib.image import imread
    from typer.testing import CliRunner

    from metarl.cli import app

    runner = CliRunner()
    folder = tmp_path / "runs"
    for args in (
        ["sine", "--meta-iterations", "20", "--meta-batch", "4"],
        ["navigation2d", "--meta-iterations", "2", "--meta-batch", "2", "--inner-steps", "1"],
    ):
        out = folder / args[0]
        trained = runner.invoke(app, ["train", *args, "--out", str(out), "--threads", "1", "-q"])
        assert trained.exit_code == 0, trained.output
    (folder / "fresh").mkdir()  # a run that has logged nothing yet
    (folder / "fresh" / "config.toml").write_bytes((folder / "sine" / "config.toml").read_bytes())

    both, one = tmp_path / "both.png", tmp_path / "one.png"
    result = runner.invoke(app, ["runs", str(folder), "--plot", str(both)])
    assert result.exit_code == 0, result.output
    notes = [ln for ln in result.stderr.splitlines() if ln.startswith("note")]
    assert notes == ["note: not in the plot: fresh (no metrics yet)"]
    assert runner.invoke(app, ["runs", str(folder / "sine"), "--plot", str(one)]).exit_code == 0

    image, single = imread(both), imread(one)
    assert image.shape[1] > 1.8 * single.shape[1]  # two panels side by side
    blue = np.array([0.122, 0.467, 0.706])  # tab:blue, each panel's first run
    is_blue = np.abs(image[..., :3] - blue).max(axis=-1) < 0.05
    half = image.shape[1] // 2
    assert is_blue[:, :half].sum() > 100 and is_blue[:, half:].sum() > 100
