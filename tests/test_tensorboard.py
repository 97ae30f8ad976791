"""TensorBoard event files: the rows of metrics.jsonl, read back with TensorBoard's own reader;
a resume after a crash shows every iteration once; eval writes its curve; switches turn it off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from metarl.cli import app
from metarl.config import with_overrides
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer
from tests.test_run import AtIteration

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

CPU = torch.device("cpu")


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag in `log_dir` as (step, value) pairs, as TensorBoard shows them."""
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


class CrashAt(AtIteration):
    """A callback that fails at one iteration, as a killed process would stop."""

    def act(self, trainer):
        raise RuntimeError("crash")


def small_recipe(**train):
    values = {"meta_iterations": 6, "meta_batch": 2, "log_every": 1, "checkpoint_every": 2}
    values.update(train)
    return with_overrides(resolve_recipe("sine"), "train", **values)


def test_training_scalars_match_metrics_and_resume_writes_each_step_once(tmp_path):
    out = tmp_path / "run"
    trainer = MetaTrainer.start(small_recipe(), out, CPU, [CrashAt(4)])
    with pytest.raises(RuntimeError):
        trainer.fit()  # rows and events for 1..3 written, checkpoint at 2
    assert [s for s, _ in scalars(out)["train/loss_before"]] == [1, 2, 3]
    MetaTrainer.resume(out, CPU).fit()

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = scalars(out)
    assert [s for s, _ in events["train/loss_before"]] == [1, 2, 3, 4, 5, 6]
    for key in ("loss_before", "loss_last_step", "meta_step"):
        got = [v for _, v in events[f"train/{key}"]]
        assert got == pytest.approx([r[key] for r in rows], rel=1e-6)
    assert [s for s, _ in events["time/tasks_per_s"]] == [r["iteration"] for r in rows]
    assert [v for _, v in events["memory/peak_rss_mib"]] == pytest.approx(
        [r["peak_rss_mib"] for r in rows]
    )


def test_eval_writes_its_curve_once_and_the_switches_turn_it_off(tmp_path):
    runner = CliRunner()
    on = tmp_path / "on"
    MetaTrainer.start(small_recipe(meta_iterations=2), on, CPU).fit()
    for _ in range(2):  # a second evaluation replaces the first
        result = runner.invoke(app, ["eval", str(on), "--tasks", "5", "--steps", "0,2"])
        assert result.exit_code == 0, result.output
    curve = scalars(on / "eval-meta")
    assert [s for s, _ in curve["eval/mse"]] == [0, 2]
    assert [s for s, _ in curve["eval/mse_ci95"]] == [0, 2]

    off = tmp_path / "off"
    MetaTrainer.start(small_recipe(meta_iterations=2, tensorboard=False), off, CPU).fit()
    cli_off = tmp_path / "cli-off"
    args = ["train", "sine", "--out", str(cli_off), "--meta-iterations", "2", "--meta-batch", "2"]
    result = runner.invoke(app, [*args, "--no-tensorboard", "-q"])
    assert result.exit_code == 0, result.output
    for run in (off, cli_off):
        assert (run / "checkpoint.pt").is_file()
        assert not list(run.rglob("events.out.tfevents*"))
    assert list(on.glob("events.out.tfevents*"))
