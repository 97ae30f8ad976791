"""Batched translations of five more Meta-World v3 skills: sweep, sweep-into, basketball,
peg-insert-side and shelf-place (`metaworld_rewards.Skill`s, registered in
`metarl.envs.metaworld_skills`).

Each class is its Meta-World env's `_get_pos_objects` / `_get_quat_objects` /
`evaluate_state` (sawyer_<skill>_v3.py) over rows, in Meta-World's operation order and with
its scalar types reproduced: where Meta-World's caging reward turns float32 (a positive
float32 gripper action, `caging_and_gripping`), the terms computed from it stay float32 only
as far as NumPy's promotion keeps them so, which depends on whether the other operand is a
Python float or a NumPy float64 at that point of Meta-World's code; each skill says where.
`tests/test_metaworld_vector.py` compares them with Meta-World's env bit for bit.
"""

from __future__ import annotations

import numpy as np

from metarl.envs.metaworld_rewards import (
    Evaluation,
    Frame,
    OneObject,
    Skill,
    body_matrix_quat,
    body_object,
    carry,
    carry_infos,
    gripper_caging_reward,
    hamacher_product,
    hamacher_typed,
    held,
    infos,
    norm,
    opened_and_lifted,
    pad_caging,
    plus_bonus,
    quaternion,
    tolerance_long_tail,
    with_quat,
)


class _Sweep(Skill):
    """Sweep and sweep-into: the puck is pushed, never lifted, and their own caging reward
    (`_gripper_caging_reward` overridden, `metaworld_rewards.pad_caging`) ignores the
    gripper's effort: its `gripping` is the pads' y-closeness, so every value here is
    float64."""

    bodies = ("obj", "leftpad", "rightpad")
    geoms = ("objGeom",)
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    OBJ_RADIUS = 0.02
    GRIP_MARGIN: float
    """`grip_success_margin - obj_radius` in the env's caging reward."""
    X_Z_SUCCESS_MARGIN: float

    def _target(self, frame: Frame, obj: np.ndarray) -> np.ndarray:
        return frame.consts["_target_pos"]

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        target_radius = 0.05
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        target = self._target(frame, obj)
        obj_to_target = norm(obj - target)
        tcp_to_obj = norm(obj - frame.tcp_center)
        in_place_margin = norm(frame.consts["obj_init_pos"] - target)
        in_place = tolerance_long_tail(obj_to_target, 0, target_radius, in_place_margin)
        radius = self.OBJ_RADIUS
        object_grasped = pad_caging(
            frame, obj, radius, radius + self.GRIP_MARGIN, self.X_Z_SUCCESS_MARGIN
        )
        in_place_and_object_grasped = hamacher_product(object_grasped, in_place)
        reward = (2 * object_grasped) + (6 * in_place_and_object_grasped)
        reward = np.where(obj_to_target < target_radius, 10.0, reward)
        opened = tcp_opened > 0
        success, near_object = obj_to_target <= 0.05, tcp_to_obj <= 0.03
        grasped = opened & frame.touching(opened, "objGeom")
        return reward, infos(
            reward, success, near_object, grasped, object_grasped, in_place, obj_to_target
        )


class Sweep(_Sweep):
    """`SawyerSweepEnvV3` (sawyer_sweep_v3.py): the puck's body quaternion in the
    observation."""

    name = "sweep-v3"
    GRIP_MARGIN = 0.01
    X_Z_SUCCESS_MARGIN = 0.005

    def objects(self, frame: Frame) -> np.ndarray:
        return body_object(frame, "obj")


class SweepInto(_Sweep):
    """`SawyerSweepIntoGoalEnvV3` (sawyer_sweep_into_goal_v3.py): the puck's geom
    quaternion in the observation; the target is the goal's x-y at the puck's current
    height, so the in-place margin moves with the puck."""

    name = "sweep-into-v3"
    GRIP_MARGIN = 0.005
    X_Z_SUCCESS_MARGIN = 0.01

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(frame.body("obj"), quaternion(frame.geom_matrix("objGeom")))

    def _target(self, frame: Frame, obj: np.ndarray) -> np.ndarray:
        target = frame.consts["_target_pos"].copy()
        target[:, 2] = obj[:, 2]
        return target


class Basketball(Skill):
    """`SawyerBasketballEnvV3` (sawyer_basketball_v3.py). Its `_target_pos` is a live view
    of the goal site's position (`data.site("goal").xpos`), so the reward reads the site from
    the frame. Where the ball is lifted near the gripper, `object_grasped` is the Python float
    1.0 (float64 from there on); elsewhere a float32 `object_grasped` makes the product with
    `in_place` (a Python float) float32."""

    name = "basketball-v3"
    bodies = ("bsktball", "leftpad", "rightpad")
    sites = ("rightEndEffector", "leftEndEffector", "goal")
    consts = ("obj_init_pos", "init_tcp")
    TARGET_RADIUS = 0.08

    def objects(self, frame: Frame) -> np.ndarray:
        return body_object(frame, "bsktball")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        obj, obj_init = obs[:, 4:7], frame.consts["obj_init_pos"]
        target = frame.site("goal").copy()
        target[:, 2] = 0.3
        scale = np.array([1.0, 1.0, 2.0])
        target_to_obj = norm((obj - target) * scale)
        target_to_obj_init = norm((obj_init - target) * scale)
        in_place = tolerance_long_tail(target_to_obj, 0, self.TARGET_RADIUS, target_to_obj_init)
        tcp_opened = obs[:, 3]
        tcp_to_obj = norm(obj - frame.tcp_center)
        object_grasped, single = gripper_caging_reward(frame, action, obj, 0.025, 0.06, 0.005)
        lifted = held(tcp_to_obj, 0.035, tcp_opened, obj, obj_init)
        object_grasped = np.where(lifted, 1.0, object_grasped)
        reward = hamacher_typed(object_grasped, in_place, single & ~lifted)
        reward = np.where(lifted, reward + (1.0 + 5.0 * in_place), reward)
        reward = np.where(target_to_obj < self.TARGET_RADIUS, 10.0, reward)
        success, near_object = target_to_obj <= self.TARGET_RADIUS, tcp_to_obj <= 0.05
        grasped = opened_and_lifted(tcp_opened, obj, obj_init, 0.03)
        return reward, infos(
            reward, success, near_object, grasped, object_grasped, in_place, target_to_obj
        )


def _in_range(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """`reward_utils.rect_prism_tolerance`'s `in_range(a, b, c)` per row."""
    return np.where(c >= b, (b <= a) & (a <= c), (c <= a) & (a <= b))


def _rect_prism_tolerance(
    curr: np.ndarray, zero: np.ndarray, one: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`reward_utils.rect_prism_tolerance(curr, zero, one)` per row, and the mask of the rows
    inside the prism (where Meta-World's value is a NumPy float64, elsewhere the Python
    float 1.0)."""
    inside = np.logical_and.reduce([_in_range(curr[:, i], zero[:, i], one[:, i]) for i in range(3)])
    diff = one - zero
    scales = (curr - zero) / np.where(inside[:, None], diff, 1.0)
    value = scales[:, 0] * scales[:, 1] * scales[:, 2]
    return np.where(inside, value, 1.0), inside


class PegInsertSide(Skill):
    """`SawyerPegInsertionSideEnvV3` (sawyer_peg_insertion_side_v3.py). The observed object
    is the site `pegGrasp`: its position, and the quaternion of its `xmat`, which MuJoCo
    copies from the peg body's (the site has no rotation of its own: `site_sameframe` is
    `mjSAMEFRAME_BODYROT`), read from the frame as the body's `xmat`.

    Types: `in_place` becomes a NumPy float64 where the peg's head is inside either
    collision prism (`rect_prism_tolerance`'s product of NumPy scalars), else it stays a
    Python float; a float32 `object_grasped` keeps the product float32 only in the latter
    rows. Where the peg is lifted near the gripper, `object_grasped` is the Python 1.0."""

    name = "peg-insert-side-v3"
    bodies = ("peg", "leftpad", "rightpad")
    sites = (
        "rightEndEffector",
        "leftEndEffector",
        "pegGrasp",
        "pegHead",
        "bottom_right_corner_collision_box_1",
        "top_left_corner_collision_box_1",
        "bottom_right_corner_collision_box_2",
        "top_left_corner_collision_box_2",
    )
    consts = ("_target_pos", "obj_init_pos", "init_tcp", "peg_head_pos_init")
    TARGET_RADIUS = 0.07

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(frame.site("pegGrasp"), body_matrix_quat(frame, "peg"))

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        obj, obj_init = obs[:, 4:7], frame.consts["obj_init_pos"]
        obj_head = frame.site("pegHead")
        tcp_opened = obs[:, 3]
        target = frame.consts["_target_pos"]
        tcp_to_obj = norm(obj - frame.tcp_center)
        scale = np.array([1.0, 2.0, 2.0])
        obj_to_target = norm((obj_head - target) * scale)
        in_place_margin = norm((frame.consts["peg_head_pos_init"] - target) * scale)
        in_place = tolerance_long_tail(obj_to_target, 0, self.TARGET_RADIUS, in_place_margin)
        box_1, inside_1 = _rect_prism_tolerance(
            obj_head,
            frame.site("bottom_right_corner_collision_box_1"),
            frame.site("top_left_corner_collision_box_1"),
        )
        box_2, inside_2 = _rect_prism_tolerance(
            obj_head,
            frame.site("bottom_right_corner_collision_box_2"),
            frame.site("top_left_corner_collision_box_2"),
        )
        collision_boxes = hamacher_product(box_2, box_1)
        in_place = hamacher_product(in_place, collision_boxes)
        object_grasped, single = gripper_caging_reward(frame, action, obj, 0.0075, 0.03, 0.005)
        lifted = held(tcp_to_obj, 0.08, tcp_opened, obj, obj_init)
        object_grasped = np.where(lifted, 1.0, object_grasped)
        single = single & ~lifted & ~inside_1 & ~inside_2
        reward = hamacher_typed(object_grasped, in_place, single)
        reward = np.where(lifted, reward + (1.0 + 5 * in_place), reward)
        reward = np.where(obj_to_target <= 0.07, 10.0, reward)
        grasped = held(tcp_to_obj, 0.02, tcp_opened, obj, obj_init)
        success, near_object = obj_to_target <= 0.07, tcp_to_obj <= 0.03
        return reward, infos(
            reward, success, near_object, grasped, object_grasped, in_place, obj_to_target
        )


class ShelfPlace(OneObject):
    """`SawyerShelfPlaceEnvV3` (sawyer_shelf_place_v3.py): the block's geom quaternion in the
    observation, the caging reward of neither density.

    Types: `in_place` stays a Python float except where the block is below and in front of
    the shelf (the bound loss: `np.clip` makes it a NumPy float64), so the lifted bonus added
    to a float32 reward stays float32 only outside those rows."""

    name = "shelf-place-v3"

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        target_radius = 0.05
        c = carry(frame, obs, target_radius)
        obj, target, in_place = c.obj, frame.consts["_target_pos"], c.in_place
        object_grasped, single = gripper_caging_reward(
            frame, action, obj, 0.02, 0.05, 0.01, high_density=False
        )
        reward = hamacher_typed(object_grasped, in_place, single)
        low = (obj[:, 2] > 0.0) & (obj[:, 2] < 0.24)
        beside = (target[:, 0] - 0.15 < obj[:, 0]) & (obj[:, 0] < target[:, 0] + 0.15)
        front = target[:, 1] - 3 * target_radius
        bounded = low & beside & (front < obj[:, 1]) & (obj[:, 1] < target[:, 1])
        z_scaling = (0.24 - obj[:, 2]) / 0.24
        y_scaling = (obj[:, 1] - front) / (3 * target_radius)
        bound_loss = hamacher_product(y_scaling, z_scaling)
        in_place = np.where(bounded, np.clip(in_place - bound_loss, 0.0, 1.0), in_place)
        in_place = np.where(low & beside & (obj[:, 1] > target[:, 1]), 0.0, in_place)
        lifted = held(c.tcp_to_obj, 0.025, c.tcp_opened, obj, c.obj_init)
        # `reward` is float32 on the `single` rows; `bonus` too where `in_place` is a float
        lifted_reward = plus_bonus(reward, 1.0 + 5.0 * in_place, single & ~bounded)
        reward = np.where(lifted, lifted_reward, reward)
        reward = np.where(c.obj_to_target < target_radius, 10.0, reward)
        return reward, carry_infos(frame, reward, c, object_grasped, in_place_reward=in_place)
