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

from metarl.run import RunDir
from metarl.tomlio import dumps_toml
from metarl.train import MetaTrainer
from tests.test_run import CPU, tiny_recipe

REPO = Path(__file__).resolve().parent.parent


def test_sigkill_then_resume_gives_the_same_weights(tmp_path):
    recipe = tiny_recipe(meta_iterations=120, checkpoint_every=5, log_every=5)
    recipe_file = tmp_path / "recipe.toml"
    recipe_file.write_text(dumps_toml(recipe.to_dict()))
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "metarl", "train", str(recipe_file), "--out", str(out), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
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
