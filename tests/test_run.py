"""Runs: atomic checkpoints, exact resume, metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metarl.config import with_overrides
from metarl.errors import UserError
from metarl.registry import resolve_recipe
from metarl.run import RunDir
from metarl.train import MetaTrainer, TrainingInterrupted

CPU = torch.device("cpu")


def tiny_recipe(**train):
    base = dict(meta_iterations=12, meta_batch=4, inner_steps=3, checkpoint_every=5, log_every=2)
    base.update(train)
    return with_overrides(resolve_recipe("sine"), "train", **base)


class AtIteration:
    """A training callback that acts once, after iteration `iteration` (`act` says how)."""

    def __init__(self, iteration: int) -> None:
        self.iteration = iteration

    def on_start(self, trainer):
        pass

    def on_iteration(self, trainer, metrics):
        if metrics["iteration"] == self.iteration:
            self.act(trainer)

    def on_end(self, trainer):
        pass

    def act(self, trainer):
        raise NotImplementedError


class StopAt(AtIteration):
    """Asks the trainer to stop at an iteration: the same path as Ctrl-C."""

    def act(self, trainer):
        trainer.request_stop()


def whole_and_resumed(recipe, tmp_path, stop_at, device=torch.device("cpu")):
    """The recipe trained in one go and, beside it, stopped at `stop_at` (the Ctrl-C path)
    and resumed to the end; asserts the two end on the same weights, bit for bit."""
    whole = MetaTrainer.start(recipe, tmp_path / "whole", device)
    whole.fit()
    with pytest.raises(TrainingInterrupted):
        MetaTrainer.start(recipe, tmp_path / "cut", device, callbacks=[StopAt(stop_at)]).fit()
    resumed = MetaTrainer.resume(tmp_path / "cut", device)
    resumed.fit()
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    return whole, resumed


@pytest.mark.parametrize(
    "algorithm,outer",
    [
        ("reptile", "adam"),
        ("fomaml", "sgd"),
        ("maml", "adam"),
        ("imaml", "sgd"),
        ("metasgd", "adam"),
    ],
)
def test_interrupt_and_resume_give_the_same_weights(tmp_path, algorithm, outer):
    recipe = tiny_recipe(algorithm=algorithm, outer_optimizer=outer, meta_step=0.1)
    whole = MetaTrainer.start(recipe, tmp_path / "whole", CPU)
    whole.fit()

    with pytest.raises(TrainingInterrupted) as info:
        MetaTrainer.start(recipe, tmp_path / "cut", CPU, callbacks=[StopAt(7)]).fit()
    assert info.value.iteration == 7
    resumed = MetaTrainer.resume(tmp_path / "cut", CPU)
    assert resumed.iteration == 7
    resumed.fit()

    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    # metrics.jsonl of the resumed run has the same iterations, once each
    iters = [r["iteration"] for r in RunDir(tmp_path / "cut").read_metrics()]
    assert iters == [r["iteration"] for r in RunDir(tmp_path / "whole").read_metrics()]
    assert iters == [2, 4, 6, 8, 10, 12]


def test_training_seconds_run_on_across_a_resume(tmp_path):
    """`elapsed_s` counts one session; `train_s` (metrics and checkpoint) every session, so a
    run resumed across working sessions states its whole training time."""
    recipe = tiny_recipe()
    with pytest.raises(TrainingInterrupted):
        MetaTrainer.start(recipe, tmp_path / "cut", CPU, callbacks=[StopAt(7)]).fit()
    run = RunDir(tmp_path / "cut")
    before = run.load_checkpoint().train_s
    assert before > 0 and before >= run.read_metrics()[-1]["train_s"]
    resumed = MetaTrainer.resume(tmp_path / "cut", CPU)
    assert resumed.train_s == before
    resumed.fit()
    rows = run.read_metrics()
    assert all(a["train_s"] < b["train_s"] for a, b in zip(rows, rows[1:], strict=False))
    for row in rows:
        if row["iteration"] > 7:
            assert row["train_s"] == pytest.approx(before + row["elapsed_s"])
    assert run.load_checkpoint().train_s == pytest.approx(rows[-1]["train_s"])
    # the process's peak memory, logged beside the times (torch alone takes ~100 MiB)
    assert all(100 < row["peak_rss_mib"] < 24 * 1024 for row in rows)


def test_checkpoint_holds_everything_and_loads_weights_only(tmp_path):
    trainer = MetaTrainer.start(tiny_recipe(meta_iterations=3), tmp_path / "r", CPU)
    trainer.fit()
    payload = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    assert payload["iteration"] == 3
    assert set(payload) >= {"model", "optimizer", "rng", "config", "metarl_version"}
    assert not list((tmp_path / "r").glob(".*tmp"))  # no temp files left behind


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    MetaTrainer.start(tiny_recipe(meta_iterations=2), tmp_path / "r", CPU).fit()
    path = tmp_path / "r" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(UserError, match="not a readable metarl checkpoint"):
        MetaTrainer.resume(tmp_path / "r", CPU)


def test_a_run_directory_is_not_overwritten(tmp_path):
    MetaTrainer.start(tiny_recipe(meta_iterations=1), tmp_path / "r", CPU).fit()
    with pytest.raises(UserError, match="already holds a run"):
        MetaTrainer.start(tiny_recipe(meta_iterations=1), tmp_path / "r", CPU)


def test_edited_config_is_refused_on_resume(tmp_path):
    MetaTrainer.start(tiny_recipe(meta_iterations=2), tmp_path / "r", CPU).fit()
    cfg = tmp_path / "r" / "config.toml"
    cfg.write_text(cfg.read_text().replace("meta_batch = 4", "meta_batch = 5"))
    with pytest.raises(UserError, match="edited after the checkpoint"):
        MetaTrainer.resume(tmp_path / "r", CPU)


def test_a_run_is_extended_by_resuming_with_more_iterations(tmp_path):
    """`resume(meta_iterations=N)` trains a finished run on to N: the same weights and
    metrics rows as a run planned for N from the start (a constant outer step, so the
    schedule is the same), its config.toml and checkpoint saying N. Fewer than done is
    refused before anything is written; a config.toml already extended before a crash (no
    checkpoint since) is no edit."""
    recipe = tiny_recipe(meta_step=0.1, meta_step_final=0.1)
    whole = MetaTrainer.start(recipe, tmp_path / "whole", CPU)
    whole.fit()
    short = with_overrides(recipe, "train", meta_iterations=6)
    MetaTrainer.start(short, tmp_path / "ext", CPU).fit()
    run = RunDir(tmp_path / "ext")
    config_before = run.config_path.read_bytes()
    with pytest.raises(UserError, match="has done 6 iterations"):
        MetaTrainer.resume(tmp_path / "ext", CPU, meta_iterations=5)
    assert run.config_path.read_bytes() == config_before
    assert [r["iteration"] for r in run.read_metrics()] == [2, 4, 6]
    run.write_recipe(with_overrides(short, "train", meta_iterations=9))  # a crash after this
    extended = MetaTrainer.resume(tmp_path / "ext", CPU, meta_iterations=12)
    assert extended.iteration == 6
    extended.fit()
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), extended.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [r["iteration"] for r in run.read_metrics()] == [2, 4, 6, 8, 10, 12]
    assert run.recipe().train.meta_iterations == 12
    assert run.load_checkpoint(CPU).config["train"]["meta_iterations"] == 12
    assert MetaTrainer.resume(tmp_path / "ext", CPU).iteration == 12  # finished, no edit


def test_every_checkpoint_field_loads_onto_another_device(tmp_path):
    """Resuming on a GPU loads with map_location=cuda; the `meta` device stands in for it here.
    Weights and optimizer state go to the device, the RNG state stays a CPU ByteTensor (all
    `torch.set_rng_state` takes)."""
    trainer = MetaTrainer.start(tiny_recipe(meta_iterations=3), tmp_path / "r", CPU)
    trainer.fit()
    assert trainer.recipe.train.outer_optimizer.value == "adam"  # optimizer state has tensors
    ckpt = RunDir(tmp_path / "r").load_checkpoint(torch.device("meta"))
    assert ckpt.iteration == 3 and ckpt.config == trainer.recipe.to_dict()
    assert ckpt.model and all(v.device.type == "meta" for v in ckpt.model.values())
    moments = [t for s in ckpt.optimizer["state"].values() for t in s.values()]
    assert len(moments) == 3 * len(ckpt.model)  # step, exp_avg, exp_avg_sq per parameter
    assert all(t.device.type == "meta" for t in moments)
    rng = ckpt.rng["torch"]
    assert rng.device.type == "cpu" and rng.dtype == torch.uint8
    torch.set_rng_state(rng)  # what resume does; it refused the GPU copy before
    model = trainer.meta.model.to("meta")
    model.load_state_dict(ckpt.model)


class CheckpointSeen:
    """Records the checkpoint's iteration on disk after each iteration."""

    def __init__(self, run_dir):
        self.run = RunDir(run_dir)
        self.seen: list[int | None] = []

    def on_start(self, trainer):
        pass

    def on_iteration(self, trainer, metrics):
        path = self.run.checkpoint_path
        self.seen.append(self.run.load_checkpoint().iteration if path.exists() else None)

    def on_end(self, trainer):
        pass


def test_checkpoints_by_time_as_well_as_by_iteration(tmp_path):
    """checkpoint_every far beyond the run, checkpoint_seconds tiny: every iteration saves."""
    recipe = tiny_recipe(meta_iterations=4, checkpoint_every=1000, checkpoint_seconds=1e-6)
    seen = CheckpointSeen(tmp_path / "r")
    MetaTrainer.start(recipe, tmp_path / "r", CPU, callbacks=[seen]).fit()
    # callbacks run before the save of the same iteration: each sees the previous one's
    assert seen.seen == [None, 1, 2, 3]
    recipe = tiny_recipe(meta_iterations=4, checkpoint_every=1000)  # the default: 60 s
    seen = CheckpointSeen(tmp_path / "s")
    MetaTrainer.start(recipe, tmp_path / "s", CPU, callbacks=[seen]).fit()
    assert seen.seen == [None, None, None, None]


def test_carried_inner_moments_resume_exactly(tmp_path):
    """train.inner_carry_moments: the inner Adam's moments live across iterations, so they
    are training state: the checkpoint holds them and a resumed run ends identical."""
    recipe = tiny_recipe(
        inner_optimizer="adam", inner_lr=0.01, inner_carry_moments=True, meta_step=0.1
    )
    whole = MetaTrainer.start(recipe, tmp_path / "whole", CPU)
    whole.fit()
    assert whole.meta.carry.steps == 12 * 3  # one chain per slot, never reset
    with pytest.raises(TrainingInterrupted):
        MetaTrainer.start(recipe, tmp_path / "cut", CPU, callbacks=[StopAt(7)]).fit()
    assert "adam_carry" in RunDir(tmp_path / "cut").load_checkpoint().learner
    resumed = MetaTrainer.resume(tmp_path / "cut", CPU)
    assert resumed.meta.carry.steps == 7 * 3
    resumed.fit()
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    # and carrying changes training: fresh moments per task give other weights
    fresh = MetaTrainer.start(
        with_overrides(recipe, "train", inner_carry_moments=False), tmp_path / "fresh", CPU
    )
    fresh.fit()
    assert not torch.equal(next(fresh.model.parameters()), next(whole.model.parameters()))


def test_carried_moments_need_adam():
    with pytest.raises(UserError, match="inner_carry_moments = true: needs"):
        MetaTrainer.start(tiny_recipe(inner_carry_moments=True), Path("/tmp/never"), CPU)


def test_a_run_dir_whose_init_did_not_finish_is_collected_quietly():
    """`__del__` reads the lock descriptor declared on the class, so an object whose
    `__init__` raised (a bad path) holds nothing and releases nothing."""
    from metarl.run import RunDir

    run = RunDir.__new__(RunDir)
    run.__del__()
    assert run._lock_fd is None
