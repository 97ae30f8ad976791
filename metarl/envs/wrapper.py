"""The base of families that wrap an existing Gymnasium env (MuJoCo locomotion, physics).

The wrapped env is the base env's *unwrapped* object: `gymnasium.make(metarl/...)` adds the
TimeLimit (with the family's horizon), order enforcing and the passive checker around the
family, so keeping the base env's own TimeLimit would only truncate twice.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from metarl.envs.base import TaskFamily


def make_base(env_id: str, render_mode: str | None = None) -> gymnasium.Env[Any, Any]:
    """The unwrapped base env (no TimeLimit, no checker: the family's own make adds them)."""
    env = gymnasium.make(env_id, render_mode=render_mode, disable_env_checker=True)
    return env.unwrapped


class TaskWrapper(TaskFamily, gymnasium.Wrapper[Any, Any, Any, Any]):
    """A wrapper whose `reset` also accepts `options={"task": ...}`."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        self._task_from_options(options)
        base_options = {k: v for k, v in (options or {}).items() if k != "task"} or None
        return self.env.reset(seed=seed, options=base_options)
