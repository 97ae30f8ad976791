"""Batched V2 rewards of ML45 skills: two bins, buttons, a lock, a box lid, the coffee
machine, a dial and the nut-and-peg pair.

Each `Skill` here is one Meta-World v3 env's `_get_pos_objects` / `_get_quat_objects` /
`evaluate_state` over rows (the contract and the arithmetic helpers are
`metarl.envs.metaworld_rewards`'s and `metarl.envs.metaworld_families`'s), in
Meta-World's operation order and types, so that `tests/test_metaworld_vector.py` finds them
equal to Meta-World's own env bit for bit.

What these skills add:

- The caging reward of `SawyerXYZEnv._gripper_caging_reward` with a desired gripper effort
  below 1 and with its medium density (`metaworld_rewards.gripper_caging_reward`):
  `min(max(0, a), d) / d` is the action's float32 scalar divided in float32 where
  `0 < a <= d`, so everything after it is float32 there.
- Norms of quaternion differences (4-vectors), taken row by row with `np.linalg.norm` itself
  (`metaworld_rewards.norm4`): its sum order for 4 values is not the 3-vector one.
- Live views: door-lock's `init_left_pad` is `data.xpos`'s row of the left pad, so its
  "initial" distance is the current one; bin-picking's `_target_pos` is the goal bin's.
- State set by the reward: bin-picking's in-place margin is the first step's distance of each
  episode (`Frame.elapsed` says which rows are on their first step).
"""

from __future__ import annotations

import numpy as np

from metarl.envs.metaworld_families import (
    Button,
    DoorLockSite,
    above_floor,
    floor_height,
    push_to_target,
)
from metarl.envs.metaworld_rewards import (
    Evaluation,
    Frame,
    Info,
    OneObject,
    Skill,
    body_object,
    flag,
    gripper_caging_reward,
    hamacher_product,
    hamacher_typed,
    infos,
    lifted_in_grip,
    norm,
    norm4,
    plus_bonus,
    squared,
    tolerance_long_tail,
    with_quat,
)

F32 = np.float32


# -- buttons (`metaworld_families.Button`) ----------------------------------------------------


class ButtonPressTopdownWall(Button):
    """`SawyerButtonPressTopdownWallEnvV3` (sawyer_button_press_topdown_wall_v3.py)."""

    name = "button-press-topdown-wall-v3"
    OFFSET = np.array([0.0, 0.0, 0.193])
    AXIS, NEAR_RADIUS, SUCCESS_RADIUS = 2, 0.01, 0.024
    NEAR_WEIGHT, PRESS_WEIGHT, PRESS_FROM = 5, 5, 0.03


class ButtonPress(Button):
    """`SawyerButtonPressEnvV3` (sawyer_button_press_v3.py)."""

    name = "button-press-v3"


class ButtonPressWall(Button):
    """`SawyerButtonPressWallEnvV3` (sawyer_button_press_wall_v3.py): a reward of its own
    form, by whether the hand is within 0.07 of the button."""

    name = "button-press-wall-v3"
    NEAR_RADIUS, SUCCESS_RADIUS = 0.01, 0.03

    def reward(
        self, obs: np.ndarray, tcp_to_obj: np.ndarray, near: np.ndarray, pressed: np.ndarray
    ) -> np.ndarray:
        far = 2 * hamacher_product((1 - obs[:, 3]) / 2.0, near)
        close = 2 + 2 * (1 + obs[:, 3]) + 4 * squared(pressed)
        return np.where(tcp_to_obj > 0.07, far, close)


class CoffeeButton(Button):
    """`SawyerCoffeeButtonEnvV3` (sawyer_coffee_button_v3.py): the object is a site and its
    quaternion the constant (1, 0, 0, 0); the press margin is the env's `max_dist`."""

    name = "coffee-button-v3"
    bodies = ()
    sites = ("rightEndEffector", "leftEndEffector", "buttonStart")
    consts = ("_target_pos", "init_tcp", "max_dist")
    PRESS_MARGIN = "max_dist"

    def objects(self, frame: Frame) -> np.ndarray:
        pos = frame.site("buttonStart")
        return with_quat(pos, np.broadcast_to(np.array([1.0, 0.0, 0.0, 0.0]), (len(pos), 4)))


class DoorLock(DoorLockSite):
    """`SawyerDoorLockEnvV3` (sawyer_door_lock_v3.py): press the lock down. Its reach is
    measured from the left pad, and its `init_left_pad` is a live view of that pad, so the
    reach margin is the current distance itself."""

    name = "door-lock-v3"
    bodies = ("leftpad", "door_link")
    sites = ("rightEndEffector", "leftEndEffector", "lockStartLock")
    consts = ("_target_pos", "_lock_length")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        obj = obs[:, 4:7]
        scale = np.array([0.25, 1.0, 0.5])
        tcp_to_obj = norm((obj - frame.body("leftpad")) * scale)
        obj_to_target = np.abs(frame.consts["_target_pos"][:, 2] - obj[:, 2])
        tcp_opened = np.maximum(obs[:, 3], 0.0)
        near_lock = tolerance_long_tail(tcp_to_obj, 0, 0.01, tcp_to_obj)
        lock_pressed = tolerance_long_tail(obj_to_target, 0, 0.005, frame.consts["_lock_length"])
        reward = 2 * hamacher_product(tcp_opened, near_lock)
        reward = reward + 8 * lock_pressed
        success, near_object = obj_to_target <= 0.02, tcp_to_obj <= 0.05
        grasped = obs[:, 3] > 0
        return reward, infos(
            reward, success, near_object, grasped, near_lock, lock_pressed, obj_to_target
        )


# -- a lid and a dial -------------------------------------------------------------------------


def _quat_reward(obs: np.ndarray, scale: float) -> np.ndarray:
    """`max(1.0 - error / scale, 0.0)`, error the distance of the quaternion to upright."""
    error = norm4(obs[:, 7:11] - np.array([0.707, 0, 0, 0.707]))
    return np.maximum(1.0 - error / scale, 0.0)


class BoxClose(Skill):
    """`SawyerBoxCloseEnvV3` (sawyer_box_close_v3.py): lift the lid onto the box. The grab
    effort is computed in the action's dtype, then `float(...)`."""

    name = "box-close-v3"
    bodies = ("top_link",)

    def objects(self, frame: Frame) -> np.ndarray:
        return body_object(frame, "top_link")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        target = frame.consts["_target_pos"]
        effort = action[:, 3]
        grab = np.clip((np.clip(effort, -1, 1) + 1.0) / 2.0, 0.0, 1.0).astype(np.float64)
        quat = _quat_reward(obs, 0.2)

        # `_reward_pos`
        hand = obs[:, :3]
        lid = obs[:, 4:7] + np.array([0.0, 0.0, 0.02])
        floor = floor_height(norm(hand[:, :2] - lid[:, :2]), 0.02, 0.04, 0.4)
        in_place = tolerance_long_tail(norm(hand - lid), 0, 0.02, 0.5)
        ready_to_lift = hamacher_product(above_floor(hand, floor), in_place)
        pos_error = target - lid
        lifted = 0.2 * flag(lid[:, 2] > 0.04) + 0.8 * tolerance_long_tail(
            norm(pos_error * np.array([1.0, 1.0, 3.0])), 0, 0.05, 0.25
        )

        reward = 2.0 * hamacher_product(grab, ready_to_lift) + 8.0 * lifted
        success = norm(obs[:, 4:7] - target) < 0.08
        reward = np.where(success, 10.0, reward)
        reward = reward * quat
        return reward, infos(reward, success, ready_to_lift, grab >= 0.5, grab, lifted, 0.0)


class DialTurn(Skill):
    """`SawyerDialTurnEnvV3` (sawyer_dial_turn_v3.py): push the dial's knob round. The
    object is a point on the dial's rim at the knob joint's angle; the gripper effort enters
    the reach as drawer-close's does (`metaworld_families.closed_reach_reward`)."""

    name = "dial-turn-v3"
    bodies = ("dial",)
    joints = ("knob_Joint_1",)
    consts = ("_target_pos", "init_tcp", "dial_push_position")
    TARGET_RADIUS = 0.07

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(self._knob(frame), frame.body_quat("dial"))

    @staticmethod
    def _knob(frame: Frame) -> np.ndarray:
        angle = frame.joint_qpos("knob_Joint_1")
        offset = np.stack([np.sin(angle), -np.cos(angle), np.zeros_like(angle)], axis=1)
        return frame.body("dial") + offset * 0.05

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius, obj = self.TARGET_RADIUS, self._knob(frame)
        push_position = obj + np.array([0.05, 0.02, 0.09])
        start = frame.consts["dial_push_position"]
        p = push_to_target(frame, obj, start, radius, 0.005, push_position)
        object_grasped, reward = p.closed_reach_reward(action)
        success, near_object = p.target_to_obj <= radius, p.tcp_to_obj <= 0.01
        info = infos(reward, success, near_object, 1.0, object_grasped, p.in_place, p.target_to_obj)
        return reward, info


# -- the coffee mug ---------------------------------------------------------------------------


class _CoffeeMug(OneObject):
    """Coffee-pull and coffee-push: carry the mug to the goal (the same reward)."""

    geoms = ("mug",)

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        obj, target = obs[:, 4:7], frame.consts["_target_pos"]
        scale = np.array([2.0, 2.0, 1.0])
        target_to_obj = norm((obj - target) * scale)
        target_to_obj_init = norm((frame.consts["obj_init_pos"] - target) * scale)
        in_place = tolerance_long_tail(target_to_obj, 0, 0.05, target_to_obj_init)
        tcp_opened = obs[:, 3]
        tcp_to_obj = norm(obj - frame.tcp_center)
        object_grasped, single = gripper_caging_reward(
            frame,
            action,
            obj,
            0.02,
            0.05,
            0.05,
            desired_gripper_effort=0.7,
            high_density=False,
            reach_radius=0.04,
        )
        reward = hamacher_typed(object_grasped, in_place, single)
        near = (tcp_to_obj < 0.04) & (tcp_opened > 0)
        reward = np.where(near, plus_bonus(reward, 1.0 + 5.0 * in_place, single), reward)
        reward = np.where(target_to_obj < 0.05, 10.0, reward)
        cheap = tcp_opened > 0
        success, near_object = norm(obj - target) <= 0.07, tcp_to_obj <= 0.03
        grasped = cheap & frame.touching(cheap, "mug")
        obj_to_target = norm(obj - target)
        return reward, infos(
            reward, success, near_object, grasped, object_grasped, in_place, obj_to_target
        )


class CoffeePull(_CoffeeMug):
    """`SawyerCoffeePullEnvV3` (sawyer_coffee_pull_v3.py)."""

    name = "coffee-pull-v3"


class CoffeePush(_CoffeeMug):
    """`SawyerCoffeePushEnvV3` (sawyer_coffee_push_v3.py)."""

    name = "coffee-push-v3"


# -- the nut and the peg ----------------------------------------------------------------------


class _Nut(Skill):
    """Assembly and disassembly: the wrench's grip site and the nut body's quaternion; the
    caging reward sees the grip's x moved onto the hand's within half the handle's length."""

    bodies = ("RoundNut", "leftpad", "rightpad")
    sites = ("rightEndEffector", "leftEndEffector", "RoundNut-8", "RoundNut")
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    HANDLE_HALF = 0.02 / 2.0

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(frame.site("RoundNut-8"), frame.body_quat("RoundNut"))

    def _threshed(self, obs: np.ndarray) -> np.ndarray:
        hand, wrench = obs[:, :3], obs[:, 4:7]
        threshed = wrench.copy()
        close = np.abs(wrench[:, 0] - hand[:, 0]) < self.HANDLE_HALF
        threshed[:, 0] = np.where(close, hand[:, 0], wrench[:, 0])
        return threshed

    @staticmethod
    def _combine(
        grab: np.ndarray, single: np.ndarray, in_place: np.ndarray, quat: np.ndarray
    ) -> np.ndarray:
        """`(2.0 * grab + 6.0 * in_place) * quat`, in float32 where `grab` is."""
        reward = (2.0 * grab + 6.0 * in_place) * quat
        if single.any():
            g = grab.astype(F32)
            reward32 = ((F32(2.0) * g + (6.0 * in_place).astype(F32)) * quat.astype(F32)).astype(
                np.float64
            )
            reward = np.where(single, reward32, reward)
        return reward

    @staticmethod
    def _info(
        reward: np.ndarray,
        grab: np.ndarray,
        quat: np.ndarray,
        in_place: np.ndarray,
        success: np.ndarray,
    ) -> Info:
        return infos(reward, success, quat, grab >= 0.5, grab, in_place, 0.0)


class Assembly(_Nut):
    """`SawyerNutAssemblyEnvV3` (sawyer_assembly_peg_v3.py): put the nut over the peg."""

    name = "assembly-v3"

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        quat = _quat_reward(obs, 0.4)
        grab, single = gripper_caging_reward(
            frame,
            action,
            self._threshed(obs),
            0.015,
            0.02,
            0.01,
            high_density=False,
            reach_radius=0.01,
        )
        # `_reward_pos`
        center = frame.site("RoundNut")
        pos_error = frame.consts["_target_pos"] - center
        radius = norm(pos_error[:, :2])
        success = (radius < 0.02) & (pos_error[:, 2] > 0.0)
        threshold = np.where(success, 0.02, 0.01)
        pos_error[:, 2] = floor_height(radius, threshold, 0.02, 0.2) - center[:, 2]
        lifted = (center[:, 2] > 0.02) | (radius < threshold)
        in_place = 0.1 * flag(lifted) + 0.9 * tolerance_long_tail(
            norm(pos_error * np.array([1.0, 1.0, 3.0])), 0, 0.02, 0.4
        )
        reward = self._combine(grab, single, in_place, quat)
        reward = np.where(success, 10.0, reward)
        return reward, self._info(reward, grab, quat, in_place, success)


class Disassemble(_Nut):
    """`SawyerNutDisassembleEnvV3` (sawyer_disassemble_peg_v3.py): lift the nut off the peg."""

    name = "disassemble-v3"

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        quat = _quat_reward(obs, 0.4)
        grab, single = gripper_caging_reward(frame, action, self._threshed(obs), 0.015, 0.02, 0.01)
        # `_reward_pos`
        center = frame.site("RoundNut")
        target = frame.consts["_target_pos"]
        pos_error = target + np.array([0.0, 0.0, 0.1]) - center
        in_place = 0.1 * flag(center[:, 2] > 0.02) + 0.9 * tolerance_long_tail(
            norm(pos_error), 0, 0.02, 0.2
        )
        reward = self._combine(grab, single, in_place, quat)
        success = obs[:, 6] > target[:, 2]
        reward = np.where(success, 10.0, reward)
        return reward, self._info(reward, grab, quat, in_place, success)


# -- bins -------------------------------------------------------------------------------------


class BinPicking(Skill):
    """`SawyerBinPickingEnvV3` (sawyer_bin_picking_v3.py): carry the block from one bin to the
    other. Two things the engine does not capture are handled here: `_target_pos` is a live
    view of the `bin_goal` body (read from the frame), and the in-place margin
    `_target_to_obj_init` is set on each episode's first step (kept per row, refreshed where
    `Frame.elapsed` is 1), so an instance serves one batched env."""

    name = "bin-picking-v3"
    bodies = ("obj", "leftpad", "rightpad", "bin_goal")
    consts = ("obj_init_pos", "init_tcp")
    TARGET_RADIUS = 0.05

    def __init__(self) -> None:
        self._margin = np.zeros(0)

    def objects(self, frame: Frame) -> np.ndarray:
        return body_object(frame, "obj")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        if frame.elapsed is None:
            raise ValueError("bin-picking-v3's reward needs the frame's step counts (elapsed)")
        hand, obj = obs[:, :3], obs[:, 4:7]
        target, obj_init = frame.body("bin_goal"), frame.consts["obj_init_pos"]
        target_to_obj = norm(obj - target)
        if self._margin.shape != target_to_obj.shape:
            self._margin = np.zeros_like(target_to_obj)
        first = frame.elapsed == 1
        self._margin[first] = target_to_obj[first]
        in_place = tolerance_long_tail(target_to_obj, 0, self.TARGET_RADIUS, self._margin)

        floor = np.minimum(
            *(
                floor_height(norm(hand[:, :2] - c[:, :2]), 0.03, 0.02, 0.2)
                for c in (obj_init, target)
            )
        )
        below = hand[:, 2] < floor
        above = np.where(
            below,
            tolerance_long_tail(np.maximum(floor - hand[:, 2], 0.0), 0.0, 0.01, 0.05),
            1.0,
        )

        object_grasped, single = gripper_caging_reward(
            frame, action, obj, 0.015, 0.05, 0.01, desired_gripper_effort=0.7
        )
        reward = hamacher_typed(object_grasped, in_place, single)
        near_object = norm(obj - hand) < 0.04
        grasp_success = lifted_in_grip(near_object, obs[:, 3], 0.43, obj, obj_init)
        bonus = 1.0 + 5.0 * hamacher_product(above, in_place)
        reward = np.where(grasp_success, plus_bonus(reward, bonus, single), reward)
        reward = np.where(target_to_obj < self.TARGET_RADIUS, 10.0, reward)
        success = target_to_obj <= 0.05
        return reward, infos(
            reward, success, near_object, grasp_success, object_grasped, in_place, target_to_obj
        )
