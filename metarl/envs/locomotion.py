"""MuJoCo locomotion families of MAML (Finn et al. 2017): run at a goal velocity, or in a
goal direction.

Each wraps a Gymnasium MuJoCo env (`HalfCheetah-v5`, `Ant-v5`) and replaces its reward using
the velocities the base env reports in `info` (`x_velocity`, `y_velocity`: the displacement
of the cheetah's root or the ant's torso over one control step, divided by its duration), so
the physics stays Gymnasium's. This module imports MuJoCo (through the base env) only when an
env is made, never at `import metarl`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, SupportsFloat

import numpy as np

from metarl.envs.wrapper import TaskWrapper, make_base

CTRL_COST = 0.05
"""The control cost weight of the MAML cheetah tasks (Gymnasium's own is 0.1)."""


class Locomotion(TaskWrapper):
    """Shared step: the base env's transition, the family's reward."""

    default_base: str
    """The Gymnasium MuJoCo env the family wraps unless `base` is given."""
    default_params: dict[str, Any]
    default_task: dict[str, Any]

    def __init__(
        self,
        base: str | None = None,
        params: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(make_base(base or self.default_base, render_mode))
        self._init_tasks(params, self.default_params, self.family_name)
        self.set_task(self.default_task)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, base_reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "base_reward": float(base_reward)}
        return (
            observation,
            self.task_reward(np.asarray(action, dtype=np.float64), info),
            terminated,
            truncated,
            info,
        )

    def task_reward(self, action: np.ndarray, info: dict[str, Any]) -> float:
        raise NotImplementedError


class HalfCheetahVel(Locomotion):
    """Run at a goal forward velocity: reward = -|v_x - goal| - 0.05 |a|^2, goal ~ U[0, 2].

    Task `{"velocity": goal}`; a fresh env has goal 1.0.
    """

    family_name = "metarl/HalfCheetahVel-v0"
    default_base = "HalfCheetah-v5"
    default_params = {"velocity": {"uniform": [0.0, 2.0]}}
    default_task = {"velocity": 1.0}

    def task_reward(self, action: np.ndarray, info: dict[str, Any]) -> float:
        goal = self.task_value("velocity")
        speed_error = abs(float(info["x_velocity"]) - goal)
        return -speed_error - CTRL_COST * float(np.sum(np.square(action)))


class HalfCheetahDir(Locomotion):
    """Run forward or backward: reward = d * v_x - 0.05 |a|^2, d in {-1, +1}.

    Task `{"direction": d}`; a fresh env runs forward (+1).
    """

    family_name = "metarl/HalfCheetahDir-v0"
    default_base = "HalfCheetah-v5"
    default_params = {"direction": {"choice": [-1.0, 1.0]}}
    default_task = {"direction": 1.0}

    def task_reward(self, action: np.ndarray, info: dict[str, Any]) -> float:
        direction = self.task_value("direction")
        return direction * float(info["x_velocity"]) - CTRL_COST * float(np.sum(np.square(action)))


class AntDir(Locomotion):
    """Walk in a direction on the plane, an angle theta ~ U[0, 2 pi).

    reward = (v_x, v_y) . (cos theta, sin theta) + healthy reward - control cost - contact
    cost: Ant-v5's reward with its forward term replaced by the projected velocity, and its
    healthy reward, costs and termination kept. Task `{"direction": theta}` (radians); a fresh
    env walks along +x (theta = 0).
    """

    family_name = "metarl/AntDir-v0"
    default_base = "Ant-v5"
    default_params = {"direction": {"uniform": [0.0, 2 * math.pi]}}
    default_task = {"direction": 0.0}

    def task_reward(self, action: np.ndarray, info: dict[str, Any]) -> float:
        theta = self.task_value("direction")
        projected = math.cos(theta) * info["x_velocity"] + math.sin(theta) * info["y_velocity"]
        kept = info["reward_survive"] + info["reward_ctrl"] + info["reward_contact"]
        return float(projected + kept)
