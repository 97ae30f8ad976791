"""Families of Meta-World skills whose V2 rewards are one computation with other numbers.

Meta-World writes each skill's `evaluate_state` in full, so skills built on one fixture repeat
one another with other constants: the handle skills (window-open, window-close, handle-press
and its side variant) drive a handle site along one axis; the button skills (five of them)
press a button along one axis with their own weights; the two lock skills observe the lock's
site on the door. Here each family is one `Skill` base whose class attributes are what
differs; a skill of the family (in the `metaworld_skills_*` modules) is its parameters. Also
here: the terms several skills of different families share (a fixture pushed to its target
and the hand's reach to it, `push_to_target`; the reach that a closed gripper scales; the
floor that keeps the hand above a fixture).

The arithmetic is `metarl.envs.metaworld_rewards`'s, in Meta-World's operation order, so the
skills stay equal to Meta-World's own env bit for bit (`tests/test_metaworld_vector.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, NamedTuple

import numpy as np

from metarl.envs.metaworld_rewards import (
    Evaluation,
    Frame,
    Skill,
    abs_norm,
    hamacher_product,
    hamacher_single,
    infos,
    norm,
    tolerance_gaussian,
    tolerance_long_tail,
    with_quat,
    without_quat,
)


def closed_reach_reward(
    reach: np.ndarray, in_place: np.ndarray, action: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drawer-close's and dial-turn's reward: `reach` scaled by the closed gripper
    (`hamacher(reach, min(max(0, a3), 1))`), then by `in_place`, times 10. Where `0 < a3 <= 1`
    the closing is the action's own float32 scalar, so both products and the scaling are
    float32 (NumPy promotion); elsewhere Python's 0 or 1 keeps them float64. Returns
    `object_grasped` (the first product) and the reward."""
    effort = action[:, -1]
    closed = np.minimum(np.maximum(0, effort.astype(np.float64)), 1)
    single = (effort > 0) & (effort <= 1) & (effort.dtype == np.float32)
    reach64 = hamacher_product(reach, closed)
    reward64 = 10 * hamacher_product(reach64, in_place)
    reach32 = hamacher_single(reach, effort)
    reward32 = hamacher_single(reach32, in_place) * np.float32(10)
    object_grasped = np.where(single, reach32.astype(np.float64), reach64)
    return object_grasped, np.where(single, reward32.astype(np.float64), reward64)


def tolerance_past_radius(
    distance: np.ndarray,
    initial: np.ndarray,
    radius: float,
    sigmoid: Callable[..., np.ndarray] = tolerance_long_tail,
) -> np.ndarray:
    """`tolerance(distance, bounds=(0, radius), margin=abs(initial - radius))`: 1 within
    `radius`, the margin how far the reset's distance `initial` was from the radius. The
    in-place and reach terms of the fixtures moved to a target (handles, drawer-close, the
    dial, the faucets); `sigmoid` is `tolerance_long_tail` or `tolerance_gaussian`."""
    return sigmoid(distance, 0, radius, np.abs(initial - radius))


class Pushed(NamedTuple):
    """The terms of a fixture the hand pushes to a target (`push_to_target`), per row."""

    target_to_obj: np.ndarray
    in_place: np.ndarray
    tcp_to_obj: np.ndarray
    reach: np.ndarray

    def closed_reach_reward(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drawer-close's and dial-turn's reward of these terms (`closed_reach_reward`)."""
        return closed_reach_reward(self.reach, self.in_place, action)


def push_to_target(
    frame: Frame,
    obj: np.ndarray,
    start: np.ndarray,
    radius: float,
    reach_radius: float,
    push_point: np.ndarray | None = None,
) -> Pushed:
    """Drawer-close's, the dial's and the faucets' terms: `in_place`, the fixture `obj` within
    `radius` of `_target_pos` (long tail), and `reach`, the hand at `push_point` (default
    `obj`) within `reach_radius` (gaussian); both margins measured from `start`, the reset's
    position of the fixture."""
    target, tcp_to = frame.consts["_target_pos"], obj if push_point is None else push_point
    target_to_obj = norm(obj - target)
    in_place = tolerance_past_radius(target_to_obj, norm(start - target), radius)
    tcp_to_obj = norm(tcp_to - frame.tcp_center)
    tcp_to_obj_init = norm(start - frame.consts["init_tcp"])
    reach = tolerance_past_radius(tcp_to_obj, tcp_to_obj_init, reach_radius, tolerance_gaussian)
    return Pushed(target_to_obj, in_place, tcp_to_obj, reach)


def floor_height(
    radius: np.ndarray, threshold: np.ndarray | float, scale: float, offset: float
) -> np.ndarray:
    """The funnel-shaped floor of the `_reward_pos` rewards: `scale * log(radius - threshold)
    + offset` beyond `threshold` from the fixture's axis, 0 within it."""
    beyond = radius > threshold
    log = np.log(np.where(beyond, radius - threshold, 1.0))
    return np.where(beyond, scale * log + offset, 0.0)


def above_floor(hand: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Door-open's and box-close's `above_floor`: 1 above the floor, else a long-tail
    tolerance of the depth below it with half the floor's height as margin."""
    below = hand[:, 2] < floor
    tolerated = tolerance_long_tail(
        np.where(below, floor - hand[:, 2], 0.0), 0.0, 0.01, np.where(below, floor / 2.0, 1.0)
    )
    return np.where(below, tolerated, 1.0)


class HandleSite(Skill):
    """Window-open, window-close, handle-press, handle-press-side: the hand reaches a handle
    site (observed without a quaternion) and moves it along `AXIS` to the target; the reward
    reads the site itself, not the (clipped) observation."""

    SITE: ClassVar[str]
    AXIS: ClassVar[int]
    """The coordinate the handle travels along (0: x for the windows, 2: z for the handles)."""
    TARGET_RADIUS: ClassVar[float]
    IN_PLACE_INIT: ClassVar[str]
    """The constant whose `AXIS` coordinate starts the in-place margin."""
    REACH_INIT: ClassVar[str]
    """The constant the hand's reach margin is measured from (to `init_tcp`)."""
    GAUSSIAN_REACH: ClassVar[bool] = False
    """The reach's sigmoid: gaussian (window-close), else long-tail."""
    CAPPED: ClassVar[bool] = False
    """Reward 10 once the handle is within the target radius (the handle presses)."""

    def objects(self, frame: Frame) -> np.ndarray:
        return without_quat(frame.site(self.SITE))

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius, axis = self.TARGET_RADIUS, self.AXIS
        obj, tcp = frame.site(self.SITE), frame.tcp_center
        target = frame.consts["_target_pos"]
        target_to_obj = abs_norm(obj[:, axis] - target[:, axis])
        target_to_obj_init = abs_norm(frame.consts[self.IN_PLACE_INIT][:, axis] - target[:, axis])
        in_place = tolerance_past_radius(target_to_obj, target_to_obj_init, radius)
        handle_radius = 0.02
        tcp_to_obj = norm(obj - tcp)
        tcp_to_obj_init = norm(frame.consts[self.REACH_INIT] - frame.consts["init_tcp"])
        tolerance = tolerance_gaussian if self.GAUSSIAN_REACH else tolerance_long_tail
        reach = tolerance_past_radius(tcp_to_obj, tcp_to_obj_init, handle_radius, tolerance)
        reward = 10 * hamacher_product(reach, in_place)
        if self.CAPPED:
            reward = np.where(target_to_obj <= radius, 10.0, reward)
        return reward, infos(
            reward, target_to_obj <= radius, tcp_to_obj <= 0.05, 1.0, reach, in_place, target_to_obj
        )


class DoorLockSite(Skill):
    """Door-lock and door-unlock: the observed object is the lock's start site (the skill's
    last site) with the door's quaternion."""

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(frame.site(self.sites[-1]), frame.body_quat("door_link"))


class Button(Skill):
    """The button skills: the hand nears the button (observed as the button body moved by
    `OFFSET`) and presses it along `AXIS`; the reward is `NEAR_WEIGHT * hamacher(closed,
    near)`, plus `PRESS_WEIGHT * pressed` within `PRESS_FROM` of the button."""

    bodies: ClassVar[tuple[str, ...]] = ("button",)
    consts: ClassVar[tuple[str, ...]] = ("_target_pos", "init_tcp", "_obj_to_target_init")
    OFFSET: ClassVar[np.ndarray] = np.array([0.0, -0.193, 0.0])
    AXIS: ClassVar[int] = 1
    NEAR_RADIUS: ClassVar[float] = 0.05
    PRESS_MARGIN: ClassVar[str] = "_obj_to_target_init"
    """The constant that is the press tolerance's margin."""
    NEAR_WEIGHT: ClassVar[int] = 2
    PRESS_WEIGHT: ClassVar[int] = 8
    PRESS_FROM: ClassVar[float] = 0.05
    SUCCESS_RADIUS: ClassVar[float] = 0.02

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(frame.body("button") + self.OFFSET, frame.body_quat("button"))

    def tcp_closed(self, obs: np.ndarray) -> np.ndarray:
        """How closed the gripper counts as: `max(obs[3], 0.0)` (button-press-topdown's own
        is `1 - obs[3]`)."""
        return np.maximum(obs[:, 3], 0.0)

    def reward(
        self, obs: np.ndarray, tcp_to_obj: np.ndarray, near: np.ndarray, pressed: np.ndarray
    ) -> np.ndarray:
        reward = self.NEAR_WEIGHT * hamacher_product(self.tcp_closed(obs), near)
        return np.where(tcp_to_obj <= self.PRESS_FROM, reward + self.PRESS_WEIGHT * pressed, reward)

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        obj, axis = obs[:, 4:7], self.AXIS
        tcp_to_obj = norm(obj - frame.tcp_center)
        tcp_to_obj_init = norm(obj - frame.consts["init_tcp"])
        obj_to_target = np.abs(frame.consts["_target_pos"][:, axis] - obj[:, axis])
        near = tolerance_long_tail(tcp_to_obj, 0, self.NEAR_RADIUS, tcp_to_obj_init)
        pressed = tolerance_long_tail(obj_to_target, 0, 0.005, frame.consts[self.PRESS_MARGIN])
        reward = self.reward(obs, tcp_to_obj, near, pressed)
        success, near_object = obj_to_target <= self.SUCCESS_RADIUS, tcp_to_obj <= 0.05
        grasped = obs[:, 3] > 0
        return reward, infos(reward, success, near_object, grasped, near, pressed, obj_to_target)


__all__ = [
    "Button",
    "DoorLockSite",
    "HandleSite",
    "Pushed",
    "above_floor",
    "closed_reach_reward",
    "floor_height",
    "push_to_target",
    "tolerance_past_radius",
]
