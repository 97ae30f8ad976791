"""torch.distributed on CPU: 2 gloo ranks give the run 1 rank gives, resume works for any world
size, a dead rank is an error and not a hang, and torchrun drives the CLI."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metarl.config import recipe_from_dict, with_overrides
from metarl.distributed import MetricsLayout, World
from metarl.protocol import AcrossRanks
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer, TrainingInterrupted
from tests.test_rl2 import nav_recipe
from tests.test_run import StopAt

CPU = torch.device("cpu")


def small_recipe(**train: Any) -> dict[str, Any]:
    base = dict(meta_iterations=8, meta_batch=5, inner_steps=3, checkpoint_every=100, log_every=1)
    base.update(train)
    return with_overrides(resolve_recipe("sine"), "train", **base).to_dict()


def _worker(
    rank: int, size: int, init: str, out: str, recipe: dict | None, stop_at: int, crash_rank: int
) -> None:
    """One rank. A C++ abort prints every thread's Python stack (faulthandler), so a failure
    says where it happened. A rank that finished its work leaves with `os._exit(0)` after
    tearing the group down: what these tests check is on disk by then, and the interpreter's
    own teardown of gloo's threads has aborted a rank ("terminate called without an active
    exception", SIGABRT) once in a few hundred runs on a loaded 2-core machine."""
    faulthandler.enable(all_threads=True)
    torch.set_num_threads(1)
    # a short collective timeout only where a rank is meant to die: a loaded machine must not
    # turn a slow rank into a failure
    timeout = timedelta(seconds=10 if crash_rank >= 0 else 120)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size, timeout=timeout)
    try:
        if rank == crash_rank:
            return  # a rank that goes away before its first collective, without a word
        world = World(rank, size)
        callbacks = [StopAt(stop_at)] if stop_at else []
        if recipe is None:  # resume the run in `out`
            trainer = MetaTrainer.resume(Path(out), CPU, callbacks, world)
        else:
            trainer = MetaTrainer.start(
                recipe_from_dict(recipe, "test"), Path(out), CPU, callbacks, world
            )
        with contextlib.suppress(TrainingInterrupted):
            trainer.fit()
        # every rank's logged rows, to check that the ranks agree on them (rank 0 alone
        # writes metrics.jsonl)
        Path(f"{out}.rank{rank}.json").write_text(json.dumps(trainer.history))
    finally:
        if rank != crash_rank:
            dist.destroy_process_group()
    if rank != crash_rank:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def spawn(
    tmp_path: Path, out: Path, recipe: dict | None, stop_at: int = 0, crash_rank: int = -1
) -> None:
    """Two gloo ranks train `recipe` into `out` (None: resume the run there)."""
    init = f"file://{tmp_path / ('init-' + out.name + ('-r' if recipe is None else ''))}"
    mp.spawn(_worker, args=(2, init, str(out), recipe, stop_at, crash_rank), nprocs=2)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "checkpoint.pt", weights_only=True)["model"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml", "maml", "imaml", "metasgd"])
def test_two_ranks_match_one(tmp_path, algorithm):
    """The same weights, and the same logged metrics: the losses (and iMAML's diagnostics)
    are the whole meta-batch's means, not rank 0's 3 tasks of 5. One rank's are means of
    float32 losses over 5 tasks, two ranks' the float64 mix of 3- and 2-task float32 means,
    on weights that drift apart by float summation order over 8 iterations: measured at most
    3.8e-7 relative (imaml_residual); 1e-5 allows 25 times that, while rank 0's share alone
    (what was logged before) missed by 8e-3 (imaml_residual) to 2.4e-1 (loss_before)."""
    recipe = small_recipe(algorithm=algorithm, outer_optimizer="adam", meta_step=0.01)
    MetaTrainer.start(recipe_from_dict(recipe, "t"), tmp_path / "one", CPU).fit()
    spawn(tmp_path, tmp_path / "two", recipe)
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    assert (tmp_path / "two" / "metrics.jsonl").read_text().count("\n") == 8  # rank 0 only
    assert_same_metrics(tmp_path / "one", tmp_path / "two", rel=1e-5)


PER_PROCESS = ("elapsed_s", "train_s", "tasks_per_s", "peak_rss_mib")
"""Logged keys that time or measure rank 0's process (with the learners' `AcrossRanks.OWN`
ones, `seconds_*`): no sum over ranks describes them, and two runs' differ anyway."""


def rows(run: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def compared(row: dict[str, float]) -> dict[str, float]:
    """A logged row without the keys that measure a process rather than the training."""
    return {k: v for k, v in row.items() if k not in PER_PROCESS and not k.startswith("seconds_")}


def assert_same_metrics(
    one: Path, two: Path, rel: float, atol: float = 0.0, looser: dict[str, float] | None = None
) -> None:
    """The 1-rank run `one` and the 2-rank run `two` logged the same iterations with the same
    keys, and every key's value of `two` is within `rel` (relative to the larger of the two;
    `looser[key]` where given) plus `atol` of `one`'s; both ranks of `two` hold the rows rank
    0 wrote, bit for bit."""
    a, b = rows(one), rows(two)
    assert [r["iteration"] for r in a] == [r["iteration"] for r in b]
    over: dict[str, str] = {}
    for ra, rb in zip(a, b, strict=True):
        assert sorted(ra) == sorted(rb)
        for k, x in compared(ra).items():
            y, tol = rb[k], (looser or {}).get(k, rel)
            if not abs(x - y) <= tol * max(abs(x), abs(y)) + atol:
                over[k] = f"iteration {ra['iteration']}: {y!r} against {x!r}"
    assert over == {}, f"2 ranks' metrics differ from 1 rank's: {over}"
    for rank in (0, 1):
        held = json.loads(Path(f"{two}.rank{rank}.json").read_text())
        assert [compared(r) for r in held] == [compared(r) for r in b], f"rank {rank}"


def rl2_recipe() -> dict[str, Any]:
    """RL² on Navigation2D, shrunk: 3 tasks (2 on rank 0, 1 on rank 1) x 2 trials, PPO in 2
    minibatches of 3 trials over 2 epochs, so some minibatches hold none of a rank's trials."""
    recipe = nav_recipe(meta_iterations=3, meta_batch=3, inner_lr=0.003, checkpoint_every=100)
    recipe["learner"].update(hidden_size=8, n_epochs=2, minibatches=2)
    return recipe


def test_two_ranks_match_one_for_rl2(tmp_path):
    """RL²'s PPO update runs inside `adapt`: each rank steps its tasks' trials, and every
    minibatch's normalizers and gradient are summed over ranks, so two ranks take the Adam
    steps one rank takes (averaging each rank's own PPO end point would not).

    The logged metrics are the whole meta-batch's too: the trials' returns its means, the
    env steps its sum, PPO's losses (summed over ranks inside the update) the same on both
    ranks. They differ from one rank's by float32 summation order: measured at most 1.2e-8
    relative on the returns and 1.3e-7 on the losses, and 5e-8 absolute on policy_loss,
    a mean of O(1) terms (normalized advantages) that cancel to 1e-4. So 1e-5 relative plus
    1e-6 absolute; rank 0's 2 tasks of 3 alone (what was logged before) missed the returns
    by 3e-2 to 2.3e-1 and the env steps by a third."""
    recipe = rl2_recipe()
    MetaTrainer.start(recipe_from_dict(recipe, "t"), tmp_path / "one", CPU).fit()
    spawn(tmp_path, tmp_path / "two", recipe)
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    assert_same_metrics(tmp_path / "one", tmp_path / "two", rel=1e-5, atol=1e-6)
    one = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    adam_one, adam_two = one["learner"]["ppo_adam"], two["learner"]["ppo_adam"]
    for k, state in adam_one["state"].items():
        torch.testing.assert_close(state["exp_avg_sq"], adam_two["state"][k]["exp_avg_sq"])


def test_an_interrupted_two_rank_rl2_run_resumes_on_two_ranks_with_its_adam(tmp_path):
    """RL²'s PPO Adam is the run's optimizer, not one rank's slots: a resume under torchrun
    loads it on every rank, so stop-and-resume ends where the uninterrupted run does."""
    recipe = rl2_recipe()
    MetaTrainer.start(recipe_from_dict(recipe, "t"), tmp_path / "whole", CPU).fit()
    spawn(tmp_path, tmp_path / "cut", recipe, stop_at=1)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["iteration"] == 2
    spawn(tmp_path, tmp_path / "cut", None)
    assert_same_weights(tmp_path / "whole", tmp_path / "cut")


def test_metrics_combine_by_kind_and_a_metric_declared_the_same_is_checked():
    """Without processes: two ranks' layouts summed by hand, as the all-reduce sums them. A
    mean is weighted by task counts, a sum summed, a `SAME` is rank 0's, an `OWN` each rank's
    own; a `SAME` that differs, or ranks reporting other names, is an error on every rank."""
    across = {"steps": AcrossRanks.SUM, "kl": AcrossRanks.SAME, "seconds": AcrossRanks.OWN}

    def combine(*ranks: tuple[dict[str, float], int]) -> list[dict[str, float]]:
        size = len(ranks)
        layouts = [MetricsLayout.of(m, across, n, World(r, size)) for r, (m, n) in enumerate(ranks)]
        total = torch.stack([layout.values for layout in layouts if layout is not None]).sum(0)
        return [
            layout.combined(total, m)
            for layout, (m, _) in zip(layouts, ranks, strict=True)
            if layout is not None
        ]

    a = {"loss": 1.0, "steps": 30.0, "kl": 0.25, "seconds": 7.0}
    b = {"loss": 4.0, "steps": 10.0, "kl": 0.25, "seconds": 9.0}
    first, second = combine((a, 2), (b, 1))
    assert first == {"loss": 2.0, "steps": 40.0, "kl": 0.25, "seconds": 7.0}
    assert second == {**first, "seconds": 9.0}
    assert MetricsLayout.of(a, across, 3, World()) is None  # one rank: logged as they are
    with pytest.raises(RuntimeError, match=r"^metric 'kl': not the same on every rank"):
        combine((a, 2), ({**b, "kl": 0.5}, 1))
    with pytest.raises(RuntimeError, match=r"^the metrics' names \(a checksum\): not the same"):
        combine((a, 2), ({"lost": 4.0, **{k: b[k] for k in across}}, 1))


def test_more_ranks_than_tasks_is_refused_in_one_line(tmp_path):
    """A rank with no task slot would adapt nothing: refused before any file is written."""
    from metarl.errors import UserError

    recipe = recipe_from_dict(small_recipe(meta_batch=2), "t")
    with pytest.raises(UserError) as err:
        MetaTrainer.start(recipe, tmp_path / "r", CPU, world=World(0, 3))
    assert str(err.value) == (
        "WORLD_SIZE=3: more ranks than train.meta_batch = 2 tasks; use at most that many ranks"
    )
    assert not (tmp_path / "r").exists()


def test_interrupted_two_rank_run_resumes_on_one(tmp_path):
    recipe = small_recipe()
    MetaTrainer.start(recipe_from_dict(recipe, "t"), tmp_path / "whole", CPU).fit()
    spawn(tmp_path, tmp_path / "cut", recipe, stop_at=3)
    # rank 0 asks to stop after iteration 3; the request rides in iteration 4's all-reduce of
    # the deltas, so both ranks stop, with one checkpoint, after iteration 4
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["iteration"] == 4
    MetaTrainer.resume(tmp_path / "cut", CPU).fit()
    assert_same_weights(tmp_path / "whole", tmp_path / "cut")


def test_a_dead_rank_is_an_error_not_a_hang(tmp_path):
    """Rank 1 leaves; rank 0's next collective times out (10 s here) with an error."""
    started = time.monotonic()
    with pytest.raises(mp.ProcessRaisedException, match="Timed out|timed out|Connection"):
        spawn(tmp_path, tmp_path / "dead", small_recipe(), crash_rank=1)
    assert time.monotonic() - started < 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_torchrun_drives_the_cli(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    cmd += ["--master-port", str(free_port()), "-m", "metarl", "train", "sine"]
    cmd += ["--out", str(out), "--meta-iterations", "4", "--meta-batch", "4", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 ranks" in result.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == 4
