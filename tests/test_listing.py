"""`metarl tasks list`, `envs list`, `tasks show` and `runs` at 80 and 120 columns: no value
cut (names on their row's first line, free text wrapped at words); `runs` says where each run
stands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.config import with_overrides
from metarl.registry import catalog_recipes, resolve_recipe
from metarl.run_status import RunStatus
from metarl.train import MetaTrainer

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """The CLI as a pipe sees it (`... | cat`): not a terminal, width from $COLUMNS."""
    env = {"COLUMNS": str(columns), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "metarl", *args], capture_output=True, text=True, env=env
    )


def rows_of(lines: list[str], names: list[str]) -> dict[str, str]:
    """Each name's row, its wrapped continuation lines joined (a row starts with a name at
    column 0; its continuation lines start with spaces)."""
    rows: dict[str, list[str]] = {}
    current = None
    for line in lines:
        first = line.split(" ", 1)[0]
        if first in names:
            current = first
            rows[current] = [line]
        elif current is not None and line.startswith(" ") and line.strip():
            rows[current].append(line)
        else:
            current = None
    return {name: " ".join(" ".join(part.split()) for part in rows[name]) for name in rows}


@pytest.mark.parametrize("columns", [80, 120])
def test_tasks_list_fits_the_width_and_cuts_no_description(columns):
    result = cli("tasks", "list", columns=columns)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    recipes = lines[: lines.index("")]  # the distributions' table follows a blank line
    names = catalog_recipes()
    rows = rows_of(recipes, names)
    assert set(rows) == set(names)
    for name in names:
        recipe = resolve_recipe(name)
        # at 80 columns the task column (mostly the name again) makes room for the description
        fields = [recipe.train.algorithm.value, str(recipe.train.meta_iterations)]
        if columns >= 120:
            fields.insert(0, recipe.task_name)
        words = rows[name].split()
        assert words[1 : 1 + len(fields)] == fields
        assert " ".join(words[1 + len(fields) :]) == " ".join(recipe.description.split())
    assert "…" not in result.stdout
    assert "[task] name = NAME" in result.stdout  # a TOML table name is not eaten as markup
    assert ("entry point" in result.stdout) == (columns >= 120)


@pytest.mark.parametrize("columns", [80, 120])
def test_envs_list_fits_the_width(columns):
    result = cli("envs", "list", columns=columns)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    (row,) = [line for line in lines if line.startswith("metarl/Navigation2D-v0 ")]
    nav = ["metarl/Navigation2D-v0", "Navigation2D", "100", "goal", "U[-0.5,", "0.5]^2"]
    assert row.split() == nav + ["navigation2d.toml"] * (columns >= 120)
    pendulum = rows_of(lines, ["metarl/PendulumPhysics-v0"])["metarl/PendulumPhysics-v0"]
    # all three parameters, wrapped at words where they must be (a wrapped cell's words can sit
    # beside the next column's on the row's first line)
    assert "m x U[0.5, 2]" in pendulum and "l x U[0.5, 2]" in pendulum
    assert "g x U[0.5," in pendulum and "1.5]" in pendulum
    assert ("pendulum-physics.toml" in pendulum) == (columns >= 120)  # the source column
    assert "…" not in result.stdout


@pytest.mark.parametrize("columns", [80, 120])
def test_tasks_show_fits_the_width_and_cuts_no_key(columns):
    result = cli("tasks", "show", "halfcheetah-dir-promp", columns=columns)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    for key in ("train.checkpoint_seconds", "learner.trpo_fisher_fraction"):
        assert any(line.startswith(f"│ {key} ") for line in lines), key
    assert "…" not in result.stdout


def _partial_run(path: Path) -> None:
    """A run stopped after 2 of 5 iterations, as after Ctrl-C."""
    recipe = with_overrides(resolve_recipe("sine"), "train", meta_iterations=5, meta_batch=2)
    trainer = MetaTrainer.start(recipe, path, __import__("torch").device("cpu"))
    for _ in range(2):
        trainer.run.append_metrics({**trainer.step(), "iteration": trainer.iteration})
    trainer.save()


def test_runs_lists_each_run_and_whether_it_resumes(tmp_path):
    _partial_run(tmp_path / "a")
    _partial_run(tmp_path / "nested" / "edited")
    config = tmp_path / "nested" / "edited" / "config.toml"
    config.write_text(config.read_text().replace("meta_batch = 2", "meta_batch = 3"))
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "config.toml").write_text((tmp_path / "a" / "config.toml").read_text())
    (tmp_path / "not-a-run").mkdir()

    result = cli("runs", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == {"a", "nested/edited", "fresh"}
    a = rows["a"]
    assert (a["task"], a["algorithm"], a["iteration"], a["planned"]) == ("sine", "reptile", 2, 5)
    assert a["resumable"] and a["state"] == "yes"
    assert a["last"]["loss_last_step"] < a["last"]["loss_before"]
    assert rows["nested/edited"]["state"] == "no: config.toml edited"
    assert not rows["nested/edited"]["resumable"]
    assert rows["fresh"]["state"] == "no: no checkpoint" and rows["fresh"]["iteration"] == 0

    table = cli("runs", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"3 runs in {tmp_path}")
    (line,) = [x for x in table.stdout.splitlines() if x.startswith("a ")]
    assert line.split()[:5] == ["a", "sine", "reptile", "2/5", "yes"]
    assert "loss" in line and "->" in line


def test_one_run_is_one_run_and_its_metrics_are_not_cut(tmp_path):
    _partial_run(tmp_path / "a")
    table = cli("runs", str(tmp_path), columns=80)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"1 run in {tmp_path}")
    (row,) = json.loads(cli("runs", str(tmp_path), "--json").stdout)
    before, after = row["last"]["loss_before"], row["last"]["loss_last_step"]
    assert f"loss {before:.4g} -> {after:.4g}" in table.stdout


def test_runs_follows_links_to_runs_kept_elsewhere_each_once(tmp_path):
    """A folder of symbolic links to runs (to compare them) lists each run once; a link back
    up the tree is not a loop."""
    _partial_run(tmp_path / "store" / "a")
    compare = tmp_path / "compare"
    compare.mkdir()
    (compare / "a-link").symlink_to(tmp_path / "store" / "a")
    (compare / "loop").symlink_to(compare)
    result = cli("runs", str(compare), "--json")
    assert result.returncode == 0, result.stderr
    assert [r["name"] for r in json.loads(result.stdout)] == ["a-link"]


def test_runs_of_a_missing_folder_is_one_line_exit_2(tmp_path):
    result = cli("runs", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_runs_with_names_too_long_for_80_columns_keep_every_column(tmp_path):
    """Run names that fill the width: the lines run past 80 columns rather than lose the
    resume and metrics columns (rich dropped them whole)."""
    long = "ablation-on-navigation2d/20261203-133534/seed-0/fomaml-with-a-long-name"
    _partial_run(tmp_path / long)
    table = cli("runs", str(tmp_path), columns=80)
    assert table.returncode == 0, table.stderr
    header = next(x for x in table.stdout.splitlines() if x.startswith("run "))
    assert header.split() == ["run", "task", "algorithm", "done", "resume", "last", "metrics"]
    (line,) = [x for x in table.stdout.splitlines() if x.startswith(long)]
    assert line.split()[1:5] == ["sine", "reptile", "2/5", "yes"]
    assert "->" in line and "…" not in line


def test_runs_shows_a_joint_baselines_return_alone():
    """A joint baseline (`inner_steps = 0`) logs one return, as "before", beside its TRPO
    surrogate: `runs` shows that return, not "return X -> X" nor the surrogate."""
    row = RunStatus("j", "halfcheetah-vel", "maml", 3, 10)
    row.last = {"query_loss": -1e-10, "return_before": -191.9}
    assert row.last_text() == "return -191.9"
    row.last["return_after"] = -150.0
    assert row.last_text() == "return -191.9 -> -150"


def test_eval_prints_a_loss_decrease_as_a_positive_improvement():
    """MSE falls with adaptation: the table says by how much, as a positive number (the JSON
    keeps the signed difference); accuracy rises: its gain is positive too."""
    import numpy as np
    from rich.console import Console

    from metarl.cli import curve_table
    from metarl.curves import Curve

    for metric, values, header in (
        ("mse", [[4.0, 5.0, 3.0], [1.0, 2.0, 0.0]], "decrease vs 0 steps"),
        ("accuracy", [[0.2, 0.4, 0.3], [0.6, 0.8, 0.7]], "gain vs 0 steps"),
    ):
        curve = Curve.from_values(metric, [0, 1], np.array(values))
        console = Console(width=80, record=True)
        console.print(curve_table(curve, "t"))
        text = console.export_text()
        assert header in text
        (row,) = [line for line in text.splitlines() if line.startswith("│     1 ")]
        assert "+3.0000" in row or "+0.4000" in row, row
        signed = curve.gains()[1][0]  # after minus before, as --json reports it
        assert signed == pytest.approx(-3.0 if metric == "mse" else 0.4)
