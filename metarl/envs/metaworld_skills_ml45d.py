"""Batched V2 rewards of twelve ML45 skills: a hand insert, a lock, faucets, a hammer, handles,
a peg unplugged from the side, a block out of a hole, a pick-and-place over a wall.

Each `Skill` here is one Meta-World v3 env's `_get_pos_objects` / `_get_quat_objects` /
`evaluate_state` over rows (the contract and the arithmetic helpers are
`metarl.envs.metaworld_rewards`'s and `metarl.envs.metaworld_families`'s), in Meta-World's
operation order and types, so that `tests/test_metaworld_vector.py` finds them equal to
Meta-World's own env bit for bit.

What these skills add to the earlier ones:

- Caging rewards with a desired gripper effort other than 1 (peg-unplug-side 0.8,
  pick-out-of-hole 0.1) or without the high-density average (pick-place-wall): the float32
  rows are those where `min(max(0, a3), desired)` keeps the action's float32 scalar, and the
  division by `desired` is then float32 too (`metaworld_rewards.caging_and_gripping`).
- Rewards that read the object's site rather than the (clipped) observation (the handle
  presses) and constants that are live views of the data: door-unlock's `obj_init_pos` is
  `data.body("lock_link").xpos`, so the reward reads the lock's current position.
- Hammer's quaternion reward: `np.linalg.norm` of a 4-vector, whose dot product sums in
  order, as `metaworld_rewards.norm` does.
"""

from __future__ import annotations

import numpy as np

from metarl.envs.metaworld_families import (
    DoorLockSite,
    HandleSite,
    floor_height,
    push_to_target,
)
from metarl.envs.metaworld_rewards import (
    Evaluation,
    Frame,
    OneObject,
    Skill,
    body_object,
    carry,
    carry_infos,
    flag,
    geom_object,
    gripper_caging_reward,
    hamacher_product,
    hamacher_single,
    hamacher_typed,
    held,
    infos,
    lifted_in_grip,
    norm,
    opened_and_lifted,
    plus_bonus,
    tolerance_long_tail,
    with_quat,
    without_quat,
)


class HandInsert(OneObject):
    """`SawyerHandInsertEnvV3` (sawyer_hand_insert_v3.py): put the block into the hole."""

    name = "hand-insert-v3"
    TARGET_RADIUS = 0.05

    def objects(self, frame: Frame) -> np.ndarray:
        return body_object(frame, "obj")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        c = carry(frame, obs, self.TARGET_RADIUS)
        object_grasped, single = gripper_caging_reward(frame, action, c.obj, 0.015, 0.05, 0.005)
        reward = hamacher_typed(object_grasped, c.in_place, single)
        bonus = plus_bonus(reward, 1.0 + 7.0 * c.in_place, single)
        reward = np.where((c.tcp_to_obj < 0.02) & (c.tcp_opened > 0), bonus, reward)
        reward = np.where(c.obj_to_target < self.TARGET_RADIUS, 10.0, reward)
        return reward, carry_infos(frame, reward, c, object_grasped, 0.05)


class DoorUnlock(DoorLockSite):
    """`SawyerDoorUnlockEnvV3` (sawyer_door_unlock_v3.py): turn the lock by pushing it. Its
    `obj_init_pos` is a view of the lock body's current position, which the reward reads."""

    name = "door-unlock-v3"
    bodies = ("door_link", "lock_link")
    sites = ("rightEndEffector", "leftEndEffector", "lockStartUnlock")
    consts = ("_target_pos", "init_tcp")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        gripper, lock = obs[:, :3], obs[:, 4:7]
        offset = np.array([0.0, 0.055, 0.07])
        scale = np.array([0.25, 1.0, 0.5])
        shoulder_to_lock = (gripper + offset - lock) * scale
        lock_init = frame.body("lock_link")  # `obj_init_pos`, a view of data.xpos
        shoulder_to_lock_init = (frame.consts["init_tcp"] + offset - lock_init) * scale
        ready_to_push = tolerance_long_tail(
            norm(shoulder_to_lock), 0, 0.02, norm(shoulder_to_lock_init)
        )
        obj_to_target = np.abs(frame.consts["_target_pos"][:, 0] - lock[:, 0])
        pushed = tolerance_long_tail(obj_to_target, 0, 0.005, 0.1)
        reward = 2 * ready_to_push + 8 * pushed
        success, near_object = obj_to_target <= 0.02, norm(shoulder_to_lock) <= 0.05
        grasped = obs[:, 3] > 0
        return reward, infos(
            reward, success, near_object, grasped, ready_to_push, pushed, obj_to_target
        )


class FaucetClose(Skill):
    """`SawyerFaucetCloseEnvV3` (sawyer_faucet_close_v3.py): turn the faucet's handle shut."""

    name = "faucet-close-v3"
    bodies = ("faucetBase",)
    sites = ("rightEndEffector", "leftEndEffector", "handleStartClose")
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    SITE = "handleStartClose"
    OBJ_OFFSET: np.ndarray | None = None
    TARGET_RADIUS = 0.07

    def objects(self, frame: Frame) -> np.ndarray:
        pos = frame.site(self.SITE) + np.array([0.0, 0.0, -0.01])
        return with_quat(pos, frame.body_quat("faucetBase"))

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius = self.TARGET_RADIUS
        obj = obs[:, 4:7] if self.OBJ_OFFSET is None else obs[:, 4:7] + self.OBJ_OFFSET
        p = push_to_target(frame, obj, frame.consts["obj_init_pos"], radius, 0.01)
        reward = 2 * p.reach + 3 * p.in_place
        reward = reward * 2
        reward = np.where(p.target_to_obj <= radius, 10.0, reward)
        success, near_object = p.target_to_obj <= 0.07, p.tcp_to_obj <= 0.01
        return reward, infos(
            reward, success, near_object, 1.0, p.reach, p.in_place, p.target_to_obj
        )


class FaucetOpen(FaucetClose):
    """`SawyerFaucetOpenEnvV3` (sawyer_faucet_open_v3.py): faucet-close's reward the other
    way, on the observed handle moved by a constant offset."""

    name = "faucet-open-v3"
    sites = ("rightEndEffector", "leftEndEffector", "handleStartOpen")
    SITE = "handleStartOpen"
    OBJ_OFFSET = np.array([-0.04, 0.0, 0.03])


class Hammer(Skill):
    """`SawyerHammerEnvV3` (sawyer_hammer_v3.py): drive the nail in with the hammer. Two
    objects (hammer, nail); the reward is scaled by how flat the hammer lies."""

    name = "hammer-v3"
    bodies = ("hammer", "nail_link", "leftpad", "rightpad")
    joints = ("NailSlideJoint",)
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    HANDLE_LENGTH = 0.14

    def objects(self, frame: Frame) -> np.ndarray:
        return np.concatenate([body_object(frame, "hammer"), body_object(frame, "nail_link")], 1)

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        hand, hammer = obs[:, :3], obs[:, 4:7]
        hammer_head = hammer + np.array([0.16, 0.06, 0.0])
        hammer_threshed = hammer.copy()
        near = np.abs(hammer[:, 0] - hand[:, 0]) < self.HANDLE_LENGTH / 2.0
        hammer_threshed[near, 0] = hand[near, 0]
        # `_reward_quat`
        error = norm(obs[:, 7:11] - np.array([1.0, 0.0, 0.0, 0.0]))
        reward_quat = np.maximum(1.0 - error / 0.4, 0.0)
        reward_grab, single = gripper_caging_reward(
            frame, action, hammer_threshed, 0.015, 0.02, 0.01
        )
        # `_reward_pos`
        pos_error = frame.consts["_target_pos"] - hammer_head
        lifted = flag(hammer_head[:, 2] > 0.02)
        in_place = 0.1 * lifted + 0.9 * tolerance_long_tail(norm(pos_error), 0, 0.02, 0.2)
        reward = (2.0 * reward_grab + 6.0 * in_place) * reward_quat
        if single.any():  # `reward_grab` is float32 there (`caging_and_gripping`)
            grab32 = reward_grab.astype(np.float32)
            reward32 = (np.float32(2.0) * grab32 + (6.0 * in_place).astype(np.float32)) * (
                reward_quat.astype(np.float32)
            )
            reward = np.where(single, reward32.astype(np.float64), reward)
        success = frame.joint_qpos("NailSlideJoint") > 0.09
        reward = np.where(success & (reward > 5.0), 10.0, reward)
        return reward, infos(
            reward, success, reward_quat, reward_grab >= 0.5, reward_grab, in_place, 0.0
        )


class HandlePress(HandleSite):
    """`SawyerHandlePressEnvV3` (sawyer_handle_press_v3.py): press the handle down."""

    name = "handle-press-v3"
    sites = ("rightEndEffector", "leftEndEffector", "handleStart")
    consts = ("_target_pos", "init_tcp", "_handle_init_pos")
    SITE, AXIS, TARGET_RADIUS, CAPPED = "handleStart", 2, 0.02, True
    IN_PLACE_INIT = REACH_INIT = "_handle_init_pos"


class HandlePressSide(HandlePress):
    """`SawyerHandlePressSideEnvV3` (sawyer_handle_press_side_v3.py): handle-press's reward
    on the box turned sideways."""

    name = "handle-press-side-v3"


class _HandlePull(Skill):
    """Handle-pull and handle-pull-side: pull the handle site up, grasped; the two differ in
    the site, the caging's sizes, how the distance to the target is measured, the lifted
    test and the success radius."""

    bodies = ("leftpad", "rightpad")
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    TARGET_RADIUS = 0.05
    SITE: str
    CAGING: tuple[float, float, float]
    """`obj_radius, pad_success_thresh, xz_thresh` of the caging reward."""
    SUCCESS_RADIUS: float

    def objects(self, frame: Frame) -> np.ndarray:
        return without_quat(frame.site(self.SITE))

    def _to_target(self, obj: np.ndarray, target: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _lifted(self, obj: np.ndarray, obj_init: np.ndarray) -> np.ndarray:
        return obj[:, 2] - 0.01 > obj_init[:, 2]

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        target, obj_init = frame.consts["_target_pos"], frame.consts["obj_init_pos"]
        target_to_obj = self._to_target(obj, target)
        target_to_obj_init = self._to_target(obj_init, target)
        in_place = tolerance_long_tail(target_to_obj, 0, self.TARGET_RADIUS, target_to_obj_init)
        object_grasped, single = gripper_caging_reward(frame, action, obj, *self.CAGING)
        reward = hamacher_typed(object_grasped, in_place, single)
        tcp_to_obj = norm(obj - frame.tcp_center)
        bonus = plus_bonus(reward, 1.0 + 5.0 * in_place, single)
        lifted = (tcp_to_obj < 0.035) & (tcp_opened > 0) & self._lifted(obj, obj_init)
        reward = np.where(lifted, bonus, reward)
        reward = np.where(target_to_obj < self.TARGET_RADIUS, 10.0, reward)
        success, near_object = target_to_obj <= self.SUCCESS_RADIUS, tcp_to_obj <= 0.05
        grasped = opened_and_lifted(tcp_opened, obj, obj_init, 0.03)
        return reward, infos(
            reward, success, near_object, grasped, object_grasped, in_place, target_to_obj
        )


class HandlePullSide(_HandlePull):
    """`SawyerHandlePullSideEnvV3` (sawyer_handle_pull_side_v3.py): pull the handle up; the
    distance to the target is a (unit-scaled) norm."""

    name = "handle-pull-side-v3"
    sites = ("rightEndEffector", "leftEndEffector", "handleCenter")
    SITE, CAGING, SUCCESS_RADIUS = "handleCenter", (0.032, 0.06, 0.01), 0.08

    def _to_target(self, obj: np.ndarray, target: np.ndarray) -> np.ndarray:
        return norm((obj - target) * np.array([1.0, 1.0, 1.0]))


class HandlePull(_HandlePull):
    """`SawyerHandlePullEnvV3` (sawyer_handle_pull_v3.py): pull the handle up by its right
    end; the distance to the target is along z. Its lifted test compares the handle's y with
    the start's z, as Meta-World does."""

    name = "handle-pull-v3"
    sites = ("rightEndEffector", "leftEndEffector", "handleRight")
    SITE, CAGING, SUCCESS_RADIUS = "handleRight", (0.022, 0.05, 0.01), 0.05

    def _to_target(self, obj: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.abs(target[:, 2] - obj[:, 2])

    def _lifted(self, obj: np.ndarray, obj_init: np.ndarray) -> np.ndarray:
        return obj[:, 1] - 0.01 > obj_init[:, 2]


class PegUnplugSide(Skill):
    """`SawyerPegUnplugSideEnvV3` (sawyer_peg_unplug_side_v3.py): pull the peg out sideways;
    its caging reward asks for a gripper effort of 0.8."""

    name = "peg-unplug-side-v3"
    bodies = ("plug1", "leftpad", "rightpad")
    sites = ("rightEndEffector", "leftEndEffector", "pegEnd")
    consts = ("_target_pos", "obj_init_pos", "init_tcp")

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(frame.site("pegEnd"), frame.body_quat("plug1"))

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        tcp, obj, tcp_opened = frame.tcp_center, obs[:, 4:7], obs[:, 3]
        target, obj_init = frame.consts["_target_pos"], frame.consts["obj_init_pos"]
        tcp_to_obj = norm(obj - tcp)
        obj_to_target = norm(obj - target)
        object_grasped, single = gripper_caging_reward(
            frame, action, obj, 0.025, 0.05, 0.005, desired_gripper_effort=0.8
        )
        in_place = tolerance_long_tail(obj_to_target, 0, 0.05, norm(obj_init - target))
        grasped = (tcp_opened > 0.5) & (obj[:, 0] - obj_init[:, 0] > 0.015)
        reward = 2 * object_grasped
        bonus = 1 + 2 * object_grasped + 5 * in_place
        if single.any():  # `object_grasped` is float32 there (`caging_and_gripping`)
            grasped32 = object_grasped.astype(np.float32)
            reward = np.where(single, (np.float32(2) * grasped32).astype(np.float64), reward)
            bonus32 = np.float32(1) + np.float32(2) * grasped32 + (5 * in_place).astype(np.float32)
            bonus = np.where(single, bonus32.astype(np.float64), bonus)
        reward = np.where(grasped & (tcp_to_obj < 0.035), bonus, reward)
        reward = np.where(obj_to_target <= 0.05, 10.0, reward)
        success, near_object = obj_to_target <= 0.07, tcp_to_obj <= 0.03
        return reward, infos(
            reward, success, near_object, grasped, object_grasped, in_place, obj_to_target
        )


class PickOutOfHole(Skill):
    """`SawyerPickOutOfHoleEnvV3` (sawyer_pick_out_of_hole_v3.py): lift the block out of its
    hole; a funnel-shaped floor keeps the hand off the hole's edge, and its caging reward
    asks for a gripper effort of 0.1."""

    name = "pick-out-of-hole-v3"
    bodies = ("obj", "leftpad", "rightpad")
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    TARGET_RADIUS = 0.05  # `SawyerXYZEnv.TARGET_RADIUS`: the env's own 0.02 is unused

    def objects(self, frame: Frame) -> np.ndarray:
        return body_object(frame, "obj")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        obj, gripper = obs[:, 4:7], frame.tcp_center
        target, obj_init = frame.consts["_target_pos"], frame.consts["obj_init_pos"]
        obj_to_target = norm(obj - target)
        tcp_to_obj = norm(obj - gripper)
        in_place_margin = norm(obj_init - target)
        floor = floor_height(norm(gripper[:, :2] - obj_init[:, :2]), 0.03, 0.015, 0.15)
        below = gripper[:, 2] < floor
        tolerated = tolerance_long_tail(
            np.where(below, np.maximum(floor - gripper[:, 2], 0.0), 0.0), 0.0, 0.01, 0.02
        )
        above_floor = np.where(below, tolerated, 1.0)
        object_grasped, single = gripper_caging_reward(
            frame, action, obj, 0.015, 0.02, 0.03, desired_gripper_effort=0.1
        )
        in_place = tolerance_long_tail(obj_to_target, 0, 0.02, in_place_margin)
        reward = hamacher_typed(object_grasped, in_place, single)
        grasped = lifted_in_grip(tcp_to_obj < 0.04, obs[:, 3], 0.33, obj, obj_init)
        bonus = 1.0 + 5.0 * hamacher_product(in_place, above_floor)
        reward = np.where(grasped, plus_bonus(reward, bonus, single), reward)
        reward = np.where(obj_to_target < self.TARGET_RADIUS, 10.0, reward)
        success, near_object = obj_to_target <= 0.07, tcp_to_obj <= 0.03
        return reward, infos(
            reward, success, near_object, grasped, object_grasped, in_place, obj_to_target
        )


class PickPlaceWall(OneObject):
    """`SawyerPickPlaceWallEnvV3` (sawyer_pick_place_wall_v3.py): carry the block over the
    wall, by a midpoint above it; its caging reward has no high-density average."""

    name = "pick-place-wall-v3"
    bodies = ("leftpad", "rightpad")
    TARGET_RADIUS = 0.05

    def objects(self, frame: Frame) -> np.ndarray:
        return geom_object(frame, "objGeom")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius = self.TARGET_RADIUS
        c = carry(frame, obs, radius)
        obj, obj_init, target = c.obj, c.obj_init, frame.consts["_target_pos"]
        midpoint = np.zeros_like(target)
        midpoint[:, 0], midpoint[:, 1], midpoint[:, 2] = target[:, 0], 0.77, 0.25
        scaling = np.array([1.0, 1.0, 3.0])
        obj_to_midpoint = norm((obj - midpoint) * scaling)
        obj_to_midpoint_init = norm((obj_init - midpoint) * scaling)
        in_place_part1 = tolerance_long_tail(obj_to_midpoint, 0, radius, obj_to_midpoint_init)
        in_place_part2 = c.in_place
        object_grasped, single = gripper_caging_reward(
            frame, action, obj, 0.015, 0.05, 0.005, high_density=False
        )
        grasped_in_place = hamacher_product(object_grasped, in_place_part1)
        over = grasped_in_place + 1.0 + 4.0 * in_place_part1
        beyond = grasped_in_place + 1.0 + 4.0 + 3.0 * in_place_part2
        if single.any():  # `object_grasped` is float32 there (`caging_and_gripping`)
            g32 = hamacher_single(object_grasped, in_place_part1)
            grasped_in_place = np.where(single, g32.astype(np.float64), grasped_in_place)
            one, four = np.float32(1.0), np.float32(4.0)
            over32 = g32 + one + (4.0 * in_place_part1).astype(np.float32)
            beyond32 = g32 + one + four + (3.0 * in_place_part2).astype(np.float32)
            over = np.where(single, over32.astype(np.float64), over)
            beyond = np.where(single, beyond32.astype(np.float64), beyond)
        lifted = held(c.tcp_to_obj, 0.02, c.tcp_opened, obj, obj_init, 0.015)
        reward = np.where(lifted, np.where(obj[:, 1] > 0.75, beyond, over), grasped_in_place)
        reward = np.where(c.obj_to_target < radius, 10.0, reward)
        return reward, carry_infos(frame, reward, c, object_grasped)
