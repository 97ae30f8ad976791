"""What every environment family offers, whatever it wraps: a task space and three methods.

`sample_tasks(n, rng)` draws task dicts from a generator the caller owns; `set_task(task)` and
`get_task()` change and read the current task; `reset(options={"task": task})` sets the task
and resets in one call (so vectorized envs can be given tasks through `reset`).

A task persists across resets until it is set again: `reset` never draws a new task, so
`reset(seed=s)` is as deterministic as the underlying env, and the meta-learner decides when
tasks change. A fresh env holds a documented default task (see each family).

Through `gymnasium.make`'s wrappers, reach the methods with
`env.get_wrapper_attr("set_task")(task)` (Gymnasium 1.x no longer forwards attributes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from metarl.envs.spec import ParamDist, TaskValue, check_task, parse_params, sample_params


class TaskFamily:
    """Mixin holding a family's task space and current task.

    Subclasses call `_init_tasks` in `__init__` and override `_apply_task` when a task must
    change something beyond `self._task` (physics attributes).
    """

    family_name: str = "family"
    params: dict[str, ParamDist]
    _task: dict[str, TaskValue]

    def _init_tasks(
        self, params: Mapping[str, Any] | None, default_params: Mapping[str, Any], where: str
    ) -> None:
        self.params = parse_params(default_params if params is None else params, where)

    def task_defaults(self) -> dict[str, float] | None:
        """Base values that `scale = true` parameters multiply (physics families only)."""
        return None

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, TaskValue]]:
        """`n` task dicts drawn with `rng` (never the env's own `np_random`, so sampling tasks
        does not disturb the episode's randomness)."""
        return sample_params(self.params, n, rng, self.task_defaults())

    def set_task(self, task: Mapping[str, Any]) -> None:
        """Make `task` current from the next step on (call `reset` to start an episode)."""
        self._task = check_task(self.params, task, self.family_name)
        self._apply_task(self._task)

    def get_task(self) -> dict[str, TaskValue]:
        """A copy of the current task."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._task.items()}

    def task_value(self, name: str) -> float:
        """A scalar parameter of the current task."""
        value = self._task[name]
        assert not isinstance(value, list), f"{name} is a vector parameter"
        return value

    def _apply_task(self, task: dict[str, TaskValue]) -> None:
        """Hook for families whose task lives outside `self._task`."""

    def _task_from_options(self, options: dict[str, Any] | None) -> None:
        if options and "task" in options:
            self.set_task(options["task"])


class FamilyEnv(TaskFamily):
    """A family written as an env of its own (not a wrapper of Gymnasium's): the constructor
    parses the `[params]` table (the family's `default_params` where none is given), keeps
    the render mode, then builds the spaces and sets the default task (`_start`)."""

    metadata: dict[str, Any] = {"render_modes": []}
    default_params: ClassVar[Mapping[str, Any]]

    def __init__(
        self, params: Mapping[str, Any] | None = None, render_mode: str | None = None
    ) -> None:
        self._init_tasks(params, self.default_params, self.family_name)
        self.render_mode = render_mode
        self._start()

    def _start(self) -> None:
        """The family's spaces, state and default task."""
        raise NotImplementedError


def episode_return(
    env: Any, task: Mapping[str, Any], policy: Callable[[Any], Any], seed: int = 0
) -> tuple[float, int]:
    """Undiscounted return and length of one episode of `policy` (observation -> action) on
    `task`, from `reset(seed=seed)`: the anchors a meta-RL result is placed between."""
    obs, _ = env.reset(seed=seed, options={"task": dict(task)})
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
        steps += 1
        done = terminated or truncated
    return total, steps
