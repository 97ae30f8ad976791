"""Batched V2 rewards of ML10's articulated skills: doors, drawers, a button, a window, a lever.

Each `Skill` here is one Meta-World v3 env's `_get_pos_objects` / `_get_quat_objects` /
`evaluate_state` over rows (the contract and the arithmetic helpers are
`metarl.envs.metaworld_rewards`'s), in Meta-World's operation order and types, so that
`tests/test_metaworld_vector.py` finds them equal to Meta-World's own env bit for bit.

What these skills add to the pick-and-place ones:

- Articulations: the door's and the lever's rewards read a joint angle (`Frame.joint_qpos`);
  the objects are a geom, a site or a body offset by a constant.
- dm_control's `gaussian` sigmoid (`metaworld_rewards.tolerance_gaussian`) beside the long-tail
  one.
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

from metarl.envs.metaworld_families import (
    Button,
    HandleSite,
    above_floor,
    floor_height,
    push_to_target,
)
from metarl.envs.metaworld_rewards import (
    Evaluation,
    Frame,
    Skill,
    flag,
    geom_object,
    hamacher_product,
    infos,
    norm,
    quaternion,
    tolerance_gaussian,
    tolerance_long_tail,
    with_quat,
    without_quat,
)


class DoorOpen(Skill):
    """`SawyerDoorEnvV3` (sawyer_door_v3.py): pull the door open by its handle."""

    name = "door-open-v3"
    geoms = ("handle",)
    joints = ("doorjoint",)

    def objects(self, frame: Frame) -> np.ndarray:
        return geom_object(frame, "handle")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        target = frame.consts["_target_pos"]
        theta = frame.joint_qpos("doorjoint")
        # `_reward_grab_effort`: in the action's dtype, then `float(...)`
        grab = ((np.clip(action[:, 3], -1, 1) + 1.0) / 2.0).astype(np.float64)

        # `_reward_pos`
        hand = obs[:, :3]
        door = obs[:, 4:7] + np.array([-0.05, 0, 0])
        threshold = 0.12
        floor = floor_height(norm(hand[:, :2] - door[:, :2]), threshold, 0.04, 0.4)
        in_place = tolerance_long_tail(
            norm(hand - door - np.array([0.05, 0.03, -0.01])), 0, threshold / 2.0, 0.5
        )
        ready_to_open = hamacher_product(above_floor(hand, floor), in_place)
        door_angle = -theta
        opened = 0.2 * flag(theta < -np.pi / 90.0) + 0.8 * tolerance_long_tail(
            np.pi / 2.0 + np.pi / 6 - door_angle, 0, 0.5, np.pi / 3.0
        )

        reward = 2.0 * hamacher_product(ready_to_open, grab) + 8.0 * opened
        success = np.abs(obs[:, 4] - target[:, 0]) <= 0.08
        reward = np.where(success, 10.0, reward)
        return reward, infos(reward, success, ready_to_open, grab >= 0.5, grab, opened, 0.0)


class DrawerClose(Skill):
    """`SawyerDrawerCloseEnvV3` (sawyer_drawer_close_v3.py): push the open drawer shut."""

    name = "drawer-close-v3"
    bodies = ("drawer_link",)
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    TARGET_RADIUS = 0.05

    def objects(self, frame: Frame) -> np.ndarray:
        return without_quat(frame.body("drawer_link") + np.array([0.0, -0.16, 0.05]))

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius = self.TARGET_RADIUS
        p = push_to_target(frame, obs[:, 4:7], frame.consts["obj_init_pos"], radius, 0.005)
        object_grasped, reward = p.closed_reach_reward(action)
        success = p.target_to_obj <= radius + 0.015
        reward = np.where(success, 10.0, reward)
        near_object = p.tcp_to_obj <= 0.01
        info = infos(reward, success, near_object, 1.0, object_grasped, p.in_place, p.target_to_obj)
        return reward, info


class ButtonPressTopdown(Button):
    """`SawyerButtonPressTopdownEnvV3` (sawyer_button_press_topdown_v3.py): pressed down,
    the gripper counted closed as `1 - obs[3]`."""

    name = "button-press-topdown-v3"
    OFFSET = np.array([0.0, 0.0, 0.193])
    AXIS, NEAR_RADIUS, SUCCESS_RADIUS = 2, 0.01, 0.024
    NEAR_WEIGHT, PRESS_WEIGHT, PRESS_FROM = 5, 5, 0.03

    def tcp_closed(self, obs: np.ndarray) -> np.ndarray:
        return 1 - obs[:, 3]


class WindowOpen(HandleSite):
    """`SawyerWindowOpenEnvV3` (sawyer_window_open_v3.py): slide the window open by its
    handle; the in-place margin starts from `obj_init_pos`."""

    name = "window-open-v3"
    sites = ("rightEndEffector", "leftEndEffector", "handleOpenStart")
    consts = ("_target_pos", "obj_init_pos", "init_tcp", "window_handle_pos_init")
    SITE, AXIS, TARGET_RADIUS = "handleOpenStart", 0, 0.05
    IN_PLACE_INIT, REACH_INIT = "obj_init_pos", "window_handle_pos_init"


class DrawerOpen(Skill):
    """`SawyerDrawerOpenEnvV3` (sawyer_drawer_open_v3.py): pull the drawer out by its handle."""

    name = "drawer-open-v3"
    bodies = ("drawer_link",)
    consts = ("_target_pos", "init_tcp", "maxDist")

    def objects(self, frame: Frame) -> np.ndarray:
        pos = frame.body("drawer_link") + np.array([0.0, -0.16, 0.0])
        return with_quat(pos, frame.body_quat("drawer_link"))

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
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
        success, near_object = handle_error <= 0.03, norm(handle - gripper) <= 0.03
        grasped = obs[:, 3] > 0
        return reward, infos(
            reward,
            success,
            near_object,
            grasped,
            reward_for_caging,
            reward_for_opening,
            handle_error,
        )


class DoorClose(Skill):
    """`SawyerDoorCloseEnvV3` (sawyer_door_close_v3.py): swing the open door shut. Its
    `hand_init_pos` is float32; subtracted from a float64 array it is widened exactly, as
    the captured constant is."""

    name = "door-close-v3"
    geoms = ("handle",)
    consts = ("_target_pos", "obj_init_pos", "hand_init_pos")

    def objects(self, frame: Frame) -> np.ndarray:
        return geom_object(frame, "handle")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
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
        return reward, infos(
            reward, obj_to_target <= 0.08, 0.0, 1.0, 1.0, hand_in_place, obj_to_target
        )


class LeverPull(Skill):
    """`SawyerLeverPullEnvV3` (sawyer_lever_pull_v3.py): lift the lever upright."""

    name = "lever-pull-v3"
    sites = ("rightEndEffector", "leftEndEffector", "leverStart")
    geoms = ("objGeom",)
    joints = ("LeverAxis",)
    consts = ("_target_pos", "init_tcp", "_lever_pos_init")

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(frame.site("leverStart"), quaternion(frame.geom_matrix("objGeom")))

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
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
        success, near_object = lever_error <= np.pi / 24, shoulder_to_lever < 0.03
        grasped = ready_to_lift > 0.9
        return reward, infos(
            reward,
            success,
            near_object,
            grasped,
            ready_to_lift,
            lever_engagement,
            shoulder_to_lever,
        )
