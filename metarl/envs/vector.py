"""Vector environments whose sub-envs carry different tasks: a whole meta-batch steps together.

A `TaskVectorEnv` is a Gymnasium 1.x `VectorEnv` of `n_tasks * envs_per_task` sub-envs laid out
row-major as `[task, env]` (sub-env `i = task * envs_per_task + e`), so the batched RL learner
can reshape every array it gets to `[tasks, envs, ...]` and run one policy forward per step
for all of them. The contract (the MuJoCo vector envs implement the same):

- constructor `(n_tasks, envs_per_task, params=None, max_episode_steps=None)`: `params` is
  the family's `[params]` table (the task space), `max_episode_steps` the time limit (default:
  the family's registered value);
- `set_tasks(tasks)`: one task (a parameter mapping, validated like the single env's
  `set_task`) per task slot; it holds until set again, across resets;
- `reset(seed=None, options=None)`: every sub-env starts a fresh episode; `seed` is an int
  (sub-env `i` gets `seed + i`, as Gymnasium's `SyncVectorEnv`) or a list of `num_envs`
  ints, one per sub-env (so a task slot's episodes do not depend on where it sits);
- `step(actions)` -> `(obs float32 [num_envs, obs_dim], rewards [num_envs], terminated,
  truncated, infos)` with SAME_STEP autoreset: a finished sub-env is reset in the same step
  (the returned obs is its new episode's first), and `infos["final_obs"]` (float32
  `[num_envs, obs_dim]`) with the mask `infos["_final_obs"]` holds the finished episodes'
  last observations. Episodes are truncated after `max_episode_steps` steps.

`Navigation2DVector` is Navigation2D in numpy over all sub-envs at once (tested equal to the
single env step for step). `ProtocolVectorEnv` serves any `RLDistribution` (a user's own
Gymnasium env included) through the protocol alone: `make_env(task)`, and the env's
`set_task` where it has one. `make_task_vector_env` picks the distribution's native vector env
(`make_vector_env`, declared in a family file as `vector_entry_point`) or the fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv

from metarl.envs.navigation import (
    DEFAULT_GOAL,
    DEFAULT_PARAMS,
    GOAL_RADIUS,
    MAX_SPEED,
    goal_distance,
)
from metarl.envs.spec import ParamDist, TaskValue, check_task, parse_params
from metarl.errors import ConfigError, UserError
from metarl.protocol import MakesVectorEnv, ParametrizedTask

Seeds = int | Sequence[int] | None
"""`reset`'s seed: one int for all sub-envs, one int per sub-env, or None."""


def sub_env_seeds(seed: Seeds, num_envs: int) -> list[int | None]:
    """One seed per sub-env, by Gymnasium's convention (its
    `SyncVectorEnv`): an int `s` gives sub-env `i` the seed `s + i`, a list gives each its own,
    None leaves every sub-env's generator as it is."""
    if seed is None:
        return [None] * num_envs
    seeds: list[Any] = []
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        seeds = [seed + i for i in range(num_envs)]
    elif isinstance(seed, Sequence | np.ndarray) and not isinstance(seed, str):
        seeds = list(seed)
    if len(seeds) != num_envs or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0 for v in seeds
    ):
        raise ConfigError(
            f"reset: seed = {seed!r}: expected a non-negative int or {num_envs} of them"
        )
    return [int(v) for v in seeds]


class TaskVectorEnv(VectorEnv[Any, Any, Any]):
    """Base of the task vector envs (the contract is this module's docstring)."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}
    n_tasks: int
    envs_per_task: int

    def _init_layout(self, n_tasks: int, envs_per_task: int) -> None:
        if n_tasks < 1 or envs_per_task < 1:
            raise ValueError(f"n_tasks = {n_tasks}, envs_per_task = {envs_per_task}: must be >= 1")
        self.n_tasks, self.envs_per_task = n_tasks, envs_per_task
        self.num_envs = n_tasks * envs_per_task

    def _init_spaces(self, observation: gymnasium.Space[Any], action: gymnasium.Space[Any]) -> None:
        from gymnasium.vector.utils import batch_space

        self.single_observation_space, self.single_action_space = observation, action
        self.observation_space = batch_space(observation, self.num_envs)
        self.action_space = batch_space(action, self.num_envs)

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """One task per task slot; each holds until set again."""
        raise NotImplementedError

    def _check_task_count(self, tasks: Sequence[Any]) -> None:
        if len(tasks) != self.n_tasks:
            raise ValueError(f"set_tasks: {len(tasks)} tasks for {self.n_tasks} task slots")


class FamilyVectorEnv(TaskVectorEnv):
    """A task vector env of one of metarl's numpy families: the contract's constructor lays
    out the sub-envs, parses the `[params]` table (the family's `default_params` where none
    is given), then builds the family's spaces and state (`_start`)."""

    family_name: ClassVar[str]
    default_params: ClassVar[Mapping[str, Any]]

    def __init__(
        self,
        n_tasks: int,
        envs_per_task: int,
        params: Mapping[str, Any] | None = None,
        max_episode_steps: int | None = None,
    ) -> None:
        self._init_layout(n_tasks, envs_per_task)
        self.params: dict[str, ParamDist] = parse_params(
            self.default_params if params is None else params, self.family_name
        )
        self._start(max_episode_steps)

    def _start(self, max_episode_steps: int | None) -> None:
        """The family's spaces and the state of its sub-envs."""
        raise NotImplementedError

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """One task per slot, each checked as the single env's `set_task` checks it."""
        self._check_task_count(tasks)
        self.tasks = [check_task(self.params, t, self.family_name) for t in tasks]

    def task_column(self, key: str) -> np.ndarray:
        """Parameter `key` of every sub-env's task, `[num_envs]` (or `[num_envs, size]`)."""
        values = np.asarray([t[key] for t in self.tasks], dtype=np.float64)
        return np.repeat(values, self.envs_per_task, axis=0)


class Navigation2DVector(FamilyVectorEnv):
    """`metarl.envs.navigation.Navigation2D` for all sub-envs at once, in numpy: the same
    clipped velocity step, reward (minus the distance after the move), termination within
    `GOAL_RADIUS` of the goal and truncation after `max_episode_steps` (100)."""

    family_name = "metarl/Navigation2D-v0"
    default_params = DEFAULT_PARAMS

    def _start(self, max_episode_steps: int | None) -> None:
        self.max_episode_steps = 100 if max_episode_steps is None else max_episode_steps
        self._init_spaces(
            gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32),
            gymnasium.spaces.Box(-MAX_SPEED, MAX_SPEED, (2,), np.float32),
        )
        self._goal = np.tile(np.asarray(DEFAULT_GOAL, dtype=np.float64), (self.num_envs, 1))
        self._position = np.zeros((self.num_envs, 2))
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self.tasks: list[dict[str, TaskValue]] = [
            {"goal": list(DEFAULT_GOAL)} for _ in range(self.n_tasks)
        ]

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        super().set_tasks(tasks)
        self._goal = self.task_column("goal")

    def reset(
        self, *, seed: Seeds = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        sub_env_seeds(seed, self.num_envs)  # checked; the start state is not random
        self._position[:] = 0.0
        self._elapsed[:] = 0
        return self._position.astype(np.float32), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        velocity = np.clip(np.asarray(actions, dtype=np.float64), -MAX_SPEED, MAX_SPEED)
        self._position = self._position + velocity.reshape(self.num_envs, 2)
        self._elapsed += 1
        distance = goal_distance(self._position, self._goal)
        terminated = distance < GOAL_RADIUS
        truncated = self._elapsed >= self.max_episode_steps
        infos: dict[str, Any] = {}
        done = terminated | truncated
        if done.any():
            final = np.zeros((self.num_envs, 2), dtype=np.float32)
            final[done] = self._position[done]
            infos = {"final_obs": final, "_final_obs": done}
            self._position[done] = 0.0
            self._elapsed[done] = 0
        return self._position.astype(np.float32), -distance, terminated, truncated, infos


class ProtocolVectorEnv(TaskVectorEnv):
    """Any RL distribution's tasks as a task vector env, through its protocol only: each
    sub-env is `dist.make_env(task)`, stepped by Gymnasium's `SyncVectorEnv` with SAME_STEP
    autoreset. A new task is set with the env's `set_task` where it has one (metarl's
    families), and otherwise by building the sub-env anew with `make_env`."""

    def __init__(self, dist: Any, tasks: Sequence[Any], envs_per_task: int) -> None:
        self._init_layout(len(tasks), envs_per_task)
        self.dist = dist
        self.tasks = list(tasks)
        envs = [dist.make_env(t) for t in self.tasks for _ in range(envs_per_task)]
        self.vector = SyncVectorEnv(
            [_returning(env) for env in envs], autoreset_mode=AutoresetMode.SAME_STEP
        )
        self._init_spaces(self.vector.single_observation_space, self.vector.single_action_space)

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        self._check_task_count(tasks)
        for slot, task in enumerate(tasks):
            if task is self.tasks[slot] or task == self.tasks[slot]:
                continue
            for i in range(slot * self.envs_per_task, (slot + 1) * self.envs_per_task):
                self._retask(i, task)
        self.tasks = list(tasks)

    def _retask(self, i: int, task: Any) -> None:
        self.vector.envs[i] = retask(self.dist, self.vector.envs[i], task)

    def reset(
        self, *, seed: Seeds = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        seeds = sub_env_seeds(seed, self.num_envs)
        obs, info = self.vector.reset(seed=seeds, options=options)
        return np.asarray(obs, dtype=np.float32), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, rewards, terminated, truncated, infos = self.vector.step(actions)
        if "final_obs" in infos:
            mask = np.asarray(infos["_final_obs"], dtype=bool)
            shape = tuple(self.single_observation_space.shape or ())
            final = np.zeros((self.num_envs, *shape), np.float32)
            for i in np.flatnonzero(mask):
                final[i] = infos["final_obs"][i]
            infos = {**infos, "final_obs": final, "_final_obs": mask}
        return np.asarray(obs, dtype=np.float32), rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        self.vector.close()


def retask(dist: Any, env: Any, task: Any) -> Any:
    """`env` with `task` set, through the RL protocol only: the env's own `set_task` where it
    has one (metarl's families take the task's parameter mapping), else a new env from
    `dist.make_env(task)` (the old one is closed). Returns the env to use from now on."""
    try:
        set_task = env.get_wrapper_attr("set_task")
    except AttributeError:
        set_task = None
    params = task if isinstance(task, Mapping) else _params(task)
    if set_task is not None and isinstance(params, Mapping):
        set_task(dict(params))
        return env
    env.close()
    return dist.make_env(task)


def _returning(env: gymnasium.Env[Any, Any]) -> Callable[[], gymnasium.Env[Any, Any]]:
    return lambda: env


def make_task_vector_env(dist: Any, tasks: Sequence[Any], envs_per_task: int) -> TaskVectorEnv:
    """A task vector env for `dist` holding `tasks` (one slot each): the distribution's own
    (`dist.make_vector_env(n_tasks, envs_per_task)`) if it offers one, else the protocol
    fallback."""
    if not isinstance(dist, MakesVectorEnv):
        return ProtocolVectorEnv(dist, tasks, envs_per_task)
    env = dist.make_vector_env(len(tasks), envs_per_task)
    if env is None:
        return ProtocolVectorEnv(dist, tasks, envs_per_task)
    set_vector_tasks(env, tasks)
    return env


def set_vector_tasks(env: TaskVectorEnv, tasks: Sequence[Any]) -> None:
    """Give `env` the distribution's `tasks`: the protocol fallback takes them as they are
    (it hands them to `make_env`); a family's native vector env takes each `EnvTask`'s
    parameter mapping."""
    if isinstance(env, ProtocolVectorEnv):
        env.set_tasks(tasks)
        return
    env.set_tasks([_params(t) for t in tasks])


def _params(task: Any) -> Any:
    """An env family task's parameter mapping; any other task as it is."""
    if isinstance(task, ParametrizedTask) and isinstance(task.params, Mapping):
        return task.params
    return task


def import_vector_class(entry_point: str, where: str) -> Callable[..., TaskVectorEnv]:
    """The class named by a family's `vector_entry_point` (`package.module:Class`)."""
    import importlib

    module, _, name = entry_point.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ModuleNotFoundError, AttributeError) as e:
        raise UserError(
            f"{where}: vector_entry_point = {entry_point!r} cannot be imported ({e})"
        ) from None
    return cls


__all__ = [
    "FamilyVectorEnv",
    "Navigation2DVector",
    "ProtocolVectorEnv",
    "TaskVectorEnv",
    "import_vector_class",
    "make_task_vector_env",
    "retask",
    "set_vector_tasks",
    "sub_env_seeds",
]
