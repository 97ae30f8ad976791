"""The families' own episode metrics (`metarl.protocol.ReportsEpisodes`), from what their
envs' infos said over each first episode of a rollout.

- locomotion (`x_velocity`, and `y_velocity` on a plane): the mean forward velocity and,
  where the tasks ask for a `direction` (HalfCheetahDir's +-1, AntDir's angle), the velocity
  along it and whether the episode went that way: "runs the asked way" measured, not read
  off the sign of a return that includes control costs;
- success (`success`, Meta-World's criterion): whether the episode succeeded at any step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from metarl.protocol import FirstEpisodes, ParametrizedTask

LOCOMOTION_INFO = ("x_velocity", "y_velocity")
"""The info keys a locomotion env reports each step (the y velocity only on a plane)."""
SUCCESS_INFO = ("success",)


def velocity_asked_way(
    velocities: np.ndarray, tasks: Sequence[Any], y_velocities: np.ndarray | None = None
) -> np.ndarray | None:
    """`[..., tasks, envs]`: each episode's mean velocity along its task's `direction` (m/s;
    negative: the other way). On a line (HalfCheetahDir, no `y_velocities`) the direction is
    +-1 and this is the forward velocity times it; on a plane (AntDir) it is an angle theta
    and this is the mean velocity's component along (cos theta, sin theta). None when the
    tasks have no direction (the other families). Where the tasks ask for different
    directions, the mean forward velocity over tasks says little (the two ways cancel); this
    says how fast they run the way each was asked."""
    directions = [
        task.params.get("direction") if isinstance(task, ParametrizedTask) else None
        for task in tasks
    ]
    if not all(isinstance(d, int | float) and not isinstance(d, bool) for d in directions):
        return None
    wanted = np.asarray(directions, dtype=float)[:, None]
    if y_velocities is not None:
        return np.cos(wanted) * velocities + np.sin(wanted) * y_velocities
    if not np.isin(wanted, (-1.0, 1.0)).all():
        return None
    return wanted * velocities


def runs_asked_way(
    velocities: np.ndarray, tasks: Sequence[Any], y_velocities: np.ndarray | None = None
) -> np.ndarray | None:
    """`[..., tasks, envs]`: 1.0 where an episode went its task's `direction`, else 0.0: its
    `velocity_asked_way` is positive (on a line the mean forward velocity has the
    direction's sign; on a plane the mean velocity points within 90 degrees of it). None
    when the tasks have no direction."""
    along = velocity_asked_way(velocities, tasks, y_velocities)
    return None if along is None else (along > 0).astype(float)


def locomotion_metrics(tasks: Sequence[Any], first: FirstEpisodes) -> dict[str, np.ndarray]:
    """`forward_velocity` where the envs report `x_velocity`, and with a `direction` per
    task `velocity_asked_way` and `runs_asked_way`; nothing for envs that report no
    velocity."""
    if "x_velocity" not in first.means:
        return {}
    vx = first.means["x_velocity"]
    out = {"forward_velocity": vx}
    along = velocity_asked_way(vx, tasks, first.means.get("y_velocity"))
    if along is not None:
        out["velocity_asked_way"] = along
        out["runs_asked_way"] = (along > 0).astype(float)
    return out


def success_metrics(tasks: Sequence[Any], first: FirstEpisodes) -> dict[str, np.ndarray]:
    """`success`: 1.0 where the episode succeeded at any step (where the envs report it)."""
    return {"success": first.ever["success"]} if "success" in first.ever else {}


__all__ = [
    "LOCOMOTION_INFO",
    "SUCCESS_INFO",
    "locomotion_metrics",
    "runs_asked_way",
    "success_metrics",
    "velocity_asked_way",
]
