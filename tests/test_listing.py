"""`metarl tasks list`, `envs list` and `runs`: one line per row at 80 and 120 columns, names
never cut, descriptions cut at a word; `runs` says where each run stands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.config import with_overrides
from metarl.listing import shorten
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


@pytest.mark.parametrize("columns", [80, 120])
def test_tasks_list_fits_the_width_one_line_per_recipe(columns):
    result = cli("tasks", "list", columns=columns)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    recipes = lines[: lines.index("")]  # the distributions' table follows a blank line
    for name in catalog_recipes():
        (row,) = [line for line in recipes if line.startswith(name + " ")]
        recipe = resolve_recipe(name)
        # at 80 columns the task column (mostly the name again) makes room for the description
        fields = [recipe.train.algorithm.value, str(recipe.train.meta_iterations)]
        if columns >= 120:
            fields.insert(0, recipe.task_name)
        assert row.split()[1 : 1 + len(fields)] == fields
        # the description starts on the same line, cut after a whole word, readable at 80
        words = row.split()[1 + len(fields) :]
        assert len(words) >= (2 if columns < 120 else 4)
        assert recipe.description.startswith(" ".join(words).rstrip("…"))
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
    (pendulum,) = [line for line in lines if line.startswith("metarl/PendulumPhysics-v0 ")]
    if columns >= 120:  # all three parameters, then the family file
        assert "g x U[0.5, 1.5]  pendulum-physics.toml" in pendulum
    else:
        assert pendulum.rstrip().endswith("…")


def test_shorten_cuts_at_a_word():
    assert shorten("Sine regression, y = A sin(x + b)", 20) == "Sine regression, y…"
    assert shorten("short", 20) == "short"
    assert len(shorten("x" * 50, 12)) == 12


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
    (line,) = [x for x in table.stdout.splitlines() if x.startswith("a ")]
    assert line.split()[:5] == ["a", "sine", "reptile", "2/5", "yes"]
    assert "loss" in line and "->" in line


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
