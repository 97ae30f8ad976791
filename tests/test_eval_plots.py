"""`metarl eval --plot`: the run against the random init (and the joint baseline) on the same
tasks, and several runs of one task compared on one figure."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from metarl.cli import app
from metarl.config import with_overrides
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    for name, lr in (("a", 0.03), ("b", 0.01)):
        recipe = with_overrides(
            resolve_recipe("sine"), "train", meta_iterations=15, meta_batch=4, inner_lr=lr
        )
        MetaTrainer.start(recipe, root / name, torch.device("cpu")).fit()
    return root / "a", root / "b"


def evaluate(*args: str):
    result = runner.invoke(app, ["eval", *args, "--tasks", "20", "--steps", "0,1,5", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_plot_draws_the_random_init_on_the_same_tasks(two_runs, tmp_path):
    a, _ = two_runs
    payload = evaluate(str(a), "--plot", str(tmp_path / "a.png"))
    (random,) = payload["baselines"]
    assert random["init"] == "random" and random["steps"] == payload["steps"]
    assert random["n_tasks"] == payload["n_tasks"] == 20
    # meta-training bought something: lower error after 5 steps than the random init
    assert payload["mean"][-1] < random["mean"][-1]
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG
    assert "baselines" not in evaluate(str(a), "--plot", str(tmp_path / "n.png"), "--no-baseline")
    assert "baselines" not in evaluate(str(a))  # no plot, no extra evaluation


def test_joint_run_is_evaluated_beside_the_run(two_runs, tmp_path):
    a, b = two_runs
    payload = evaluate(str(a), "--joint-run", str(b), "--plot", str(tmp_path / "j.png"))
    assert [x["init"] for x in payload["baselines"]] == ["random", "joint"]
    assert payload["baselines"][1]["joint_run"] == str(b)
    # b's weights on a's tasks, adapted with a's protocol (a's inner lr, not b's): the same
    # error as b's own evaluation before adaptation, a different one after
    plain = evaluate(str(b))
    joint = payload["baselines"][1]["mean"]
    assert joint[0] == pytest.approx(plain["mean"][0], rel=1e-5)
    assert joint[2] != pytest.approx(plain["mean"][2], rel=1e-3)


def test_runs_of_one_task_compare_on_one_figure(two_runs, tmp_path):
    a, b = two_runs
    png = tmp_path / "ab.png"
    payload = evaluate(str(a), str(b), "--plot", str(png))
    assert payload["task"] == "sine"
    assert [r["run"] for r in payload["runs"]] == [str(a), str(b)]
    assert [r["init"] for r in payload["baselines"]] == ["random"]
    assert png.read_bytes()[:8] == PNG
    assert not (tmp_path / "ab-fits.png").exists()  # fitted sines only for a single run


def test_runs_of_different_tasks_are_refused_with_one_line(two_runs, tmp_path):
    a, _ = two_runs
    other = tmp_path / "nav"
    other.mkdir()
    shown = runner.invoke(app, ["tasks", "show", "navigation2d", "--toml"])
    (other / "config.toml").write_text(shown.stdout)
    result = runner.invoke(app, ["eval", str(a), str(other), "--plot", str(tmp_path / "x.png")])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert str(other) in result.stderr and "'navigation2d'" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_paired_differences_against_each_baseline_are_reported(two_runs, tmp_path):
    """`metarl eval RUN --joint-run J --plot P` is the whole comparison (what
    scripts/benchmarks/rl_inits.py used to print): the run minus each baseline, task by task,
    in the JSON and as a table."""
    import numpy as np

    from metarl.curves import mean_ci95
    from metarl.evaluate import compare_runs

    a, b = two_runs
    png = str(tmp_path / "p.png")
    payload = evaluate(str(a), "--joint-run", str(b), "--plot", png)
    paired = payload["paired"]
    assert list(paired) == [f"{a} - random init", f"{a} - joint training"]
    comparison = compare_runs(
        [a], torch.device("cpu"), tasks=20, steps=[0, 1, 5], joint_run=b, random_baseline=True
    )
    run, (random, joint) = comparison.runs[0].curve, comparison.baselines
    for label, other in zip(paired, (random, joint), strict=True):
        expected = [mean_ci95(d) for d in run.per_task - other.curve.per_task]
        assert np.allclose(paired[label]["mean"], [m for m, _ in expected])
        assert np.allclose(paired[label]["ci95"], [c for _, c in expected])
    # meta-training beats the random init after 5 steps, with the CI clear of zero
    m5, c5 = paired[f"{a} - random init"]["mean"][2], paired[f"{a} - random init"]["ci95"][2]
    assert m5 + c5 < 0
    text = runner.invoke(
        app, ["eval", str(a), "--joint-run", str(b), "--plot", png, "--tasks", "20"]
    )
    assert text.exit_code == 0 and "paired difference in mse" in text.stdout


def test_figures_name_the_outer_step_that_makes_the_algorithm():
    """MAML-RL (maml + trpo) and ProMP (maml + promp) share `algorithm = "maml"`: a figure
    comparing them must say which is which; an optimizer on the meta-gradient is not named."""
    from metarl.evaluate import algorithm_label

    assert algorithm_label(resolve_recipe("halfcheetah-dir-maml")) == "maml + trpo"
    assert algorithm_label(resolve_recipe("halfcheetah-dir-promp")) == "maml + promp"
    assert algorithm_label(resolve_recipe("halfcheetah-dir-fomaml")) == "fomaml"
    assert algorithm_label(resolve_recipe("sine")) == resolve_recipe("sine").train.algorithm.value
