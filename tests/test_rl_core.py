"""The RL meta-learner's shared core: the rollout schedule, slot seeds, the engine dispatch,
and a new engine that writes only its rollout and one row of `metarl.combinations.SUPPORTED`
(the toy engine below)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

from metarl import combinations
from metarl.combinations import FIRST_ORDER, Combination, Steps
from metarl.config import recipe_from_dict
from metarl.envs.distribution import EnvFamilyDistribution
from metarl.errors import ConfigError
from metarl.evaluate import evaluate_run
from metarl.learners import build_meta_learner
from metarl.learners.rl_core import (
    RLMetaLearnerBase,
    RolloutSchedule,
    RunRequest,
    TasksRun,
    Timers,
    initial_policy,
    query_metrics,
    slot_seeds,
)
from metarl.optim import stack
from metarl.protocol import Adaptation, Params, RolloutContext
from metarl.rl.settings import rl_settings
from metarl.train import MetaTrainer

CPU = torch.device("cpu")


# --- a toy engine: its rollout, one class here, and one row in SUPPORTED -----------------
class ZeroShotEngine(RLMetaLearnerBase):
    """No inner update at all (W_i = phi): each task is scored by one deterministic episode.
    It writes only its rollouts (`rollouts`) and FOMAML's loss: `adapt`, `curves`, the seeds and
    the metrics come from the core."""

    name = "the zero-shot engine"

    def __init__(self, recipe: Any, dist: Any, device: torch.device) -> None:
        self.recipe, self.dist, self.timers = recipe, dist, Timers()
        self.model = initial_policy(dist, rl_settings(recipe), recipe.train.seed, device)

    def episode(self, task: Any, seed: int) -> float:
        env, total, done = self.dist.make_env(task), 0.0, False
        obs, _ = env.reset(seed=seed)
        while not done:
            action, _ = self.model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
            self.timers.env_steps += 1
        return total

    def rollouts(self, request: RunRequest) -> TasksRun:
        pairs = zip(request.tasks, request.seeds, strict=True)
        returns = np.array([self.episode(task, seed) for task, seed in pairs])
        measured = {t: returns for t in request.measure}
        return TasksRun(stack(request.phi, len(request.tasks)), measured, len(request.tasks))

    def query_gradient(self, adaptation: Adaptation[RolloutContext]) -> tuple[Params, Any]:
        zero = {k: torch.zeros_like(v[0]) for k, v in adaptation.params.items()}
        return zero, query_metrics(0.0, adaptation.metrics["return_before"], 0)


def nav(eval_: dict[str, Any] | None = None, **learner: Any) -> Any:
    data = {
        "task": {"name": "navigation2d"},
        "train": {"meta_iterations": 2, "meta_batch": 2, "inner_steps": 1, "log_every": 1},
        "eval": {"tasks": 3, "steps": [0, 1], **(eval_ or {})},
        "learner": {"n_steps": 100, "batch_size": 50, **learner},
    }
    return recipe_from_dict(data, "nav.toml")


def test_a_new_engine_is_one_class_and_one_row(monkeypatch, tmp_path):
    """Registered by one row of the table of combinations, the toy engine is built from a
    recipe, refuses what RL learners refuse, trains with checkpoints through the trainer,
    and evaluates."""
    toy = Combination(
        "rl", FIRST_ORDER, Steps.GRADIENT, f"{__name__}:ZeroShotEngine", backend="toy"
    )
    monkeypatch.setattr(combinations, "SUPPORTED", [*combinations.SUPPORTED, toy])
    meta = build_meta_learner(nav(backend="toy"), CPU)
    assert isinstance(meta, ZeroShotEngine)
    bad = nav({"transductive": True}, backend="toy")
    with pytest.raises(ConfigError, match="eval.transductive = true: .* the zero-shot engine"):
        build_meta_learner(bad, CPU)
    trainer = MetaTrainer.start(nav(backend="toy"), tmp_path / "run", CPU)
    phi = {k: v.clone() for k, v in trainer.phi().items()}
    trainer.fit()
    assert trainer.iteration == 2 and trainer.history[-1]["return_before"] < 0
    for k, v in trainer.phi().items():  # Reptile's delta phi - W is 0 without adaptation
        torch.testing.assert_close(v, phi[k])
    evaluation = evaluate_run(tmp_path / "run", CPU)
    assert evaluation.curve.steps == [0, 1] and evaluation.curve.n_tasks == 3
    assert evaluation.curve.mean[0] == evaluation.curve.mean[1]


def test_an_unknown_engine_names_the_known_ones():
    with pytest.raises(ConfigError, match="learner.backend = 'jax': expected one of batched, sb3"):
        build_meta_learner(nav(backend="jax"), CPU)


def test_the_rollout_schedule_collects_what_is_measured():
    assert RolloutSchedule(2, (0,)).rollouts == 2  # rollouts 0 and 1 precede the 2 updates
    assert RolloutSchedule(2, (0, 2)).rollouts == 3  # measuring after the last update
    extra = RolloutSchedule(2, (0,), extra=True)
    assert extra.rollouts == 3 and [t for t in range(3) if extra.measured(t)] == [0, 2]


def test_slot_seeds_do_not_depend_on_the_split_of_the_meta_batch():
    whole = slot_seeds(np.random.default_rng(7), 6, 3, slice(None))
    halves = [slot_seeds(np.random.default_rng(7), 6, 3, s) for s in (slice(0, 3), slice(3, 6))]
    assert halves[0] + halves[1] == whole
    assert all(0 <= s < 2**31 - 1 - 3 for s in whole)


def test_a_family_metric_is_the_distributions_hook(monkeypatch):
    """Navigation2D's envs report the distance to the goal in `info` (stepped here through
    the protocol's vector env: the family's own batched step reports no info): a
    distribution that watches it (`ReportsEpisodes`) gets a training metric and an
    evaluation curve from it, with nothing written in the rollout or the engines."""

    def episode_metrics(self: Any, tasks: Sequence[Any], first: Any) -> dict[str, Any]:
        return {"mean_distance": first.means["distance"]}

    monkeypatch.setattr(EnvFamilyDistribution, "episode_info", ("distance",))
    monkeypatch.setattr(EnvFamilyDistribution, "episode_metrics", episode_metrics)
    monkeypatch.setattr(EnvFamilyDistribution, "make_vector_env", lambda *_: None)
    meta = build_meta_learner(nav(), CPU)
    rng = np.random.default_rng(0)
    adaptation = meta.adapt(meta.phi(), meta.dist.sample(2, rng), rng)
    assert 0.0 < adaptation.metrics["mean_distance_before"] < 100.0
    curves = meta.curves([0, 1], 2)
    assert list(curves) == ["return", "mean_distance"]
    assert curves["mean_distance"].per_task.shape == (2, 2)
    assert (curves["mean_distance"].per_task > 0).all()
