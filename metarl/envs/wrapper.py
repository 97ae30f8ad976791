"""The base of families that wrap an existing Gymnasium env (MuJoCo locomotion, physics).

The wrapped env is the base env's *unwrapped* object: `gymnasium.make(metarl/...)` adds the
TimeLimit (with the family's horizon), order enforcing and the passive checker around the
family, so keeping the base env's own TimeLimit would only truncate twice.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import gymnasium

from metarl.envs.base import TaskFamily

GYMNASIUM_XML_DEPRECATIONS = ("compiler attribute 'settotalmass' is deprecated",)
"""MuJoCo 4's warnings about Gymnasium's own model files: nothing a metarl user can act on."""


@contextlib.contextmanager
def mujoco_compile_warnings(env_id: str) -> Iterator[None]:
    """While Gymnasium compiles a MuJoCo model, MuJoCo's warnings become Python warnings.

    MuJoCo's default handler prints each warning and appends it to MUJOCO_LOG.TXT in the
    user's working folder: a 40-task HalfCheetah run printed the same deprecation of
    Gymnasium's XML ten times and left a log file behind. The known deprecations of
    Gymnasium's files are dropped; anything else reaches `warnings` (once per message).
    """
    entry = str(getattr(gymnasium.spec(env_id), "entry_point", ""))
    if "mujoco" not in entry:
        yield
        return
    import mujoco

    def forward(message: str) -> None:
        if not message.startswith(GYMNASIUM_XML_DEPRECATIONS):
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(forward)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def make_base(env_id: str, render_mode: str | None = None) -> gymnasium.Env[Any, Any]:
    """The unwrapped base env (no TimeLimit, no checker: the family's own make adds them)."""
    with mujoco_compile_warnings(env_id):
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
