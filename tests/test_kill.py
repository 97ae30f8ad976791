"""A training process killed outright (SIGKILL: no handler runs) loses at most the work since
its last checkpoint, and the resumed run ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from metarl.config import Recipe
from metarl.run import RunDir
from metarl.tomlio import dumps_toml
from metarl.train import MetaTrainer
from tests.test_run import CPU, tiny_recipe

REPO = Path(__file__).resolve().parent.parent


def _train_in_a_process(recipe: Recipe, out: Path) -> subprocess.Popen[bytes]:
    """`metarl train RECIPE --out OUT -q` in a child process (stderr piped)."""
    recipe_file = out.parent / f"{out.name}.toml"
    recipe_file.write_text(dumps_toml(recipe.to_dict()))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "metarl", "train", str(recipe_file), "--out", str(out), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_then_resume_gives_the_same_weights(tmp_path):
    recipe = tiny_recipe(meta_iterations=120, checkpoint_every=5, log_every=5)
    out = tmp_path / "killed"
    proc = _train_in_a_process(recipe, out)
    run = RunDir(out)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if run.checkpoint_path.exists() and run.load_checkpoint().iteration >= 10:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("no checkpoint at iteration 10 within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = run.load_checkpoint().iteration
    assert 10 <= killed_at < 120, killed_at

    resumed = MetaTrainer.resume(out, CPU)
    assert resumed.iteration == killed_at
    resumed.fit()
    whole = MetaTrainer.start(recipe, tmp_path / "whole", CPU)
    whole.fit()
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    iters = [r["iteration"] for r in run.read_metrics()]
    assert iters == list(range(5, 121, 5))  # rows past the checkpoint dropped, then re-logged


def test_sigterm_finishes_the_iteration_writes_a_checkpoint_and_exits_143(tmp_path):
    """A batch scheduler's SIGTERM (or `kill`) stops training as Ctrl-C does: after the
    current iteration, with a checkpoint of it, one line saying so and exit 128 + 15; the run
    resumes from there. Checkpoints are otherwise rare here, so the one found is the handler's."""
    recipe = tiny_recipe(meta_iterations=100_000, checkpoint_every=100_000, log_every=1)
    out = tmp_path / "termed"
    proc = _train_in_a_process(recipe, out)
    run = RunDir(out)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_rows(run)) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, raw = proc.communicate(timeout=60)
    stderr = raw.decode()
    assert proc.returncode == 143, stderr
    lines = stderr.strip().splitlines()  # the run directory's line, then the stop's
    assert len(lines) == 2 and "checkpoint written" in lines[1], stderr
    assert "Traceback" not in stderr
    stopped_at = run.load_checkpoint().iteration
    assert stopped_at >= 5 and stopped_at == len(_rows(run))
    assert f"after iteration {stopped_at}" in lines[1]
    assert MetaTrainer.resume(out, CPU).iteration == stopped_at


def _rows(run: RunDir) -> list[dict[str, float]]:
    try:
        return run.read_metrics()
    except (OSError, ValueError):
        return []
