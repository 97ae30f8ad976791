"""A plugin package that declares a `metarl.tasks` entry point is picked up with no import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN = Path(__file__).parent / "plugin_pkg"


def metarl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "metarl", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_an_installed_plugin_task_trains_and_evaluates(tmp_path):
    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*install, "--target", str(site), str(PLUGIN)], check=True, timeout=600)
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}

    listed = metarl("tasks", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "cosine" in listed.stdout and "metarl-cosine 0.1.0" in listed.stdout

    envs = metarl("envs", "list", env=env)
    assert envs.returncode == 0, envs.stderr
    assert "metarl/LongPole-v0" in envs.stdout and "longpole" in envs.stdout

    recipe = tmp_path / "cosine.toml"
    recipe.write_text(
        '[task]\nname = "cosine"\n[model]\nhidden = [16, 16]\n'
        "[train]\nmeta_iterations = 20\nmeta_batch = 8\ninner_lr = 0.05\n"
        "[eval]\ntasks = 50\nsteps = [0, 10]\n"
    )
    trained = metarl("train", str(recipe), "--out", str(tmp_path / "run"), "-q", env=env)
    assert trained.returncode == 0, trained.stderr
    evaluated = metarl("eval", str(tmp_path / "run"), "--json", env=env)
    assert evaluated.returncode == 0, evaluated.stderr
    curve = json.loads(evaluated.stdout)
    assert curve["task"] == "cosine" and curve["n_tasks"] == 50
    assert curve["mean"][1] < curve["mean"][0]  # 10 adaptation steps lower the query MSE
