"""Evaluating RL² beside the gradient learners: one axis of env steps spent adapting, and
Meta-World's deterministic protocol for a policy whose memory spans a trial."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metarl.cli import app
from metarl.config import recipe_from_dict
from metarl.evaluate import ENV_STEPS_AXIS, adaptation_axis, compare_runs
from metarl.learners import build_meta_learner
from metarl.learners.rl_core import held_out_tasks
from metarl.train import MetaTrainer

CPU = torch.device("cpu")
EPISODE = 100
"""Navigation2D's episode length (its TimeLimit; an untrained policy reaches no goal)."""


TRAIN = {
    "algorithm": "rl2",
    "meta_iterations": 1,
    "meta_batch": 2,
    "inner_lr": 0.001,
    "meta_step": 1.0,
    "meta_step_final": 1.0,
}
"""One RL² iteration of two tasks; the outer step of 1 lands on PPO's weights."""


def rl2_nav() -> dict:
    return {
        "task": {"name": "navigation2d"},
        "train": {**TRAIN},
        "eval": {"tasks": 3, "steps": [0, 1, 2]},
        "learner": {"trial_episodes": 2, "hidden_size": 8, "n_envs": 2, "reward_scale": 0.1},
    }


def maml_nav() -> dict:
    return {
        "task": {"name": "navigation2d"},
        "train": {
            "algorithm": "maml",
            "outer_optimizer": "trpo",
            "meta_iterations": 1,
            "meta_batch": 2,
            "inner_steps": 1,
            "inner_lr": 0.1,
        },
        "eval": {"tasks": 3, "steps": [0, 1, 2]},
        "learner": {"backend": "batched", "inner": "vpg", "n_envs": 3, "n_steps": EPISODE},
    }


@pytest.fixture(scope="module")
def rl2_and_maml(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    for name, data in (("rl2", rl2_nav()), ("maml", maml_nav())):
        MetaTrainer.start(recipe_from_dict(data, name), root / name, CPU).fit(progress=False)
    return root / "rl2", root / "maml"


def test_rl2_and_maml_are_plotted_on_one_axis_of_env_steps(rl2_and_maml, tmp_path):
    """RL² after k episodes of its trial has spent k x 100 env steps on the task; MAML after
    k updates k x (3 episodes x 100 steps) of inner rollouts: the figure and the JSON put
    both there, on the same held-out tasks, and pair no step t of one with step t of the
    other (another amount of experience)."""
    rl2, maml = rl2_and_maml
    a = held_out_tasks(
        recipe_from_dict(rl2_nav(), "a").eval,
        build_meta_learner(recipe_from_dict(rl2_nav(), "a"), CPU).dist,
        3,
    )
    b = held_out_tasks(
        recipe_from_dict(maml_nav(), "b").eval,
        build_meta_learner(recipe_from_dict(maml_nav(), "b"), CPU).dist,
        3,
    )
    assert a == b  # the same tasks and seeds
    png = tmp_path / "families.png"
    result = CliRunner().invoke(
        app, ["eval", str(rl2), str(maml), "--json", "-q", "--plot", str(png)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    runs = payload["runs"]
    assert runs[0]["env_steps"] == [0.0, EPISODE, 2 * EPISODE]  # episodes 1, 2, 3 of a trial
    assert runs[1]["env_steps"] == [0.0, 3 * EPISODE, 6 * EPISODE]  # 0, 1, 2 updates
    assert "paired" not in payload or not any(str(maml) in k for k in payload["paired"])
    assert png.stat().st_size > 10_000
    comparison = compare_runs([rl2, maml], CPU, random_baseline=True)
    label, positions = adaptation_axis(comparison)
    assert label == ENV_STEPS_AXIS
    assert positions == [
        [0.0, EPISODE, 2 * EPISODE],  # RL²
        [0.0, 3 * EPISODE, 6 * EPISODE],  # MAML
        [0.0, EPISODE, 2 * EPISODE],  # RL²'s random init
    ]
    alone, none = adaptation_axis(compare_runs([rl2], CPU))
    assert alone == "episodes of experience in the trial (RL²)" and none is None


HAVE_METAWORLD = importlib.util.find_spec("metaworld") is not None


@pytest.mark.skipif(not HAVE_METAWORLD, reason="Meta-World not installed")
def test_rl2_on_metaworld_is_scored_per_episode_with_deterministic_actions():
    """Meta-World's protocol for a recurrent policy: 3 trials per held-out goal (its
    evaluator's 3 episodes), the mean action, the hidden state carried over the trial;
    success per episode of the trial leads. Deterministic means the policy's noise scale
    changes nothing of it, while the sampled trials' return moves with it."""
    data = {
        "task": {"name": "metaworld-ml1-reach", "reward_version": "v2"},
        "train": {**TRAIN},
        "eval": {"tasks": 2, "steps": [0, 1], "split": "test"},
        "learner": {"trial_episodes": 2, "hidden_size": 8, "n_envs": 2},
    }
    meta = build_meta_learner(recipe_from_dict(data, "reach"), CPU)
    with torch.no_grad():
        meta.model.pi.weight.mul_(100.0)  # actions that move the arm
    first = meta.curves([0, 1], 2)
    assert list(first) == ["success", "return", "rollout_return", "rollout_success"]
    success = np.asarray(first["success"].per_task)
    assert success.shape == (2, 2)
    assert np.allclose(success * 3, np.round(success * 3))  # fractions of 3 trials per goal
    for curve in first.values():
        assert curve.env_steps == [0.0, 500.0]  # Meta-World's episodes of 500 steps
    with torch.no_grad():
        meta.model.log_std.fill_(1.0)
    second = meta.curves([0, 1], 2)
    np.testing.assert_array_equal(second["success"].per_task, first["success"].per_task)
    np.testing.assert_array_equal(second["return"].per_task, first["return"].per_task)
    assert not np.allclose(second["rollout_return"].per_task, first["rollout_return"].per_task)
    meta.close()
