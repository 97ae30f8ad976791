"""Divergence: a run whose numbers go non-finite stops with exit code 3 and keeps its last
finite checkpoint; evaluation output stays valid JSON."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from metarl.cli import DIVERGED, app
from metarl.run import RunDir
from metarl.train import MetaTrainer, TrainingDiverged
from tests.test_run import CPU, AtIteration, tiny_recipe

runner = CliRunner()


class PoisonAt(AtIteration):
    """Sets one weight to nan after an iteration, as an exploding outer step would."""

    def act(self, trainer):
        with torch.no_grad():
            next(trainer.model.parameters())[0] = float("nan")


def test_a_huge_inner_lr_stops_the_run_with_exit_3(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "sine", "--inner-lr", "1e6", "--meta-iterations", "20", "--out", str(out)]
    )
    assert result.exit_code == DIVERGED == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: training diverged at iteration 1 (not finite:")
    assert "no checkpoint had been written yet" in lines[-1]
    assert not (out / "checkpoint.pt").exists()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 1 and rows[-1]["loss_last_step"] is None


def test_divergence_keeps_the_last_finite_checkpoint(tmp_path):
    recipe = tiny_recipe(checkpoint_every=5, meta_iterations=12)
    trainer = MetaTrainer.start(recipe, tmp_path / "run", CPU, callbacks=[PoisonAt(6)])
    with pytest.raises(TrainingDiverged) as info:
        trainer.fit()
    assert info.value.iteration == 7 and info.value.checkpoint == 5
    assert "last finite checkpoint (iteration 5) is kept" in str(info.value)
    ckpt = RunDir(tmp_path / "run").load_checkpoint()
    assert ckpt.iteration == 5
    assert all(torch.isfinite(v).all() for v in ckpt.model.values())
    # the kept checkpoint resumes (without the poison the run finishes)
    resumed = MetaTrainer.resume(tmp_path / "run", CPU)
    assert resumed.iteration == 5
    resumed.fit()
    assert resumed.iteration == 12


def test_a_non_finite_model_is_never_saved(tmp_path):
    trainer = MetaTrainer.start(tiny_recipe(), tmp_path / "run", CPU)
    trainer.save()
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("inf")
    with pytest.raises(TrainingDiverged):
        trainer.save()
    assert RunDir(tmp_path / "run").load_checkpoint().iteration == 0


def test_eval_of_a_diverging_adaptation_is_valid_json_and_exit_3(tmp_path):
    out = tmp_path / "run"
    trained = runner.invoke(
        app, ["train", "sine", "--meta-iterations", "2", "-q", "--out", str(out)]
    )
    assert trained.exit_code == 0, trained.output
    config = out / "config.toml"
    config.write_text(config.read_text().replace("[eval]\n", "[eval]\ninner_lr = 1e6\n"))
    result = runner.invoke(app, ["eval", str(out), "--tasks", "10", "--steps", "0,32", "--json"])
    assert result.exit_code == DIVERGED, result.output
    payload = json.loads(result.stdout)  # strict JSON: no NaN
    assert payload["finite"] is False
    assert payload["mean"][0] > 0 and payload["mean"][1] is None
    assert result.stderr.strip() == (
        "error: mse is not finite after 32 steps (adaptation diverged: lower eval.inner_lr)"
    )
    table = runner.invoke(app, ["eval", str(out), "--tasks", "10", "--steps", "0,32"])
    assert table.exit_code == DIVERGED
    assert "not finite" in table.stdout
