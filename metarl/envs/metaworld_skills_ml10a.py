"""Batched V2 rewards of ML10's articulated skills: doors, drawers, a button, a window, a lever.

Each `Skill` here is one Meta-World v3 env's `_get_pos_objects` / `_get_quat_objects` /
`evaluate_state` over rows (the contract and the arithmetic helpers are
`metarl.envs.metaworld_rewards`'s), in Meta-World's operation order and types, so that
`tests/test_metaworld_vector.py` finds them equal to Meta-World's own env bit for bit.

What these skills add to the pick-and-place ones:

- Articulations: the door's and the lever's rewards read a joint angle (`Frame.joint_qpos`);
  the objects are a geom, a site or a body offset by a constant.
- dm_control's `gaussian` sigmoid (`tolerance_gaussian`) beside the long-tail one.
- Float32 scalars from the action. Door-open's grab effort is `float((clip(a3) + 1.0) / 2.0)`
  computed on the action's float32 scalar, so it is a float32 value; drawer-close's
  `min(max(0, a3), 1)` is the float32 scalar itself where `0 < a3 <= 1`, which makes the
  Hamacher products after it float32 (NumPy promotion), and Python's int 0 or 1 elsewhere.
- Constants whose reset reads a state before the final `mj_forward` (window-open's
  `window_handle_pos_init`): captured per task from Meta-World's reset as the engine does for
  every constant, so they are the reset's values whatever state they came from.
"""

from __future__ import annotations

import numpy as np

from metarl.envs.metaworld_rewards import (
    Frame,
    Info,
    Skill,
    hamacher_product,
    hamacher_single,
    norm,
    quaternion,
    squared,
    tolerance_long_tail,
)

GAUSSIAN_SCALE = np.sqrt(-2 * np.log(0.1))
"""dm_control's `gaussian` sigmoid scale at Meta-World's value 0.1 at the margin (a NumPy
float64, as the scalar code computes it)."""


def tolerance_gaussian(
    x: np.ndarray, lower: float, upper: float, margin: np.ndarray | float
) -> np.ndarray:
    """`reward_utils.tolerance(x, bounds=(lower, upper), margin, sigmoid="gaussian")` per row;
    rows whose margin is 0 get 0 outside the bounds, as the scalar function does."""
    x = np.asarray(x, dtype=np.float64)
    margin = np.broadcast_to(np.asarray(margin, dtype=np.float64), x.shape)
    in_bounds = np.logical_and(lower <= x, x <= upper)
    safe = np.where(margin == 0, 1.0, margin)
    d = np.where(x < lower, lower - x, x - upper) / safe
    value = np.where(in_bounds, 1.0, np.exp(-0.5 * squared(d * GAUSSIAN_SCALE)))
    return np.where(margin == 0, np.where(in_bounds, 1.0, 0.0), value)


def abs_norm(x: np.ndarray) -> np.ndarray:
    """`np.linalg.norm` of one scalar per row: `sqrt(x . x)` (equal to |x|, kept literal)."""
    return np.sqrt(x * x)


def _flag(mask: np.ndarray) -> np.ndarray:
    return mask.astype(np.float64)


def _geom_object(frame: Frame, geom: str) -> np.ndarray:
    """A geom's position and the quaternion of its frame (`Rotation.from_matrix(xmat)`)."""
    return np.concatenate([frame.geom(geom), quaternion(frame.geom_matrix(geom))], axis=1)


def _without_quat(pos: np.ndarray) -> np.ndarray:
    """A position with the zero quaternion of envs whose `_get_quat_objects` is zeros(4)."""
    return np.concatenate([pos, np.zeros((len(pos), 4))], axis=1)


class DoorOpen(Skill):
    """`SawyerDoorEnvV3` (sawyer_door_v3.py): pull the door open by its handle."""

    name = "door-open-v3"
    geoms = ("handle",)
    joints = ("doorjoint",)
    consts = ("_target_pos",)

    def objects(self, frame: Frame) -> np.ndarray:
        return _geom_object(frame, "handle")

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        target = frame.consts["_target_pos"]
        theta = frame.joint_qpos("doorjoint")
        # `_reward_grab_effort`: in the action's dtype, then `float(...)`
        grab = ((np.clip(action[:, 3], -1, 1) + 1.0) / 2.0).astype(np.float64)

        # `_reward_pos`
        hand = obs[:, :3]
        door = obs[:, 4:7] + np.array([-0.05, 0, 0])
        threshold = 0.12
        radius = norm(hand[:, :2] - door[:, :2])
        beyond = radius > threshold
        log = np.log(np.where(beyond, radius - threshold, 1.0))
        floor = np.where(beyond, 0.04 * log + 0.4, 0.0)
        below = hand[:, 2] < floor
        tolerated = tolerance_long_tail(
            np.where(below, floor - hand[:, 2], 0.0), 0.0, 0.01, np.where(below, floor / 2.0, 1.0)
        )
        above_floor = np.where(below, tolerated, 1.0)
        in_place = tolerance_long_tail(
            norm(hand - door - np.array([0.05, 0.03, -0.01])), 0, threshold / 2.0, 0.5
        )
        ready_to_open = hamacher_product(above_floor, in_place)
        door_angle = -theta
        opened = 0.2 * _flag(theta < -np.pi / 90.0) + 0.8 * tolerance_long_tail(
            np.pi / 2.0 + np.pi / 6 - door_angle, 0, 0.5, np.pi / 3.0
        )

        reward = 2.0 * hamacher_product(ready_to_open, grab) + 8.0 * opened
        success = np.abs(obs[:, 4] - target[:, 0]) <= 0.08
        reward = np.where(success, 10.0, reward)
        info = {
            "success": _flag(success),
            "near_object": ready_to_open,
            "grasp_success": _flag(grab >= 0.5),
            "grasp_reward": grab,
            "in_place_reward": opened,
            "obj_to_target": np.zeros_like(reward),
            "unscaled_reward": reward,
        }
        return reward, info


def _gripper_closed(action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`min(max(0, action[-1]), 1)` per row (float64 values) and the mask of the rows where
    that is the action's own float32 scalar (`0 < a <= 1`), so products with it are float32."""
    effort = action[:, -1]
    closed = np.minimum(np.maximum(0, effort.astype(np.float64)), 1)
    single = (effort > 0) & (effort <= 1) & (effort.dtype == np.float32)
    return closed, single


class DrawerClose(Skill):
    """`SawyerDrawerCloseEnvV3` (sawyer_drawer_close_v3.py): push the open drawer shut."""

    name = "drawer-close-v3"
    bodies = ("drawer_link",)
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    TARGET_RADIUS = 0.05

    def objects(self, frame: Frame) -> np.ndarray:
        return _without_quat(frame.body("drawer_link") + np.array([0.0, -0.16, 0.05]))

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        radius = self.TARGET_RADIUS
        obj, tcp = obs[:, 4:7], frame.tcp_center
        target, obj_init = frame.consts["_target_pos"], frame.consts["obj_init_pos"]
        target_to_obj = norm(obj - target)
        target_to_obj_init = norm(obj_init - target)
        in_place = tolerance_long_tail(
            target_to_obj, 0, radius, np.abs(target_to_obj_init - radius)
        )
        handle_reach_radius = 0.005
        tcp_to_obj = norm(obj - tcp)
        tcp_to_obj_init = norm(obj_init - frame.consts["init_tcp"])
        reach = tolerance_gaussian(
            tcp_to_obj, 0, handle_reach_radius, np.abs(tcp_to_obj_init - handle_reach_radius)
        )
        closed, single = _gripper_closed(action)
        reach64 = hamacher_product(reach, closed)
        reward64 = hamacher_product(reach64, in_place)
        # float32 rows: both products, then `reward *= 10`, in float32
        reach32 = hamacher_single(reach, action[:, -1])
        reward32 = hamacher_single(reach32, in_place)
        object_grasped = np.where(single, reach32.astype(np.float64), reach64)
        success = target_to_obj <= radius + 0.015
        reward = np.where(single, (reward32 * np.float32(10)).astype(np.float64), reward64 * 10)
        reward = np.where(success, 10.0, reward)
        info = {
            "success": _flag(success),
            "near_object": _flag(tcp_to_obj <= 0.01),
            "grasp_success": np.ones_like(reward),
            "grasp_reward": object_grasped,
            "in_place_reward": in_place,
            "obj_to_target": target_to_obj,
            "unscaled_reward": reward,
        }
        return reward, info


class ButtonPressTopdown(Skill):
    """`SawyerButtonPressTopdownEnvV3` (sawyer_button_press_topdown_v3.py)."""

    name = "button-press-topdown-v3"
    bodies = ("button",)
    consts = ("_target_pos", "init_tcp", "_obj_to_target_init")

    def objects(self, frame: Frame) -> np.ndarray:
        pos = frame.body("button") + np.array([0.0, 0.0, 0.193])
        return np.concatenate([pos, frame.body_quat("button")], axis=1)

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        obj, tcp = obs[:, 4:7], frame.tcp_center
        target = frame.consts["_target_pos"]
        tcp_to_obj = norm(obj - tcp)
        tcp_to_obj_init = norm(obj - frame.consts["init_tcp"])
        obj_to_target = np.abs(target[:, 2] - obj[:, 2])
        tcp_closed = 1 - obs[:, 3]
        near_button = tolerance_long_tail(tcp_to_obj, 0, 0.01, tcp_to_obj_init)
        button_pressed = tolerance_long_tail(
            obj_to_target, 0, 0.005, frame.consts["_obj_to_target_init"]
        )
        reward = 5 * hamacher_product(tcp_closed, near_button)
        reward = np.where(tcp_to_obj <= 0.03, reward + 5 * button_pressed, reward)
        info = {
            "success": _flag(obj_to_target <= 0.024),
            "near_object": _flag(tcp_to_obj <= 0.05),
            "grasp_success": _flag(obs[:, 3] > 0),
            "grasp_reward": near_button,
            "in_place_reward": button_pressed,
            "obj_to_target": obj_to_target,
            "unscaled_reward": reward,
        }
        return reward, info


class WindowOpen(Skill):
    """`SawyerWindowOpenEnvV3` (sawyer_window_open_v3.py): slide the window open by its
    handle. The reward reads the handle site itself, not the observation."""

    name = "window-open-v3"
    sites = ("rightEndEffector", "leftEndEffector", "handleOpenStart")
    consts = ("_target_pos", "obj_init_pos", "init_tcp", "window_handle_pos_init")
    TARGET_RADIUS = 0.05

    def objects(self, frame: Frame) -> np.ndarray:
        return _without_quat(frame.site("handleOpenStart"))

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        radius = self.TARGET_RADIUS
        obj, tcp = frame.site("handleOpenStart"), frame.tcp_center
        target = frame.consts["_target_pos"]
        target_to_obj = abs_norm(obj[:, 0] - target[:, 0])
        target_to_obj_init = abs_norm(frame.consts["obj_init_pos"][:, 0] - target[:, 0])
        in_place = tolerance_long_tail(
            target_to_obj, 0, radius, np.abs(target_to_obj_init - radius)
        )
        handle_radius = 0.02
        tcp_to_obj = norm(obj - tcp)
        tcp_to_obj_init = norm(frame.consts["window_handle_pos_init"] - frame.consts["init_tcp"])
        reach = tolerance_long_tail(
            tcp_to_obj, 0, handle_radius, np.abs(tcp_to_obj_init - handle_radius)
        )
        reward = 10 * hamacher_product(reach, in_place)
        info = {
            "success": _flag(target_to_obj <= radius),
            "near_object": _flag(tcp_to_obj <= 0.05),
            "grasp_success": np.ones_like(reward),
            "grasp_reward": reach,
            "in_place_reward": in_place,
            "obj_to_target": target_to_obj,
            "unscaled_reward": reward,
        }
        return reward, info


class DrawerOpen(Skill):
    """`SawyerDrawerOpenEnvV3` (sawyer_drawer_open_v3.py): pull the drawer out by its handle."""

    name = "drawer-open-v3"
    bodies = ("drawer_link",)
    consts = ("_target_pos", "init_tcp", "maxDist")

    def objects(self, frame: Frame) -> np.ndarray:
        pos = frame.body("drawer_link") + np.array([0.0, -0.16, 0.0])
        return np.concatenate([pos, frame.body_quat("drawer_link")], axis=1)

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        max_dist = frame.consts["maxDist"]
        target = frame.consts["_target_pos"]
        gripper, handle = obs[:, :3], obs[:, 4:7]
        handle_error = norm(handle - target)
        reward_for_opening = tolerance_long_tail(handle_error, 0, 0.02, max_dist)
        offset = np.zeros_like(target)
        offset[:, 1] = max_dist
        handle_pos_init = target + offset
        scale = np.array([3.0, 3.0, 1.0])
        gripper_error = (handle - gripper) * scale
        gripper_error_init = (handle_pos_init - frame.consts["init_tcp"]) * scale
        reward_for_caging = tolerance_long_tail(
            norm(gripper_error), 0, 0.01, norm(gripper_error_init)
        )
        reward = reward_for_caging + reward_for_opening
        reward = reward * 5.0
        info = {
            "success": _flag(handle_error <= 0.03),
            "near_object": _flag(norm(handle - gripper) <= 0.03),
            "grasp_success": _flag(obs[:, 3] > 0),
            "grasp_reward": reward_for_caging,
            "in_place_reward": reward_for_opening,
            "obj_to_target": handle_error,
            "unscaled_reward": reward,
        }
        return reward, info


class DoorClose(Skill):
    """`SawyerDoorCloseEnvV3` (sawyer_door_close_v3.py): swing the open door shut. Its
    `hand_init_pos` is float32; subtracted from a float64 array it is widened exactly, as
    the captured constant is."""

    name = "door-close-v3"
    geoms = ("handle",)
    consts = ("_target_pos", "obj_init_pos", "hand_init_pos")

    def objects(self, frame: Frame) -> np.ndarray:
        return _geom_object(frame, "handle")

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        target_radius = 0.05
        tcp, obj = frame.tcp_center, obs[:, 4:7]
        target = frame.consts["_target_pos"]
        tcp_to_target = norm(tcp - target)
        obj_to_target = norm(obj - target)
        in_place_margin = norm(frame.consts["obj_init_pos"] - target)
        in_place = tolerance_gaussian(obj_to_target, 0, target_radius, in_place_margin)
        hand_margin = norm(frame.consts["hand_init_pos"] - obj) + 0.1
        hand_in_place = tolerance_gaussian(tcp_to_target, 0, 0.25 * target_radius, hand_margin)
        reward = 3 * hand_in_place + 6 * in_place
        reward = np.where(obj_to_target < target_radius, 10.0, reward)
        info = {
            "obj_to_target": obj_to_target,
            "in_place_reward": hand_in_place,
            "success": _flag(obj_to_target <= 0.08),
            "near_object": np.zeros_like(reward),
            "grasp_success": np.ones_like(reward),
            "grasp_reward": np.ones_like(reward),
            "unscaled_reward": reward,
        }
        return reward, info


class LeverPull(Skill):
    """`SawyerLeverPullEnvV3` (sawyer_lever_pull_v3.py): lift the lever upright."""

    name = "lever-pull-v3"
    sites = ("rightEndEffector", "leftEndEffector", "leverStart")
    geoms = ("objGeom",)
    joints = ("LeverAxis",)
    consts = ("_target_pos", "init_tcp", "_lever_pos_init")

    def objects(self, frame: Frame) -> np.ndarray:
        quat = quaternion(frame.geom_matrix("objGeom"))
        return np.concatenate([frame.site("leverStart"), quat], axis=1)

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        gripper, lever = obs[:, :3], obs[:, 4:7]
        lever_pos_init = frame.consts["_lever_pos_init"]
        scale = np.array([4.0, 1.0, 4.0])
        offset = np.array([0.0, 0.055, 0.07])
        shoulder_to_lever = norm((gripper + offset - lever) * scale)
        shoulder_to_lever_init = norm((frame.consts["init_tcp"] + offset - lever_pos_init) * scale)
        ready_to_lift = tolerance_long_tail(shoulder_to_lever, 0, 0.02, shoulder_to_lever_init)
        lever_angle = -frame.joint_qpos("LeverAxis")
        lever_error = np.abs(lever_angle - np.pi / 2.0)
        lever_engagement = tolerance_long_tail(
            lever_error, 0, np.pi / 48.0, (np.pi / 2.0) - (np.pi / 12.0)
        )
        target = frame.consts["_target_pos"]
        obj_to_target = norm(lever - target)
        in_place_margin = norm(lever_pos_init - target)
        in_place = tolerance_long_tail(obj_to_target, 0, 0.04, in_place_margin)
        reward = 10.0 * hamacher_product(ready_to_lift, in_place)
        info = {
            "success": _flag(lever_error <= np.pi / 24),
            "near_object": _flag(shoulder_to_lever < 0.03),
            "grasp_success": _flag(ready_to_lift > 0.9),
            "grasp_reward": ready_to_lift,
            "in_place_reward": lever_engagement,
            "obj_to_target": shoulder_to_lever,
            "unscaled_reward": reward,
        }
        return reward, info


ML10_SKILLS_A: tuple[type[Skill], ...] = (
    DoorOpen,
    DrawerClose,
    ButtonPressTopdown,
    WindowOpen,
    DrawerOpen,
    DoorClose,
    LeverPull,
)
"""The skills of this module that pass the bit-for-bit test (registered in
`metarl.envs.metaworld_skills`)."""

__all__ = ["ML10_SKILLS_A", "tolerance_gaussian"]
