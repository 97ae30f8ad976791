"""Bernoulli multi-armed bandits, the first experiment of RL² (Duan et al. 2016).

A task is the arms' success probabilities (`means`, one per arm, drawn U[0, 1] by the family
file). An episode is one pull: the action is an arm, the reward is 1 with that arm's
probability and 0 otherwise, and the episode ends. RL²'s trial of n episodes on one task is
therefore n pulls of the same bandit, and its regret is the bandit regret of n pulls. The
observation carries nothing (a constant 0): everything the policy knows about the task comes
from the rewards it has seen.

The reward draws come from the env's generator (`reset(seed=...)`), so a seeded episode
stream is reproducible; the vector env keeps one generator per sub-env (seeded at `reset`,
carried through autoresets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.base import FamilyEnv
from metarl.envs.spec import ParamDist, TaskValue
from metarl.envs.vector import FamilyVectorEnv, Seeds, sub_env_seeds

DEFAULT_PARAMS: dict[str, Any] = {"means": {"uniform": [0.0, 1.0], "size": 5}}


def arms(params: Mapping[str, ParamDist]) -> int:
    """The number of arms: the size of the `means` parameter."""
    size = params["means"].size
    if size is None or size < 2:
        raise gymnasium.error.Error("params.means needs size >= 2 (one mean per arm)")
    return size


class BernoulliBandit(FamilyEnv, gymnasium.Env[np.ndarray, np.int64]):
    """A k-armed Bernoulli bandit; the task is `{"means": [p_1, ..., p_k]}`."""

    family_name = "metarl/BernoulliBandit-v0"
    default_params = DEFAULT_PARAMS

    def _start(self) -> None:
        k = arms(self.params)
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(k)
        self.set_task({"means": [0.5] * k})

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._task_from_options(options)
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        means = self._task["means"]
        assert isinstance(means, list)
        reward = float(self.np_random.random() < means[int(action)])
        return np.zeros(1, np.float32), reward, True, False, {}


class BernoulliBanditVector(FamilyVectorEnv):
    """`BernoulliBandit` for all sub-envs at once (every step ends an episode, so every step
    autoresets; `final_obs` is the constant observation)."""

    family_name = BernoulliBandit.family_name
    default_params = DEFAULT_PARAMS

    def _start(self, max_episode_steps: int | None) -> None:
        k = arms(self.params)
        self._init_spaces(
            gymnasium.spaces.Box(0.0, 1.0, (1,), np.float32), gymnasium.spaces.Discrete(k)
        )
        self._means = np.full((self.num_envs, k), 0.5)
        self._rngs = [np.random.default_rng(i) for i in range(self.num_envs)]
        self.tasks: list[dict[str, TaskValue]] = [{"means": [0.5] * k}] * self.n_tasks

    def set_tasks(self, tasks: Any) -> None:
        super().set_tasks(tasks)
        self._means = self.task_column("means")

    def reset(
        self, *, seed: Seeds = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        for i, s in enumerate(sub_env_seeds(seed, self.num_envs)):
            if s is not None:
                self._rngs[i] = np.random.default_rng(s)
        return np.zeros((self.num_envs, 1), np.float32), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        chosen = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        p = self._means[np.arange(self.num_envs), chosen]
        draws = np.array([rng.random() for rng in self._rngs])
        rewards = (draws < p).astype(np.float64)
        done = np.ones(self.num_envs, dtype=bool)
        obs = np.zeros((self.num_envs, 1), np.float32)
        infos = {"final_obs": obs.copy(), "_final_obs": done}
        return obs, rewards, done, np.zeros(self.num_envs, dtype=bool), infos


__all__ = ["BernoulliBandit", "BernoulliBanditVector"]
