"""2-D navigation to a goal, the meta-RL toy problem of MAML (Finn et al. 2017).

A point starts at (0, 0); an action is its velocity, clipped to [-0.1, 0.1] per axis; the
reward after each move is minus the Euclidean distance to the goal. Tasks are goals drawn
from U[-0.5, 0.5]^2. Episodes are truncated after 100 steps by the TimeLimit that
`gymnasium.make` adds.

Termination: the episode ends when the point is within 0.01 (Euclidean) of the goal. MAML's
code (pytorch-maml-rl) tests |dx| < 0.01 and |dy| < 0.01 per axis; a disc reads more simply
and differs only on a sliver of the square. Reaching the goal ends the stream of negative
rewards, so an optimal policy still heads straight for it.

Pure numpy, cheap enough to step for fast meta-RL tests.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from numpy.typing import ArrayLike

from metarl.envs.base import FamilyEnv

MAX_SPEED = 0.1
GOAL_RADIUS = 0.01
DEFAULT_PARAMS: dict[str, Any] = {"goal": {"uniform": [-0.5, 0.5], "size": 2}}
DEFAULT_GOAL = (0.25, 0.25)
"""The task of a fresh env: fixed (not random) so a new env is deterministic."""


def oracle_action(position: ArrayLike, goal: ArrayLike) -> np.ndarray:
    """The greedy oracle: per axis, the largest allowed step toward the goal (the fastest way
    there, since the reward is minus the distance after every move)."""
    step = np.asarray(goal, dtype=np.float64) - np.asarray(position, dtype=np.float64)
    return np.clip(step, -MAX_SPEED, MAX_SPEED).astype(np.float32)


def goal_distance(position: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Euclidean distance over the last axis, written out so that one point and a batch of
    points (`Navigation2DVector`) give bit-identical values."""
    diff = position - goal
    return np.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])


class Navigation2D(FamilyEnv, gymnasium.Env[np.ndarray, np.ndarray]):
    """Point navigation to a goal; the task is `{"goal": [x, y]}`."""

    family_name = "metarl/Navigation2D-v0"
    default_params = DEFAULT_PARAMS

    def _start(self) -> None:
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gymnasium.spaces.Box(-MAX_SPEED, MAX_SPEED, (2,), np.float32)
        self._position = np.zeros(2)
        self._goal = np.asarray(DEFAULT_GOAL, dtype=np.float64)
        self.set_task({"goal": list(DEFAULT_GOAL)})

    def _apply_task(self, task: dict[str, Any]) -> None:
        self._goal = np.asarray(task["goal"], dtype=np.float64)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._task_from_options(options)
        self._position = np.zeros(2)
        return self._observation(), self._info()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        velocity = np.clip(np.asarray(action, dtype=np.float64), -MAX_SPEED, MAX_SPEED)
        self._position = self._position + velocity
        distance = float(goal_distance(self._position, self._goal))
        return self._observation(), -distance, distance < GOAL_RADIUS, False, self._info()

    def _observation(self) -> np.ndarray:
        return self._position.astype(np.float32)

    def _info(self) -> dict[str, Any]:
        return {"distance": float(goal_distance(self._position, self._goal))}
