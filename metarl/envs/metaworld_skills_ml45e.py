"""Batched V2 rewards of ML45's sliding, pushing and stick skills: plates, pushes past a wall or
back, a reach past a wall, a soccer ball, sticks and a window to close.

Each `Skill` here is one Meta-World v3 env's `_get_pos_objects` / `_get_quat_objects` /
`evaluate_state` over rows (the contract and the arithmetic helpers are
`metarl.envs.metaworld_rewards`'s and `metarl.envs.metaworld_families`'s), in Meta-World's
operation order and types, so that `tests/test_metaworld_vector.py` finds them equal to
Meta-World's own env bit for bit.

What these skills add:

- Bodies observed through their rotation matrix (the soccer ball, the sticks):
  `Rotation.from_matrix(data.body(b).xmat)`, the batch's `xmat` rows through
  `metaworld_rewards.body_matrix_quat`.
- Caging rewards of their own (push-back, soccer: `metaworld_rewards.pad_caging`): the
  gripping term is the pads' y-caging at a tighter bound instead of the action's effort, so
  they stay float64; their
  `init_left_pad` / `init_right_pad` are live views of the pads (as pick-place's are), so
  they read the current pads.
- Stick-push's caging is the shared one measured from `stick_init_pos` instead of
  `obj_init_pos`; stick-pull's and stick-push's "grasped" override of the caging reward is
  Python's int 1, and stick-push's success is `grasp_success and success`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from metarl.envs.metaworld_families import HandleSite
from metarl.envs.metaworld_rewards import (
    Evaluation,
    Frame,
    Push,
    Reach,
    Skill,
    body_matrix_quat,
    carry,
    carry_infos,
    geom_object,
    grasp_success,
    gripper_caging_reward,
    hamacher_product,
    hamacher_single,
    held,
    infos,
    norm,
    opened_and_lifted,
    pad_caging,
    tolerance_long_tail,
    without_quat,
)

# -- plates slid over the table (no grasp) ------------------------------------------------------


class _PlateSlide(Skill):
    """The plate-slide family: the puck geom's position and frame, a reach-then-slide reward.
    `plate-slide` multiplies the two terms; the back/side variants switch to the slide term
    once the hand is low and near, with margins less the target radius."""

    geoms = ("puck",)
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    TARGET_RADIUS = 0.05
    MARGIN_OFFSET = 0.05
    """Subtracted from both tolerance margins (0 for `plate-slide`)."""

    def objects(self, frame: Frame) -> np.ndarray:
        return geom_object(frame, "puck")

    def _reward(
        self, tcp: np.ndarray, tcp_to_obj: np.ndarray, grasped: np.ndarray, in_place: np.ndarray
    ) -> np.ndarray:
        reward = 1.5 * grasped
        low_and_near = (tcp[:, 2] <= 0.03) & (tcp_to_obj < 0.07)
        return np.where(low_and_near, 2.0 + (7.0 * in_place), reward)

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius = self.TARGET_RADIUS
        tcp, obj = frame.tcp_center, obs[:, 4:7]
        target, obj_init = frame.consts["_target_pos"], frame.consts["obj_init_pos"]
        obj_to_target = norm(obj - target)
        in_place_margin = norm(obj_init - target)
        in_place = tolerance_long_tail(
            obj_to_target, 0, radius, in_place_margin - self.MARGIN_OFFSET
        )
        tcp_to_obj = norm(tcp - obj)
        obj_grasped_margin = norm(frame.consts["init_tcp"] - obj_init)
        grasped = tolerance_long_tail(
            tcp_to_obj, 0, radius, obj_grasped_margin - self.MARGIN_OFFSET
        )
        reward = self._reward(tcp, tcp_to_obj, grasped, in_place)
        reward = np.where(obj_to_target < radius, 10.0, reward)
        return reward, infos(
            reward, obj_to_target <= 0.07, tcp_to_obj <= 0.03, 0.0, grasped, in_place, obj_to_target
        )


class PlateSlide(_PlateSlide):
    """`SawyerPlateSlideEnvV3` (sawyer_plate_slide_v3.py)."""

    name = "plate-slide-v3"
    MARGIN_OFFSET = 0.0  # its margins are the distances themselves (m - 0.0 is m exactly)

    def _reward(
        self, tcp: np.ndarray, tcp_to_obj: np.ndarray, grasped: np.ndarray, in_place: np.ndarray
    ) -> np.ndarray:
        return 8 * hamacher_product(grasped, in_place)


class PlateSlideBack(_PlateSlide):
    """`SawyerPlateSlideBackEnvV3` (sawyer_plate_slide_back_v3.py)."""

    name = "plate-slide-back-v3"


class PlateSlideSide(_PlateSlide):
    """`SawyerPlateSlideSideEnvV3` (sawyer_plate_slide_side_v3.py)."""

    name = "plate-slide-side-v3"


class PlateSlideBackSide(_PlateSlide):
    """`SawyerPlateSlideBackSideEnvV3` (sawyer_plate_slide_back_side_v3.py)."""

    name = "plate-slide-back-side-v3"


# -- pushes and reaches past a wall, a push back -------------------------------------------------


class ReachWall(Reach):
    """`SawyerReachWallEnvV3` (sawyer_reach_wall_v3.py): reach's reward with its own infos."""

    name = "reach-wall-v3"

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        reward, reach = super().evaluate_state(frame, obs, action)
        tcp_to_target = reach["obj_to_target"]
        return reward, infos(
            reward, tcp_to_target <= 0.05, 0.0, 0.0, 0.0, reach["in_place_reward"], tcp_to_target
        )


class PushWall(Push):
    """`SawyerPushWallEnvV3` (sawyer_push_wall_v3.py): push around the wall by a midpoint.
    Where the caging reward is float32 (`caging_and_gripping`) the sums after it are float32
    too (a float32 scalar plus Python floats)."""

    name = "push-wall-v3"

    def objects(self, frame: Frame) -> np.ndarray:
        return geom_object(frame, "objGeom")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius = 0.05
        c = carry(frame, obs, radius)
        obj, obj_init, in_place_part2 = c.obj, c.obj_init, c.in_place
        midpoint = np.stack([np.full(len(obj), -0.05), np.full(len(obj), 0.77), obj[:, 2]], 1)
        scaling = np.array([3.0, 1.0, 1.0])
        obj_to_midpoint = norm((obj - midpoint) * scaling)
        obj_to_midpoint_init = norm((obj_init - midpoint) * scaling)
        in_place_part1 = tolerance_long_tail(obj_to_midpoint, 0, radius, obj_to_midpoint_init)
        grasped, single = gripper_caging_reward(frame, action, obj, 0.015, 0.05, 0.005)
        reward = 2 * grasped
        near = (c.tcp_to_obj < 0.02) & (c.tcp_opened > 0)
        past_wall = obj[:, 1] > 0.75
        toward_wall = 2.0 * grasped + 1.0 + 4.0 * in_place_part1
        toward_goal = 2 * grasped + 1.0 + 4.0 + 3.0 * in_place_part2
        if single.any():
            g = grasped.astype(np.float32)
            one, four = np.float32(1.0), np.float32(4.0)
            wall32 = (np.float32(2.0) * g + one) + (4.0 * in_place_part1).astype(np.float32)
            goal32 = ((2 * g + one) + four) + (3.0 * in_place_part2).astype(np.float32)
            toward_wall = np.where(single, wall32.astype(np.float64), toward_wall)
            toward_goal = np.where(single, goal32.astype(np.float64), toward_goal)
        reward = np.where(near, np.where(past_wall, toward_goal, toward_wall), reward)
        reward = np.where(c.obj_to_target < radius, 10.0, reward)
        return reward, carry_infos(frame, reward, c, grasped)


class PushBack(Skill):
    """`SawyerPushBackEnvV3` (sawyer_push_back_v3.py): push the puck back toward the robot."""

    name = "push-back-v3"
    bodies = ("leftpad", "rightpad")
    geoms = ("objGeom",)
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    OBJ_RADIUS, TARGET_RADIUS = 0.007, 0.05

    def objects(self, frame: Frame) -> np.ndarray:
        return geom_object(frame, "objGeom")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        c = carry(frame, obs, self.TARGET_RADIUS)
        target_to_obj_init = norm(c.obj_init - frame.consts["_target_pos"])
        radius = self.OBJ_RADIUS
        grasped = pad_caging(frame, c.obj, radius, radius + 0.003, 0.01)
        reward = hamacher_product(grasped, c.in_place)
        pushing = (
            (c.tcp_to_obj < 0.01)
            & ((c.tcp_opened > 0) & (c.tcp_opened < 0.55))
            & (target_to_obj_init - c.obj_to_target > 0.01)
        )
        reward = np.where(pushing, reward + (1.0 + 5.0 * c.in_place), reward)
        reward = np.where(c.obj_to_target < self.TARGET_RADIUS, 10.0, reward)
        return reward, carry_infos(frame, reward, c, grasped)


# -- bodies observed by their rotation matrix: the soccer ball, the sticks ---------------------


class Soccer(Skill):
    """`SawyerSoccerEnvV3` (sawyer_soccer_v3.py): kick the ball into the goal."""

    name = "soccer-v3"
    bodies = ("soccer_ball", "leftpad", "rightpad")
    geoms = ("objGeom",)
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    OBJ_RADIUS, TARGET_RADIUS = 0.013, 0.07

    def objects(self, frame: Frame) -> np.ndarray:
        quat = body_matrix_quat(frame, "soccer_ball")
        return np.concatenate([frame.body("soccer_ball"), quat], axis=1)

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        target, obj_init = frame.consts["_target_pos"], frame.consts["obj_init_pos"]
        x_scaling = np.array([3.0, 1.0, 1.0])
        tcp_to_obj = norm(obj - frame.tcp_center)
        target_to_obj = norm((obj - target) * x_scaling)
        target_to_obj_init = norm((obj - obj_init) * x_scaling)
        in_place = tolerance_long_tail(target_to_obj, 0, self.TARGET_RADIUS, target_to_obj_init)
        goal_line = target[:, 1] - 0.1
        wide = (obj[:, 1] > goal_line) & (np.abs(obj[:, 0] - target[:, 0]) > 0.10)
        penalised = in_place - 2 * ((obj[:, 1] - goal_line) / (1 - goal_line))
        in_place = np.where(wide, np.clip(penalised, 0.0, 1.0), in_place)
        radius = self.OBJ_RADIUS
        grasped = pad_caging(frame, obj, radius, radius + 0.01, 0.005)
        reward = (3 * grasped) + (6.5 * in_place)
        reward = np.where(target_to_obj < self.TARGET_RADIUS, 10.0, reward)
        obj_to_target = norm(obj - target)
        success, near_object = obj_to_target <= 0.07, tcp_to_obj <= 0.03
        touching = grasp_success(frame, obj, tcp_opened)
        return reward, infos(
            reward, success, near_object, touching, grasped, in_place, obj_to_target
        )


class _Stick(Skill):
    """The stick skills' observation: the stick body and its frame, then the insertion site
    (offset by `INSERTION_OFFSET`) with a zero quaternion."""

    bodies = ("stick", "leftpad", "rightpad")
    sites = ("rightEndEffector", "leftEndEffector", "insertion", "stick_end")
    geoms = ("objGeom",)
    consts = ("_target_pos", "obj_init_pos", "stick_init_pos", "init_tcp")
    INSERTION_OFFSET = np.zeros(3)

    def objects(self, frame: Frame) -> np.ndarray:
        stick = np.concatenate([frame.body("stick"), body_matrix_quat(frame, "stick")], axis=1)
        insertion = without_quat(frame.site("insertion") + self.INSERTION_OFFSET)
        return np.concatenate([stick, insertion], axis=1)


class StickPull(_Stick):
    """`SawyerStickPullEnvV3` (sawyer_stick_pull_v3.py): hook the stick in the container's
    handle and pull it. Its caging is the shared one (from `obj_init_pos`, the container)."""

    name = "stick-pull-v3"

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius = 0.05
        tcp, stick, tcp_opened = frame.tcp_center, obs[:, 4:7], obs[:, 3]
        end_of_stick = frame.site("stick_end")
        offset = np.array([0.05, 0.0, 0.0])
        container = obs[:, 11:14] + offset
        container_init = frame.consts["obj_init_pos"] + offset
        handle = obs[:, 11:14]
        target, stick_init = frame.consts["_target_pos"], frame.consts["stick_init_pos"]
        tcp_to_stick = norm(stick - tcp)
        handle_to_target = norm(handle - target)
        yz_scaling = np.array([1.0, 1.0, 2.0])
        stick_to_container = norm((stick - container) * yz_scaling)
        stick_in_place_margin = norm((stick_init - container_init) * yz_scaling)
        stick_in_place = tolerance_long_tail(stick_to_container, 0, radius, stick_in_place_margin)
        stick_to_target = norm(stick - target)
        stick_in_place_2 = tolerance_long_tail(
            stick_to_target, 0, radius, norm(stick_init - target)
        )
        container_to_target = norm(container - target)
        container_in_place = tolerance_long_tail(
            container_to_target, 0, radius, norm(frame.consts["obj_init_pos"] - target)
        )
        grasped, single = gripper_caging_reward(frame, action, stick, 0.014, 0.05, 0.01)
        held_stick = held(tcp_to_stick, 0.02, tcp_opened, stick, stick_init)
        grasped = np.where(held_stick, 1.0, grasped)
        single = single & ~held_stick
        in_place_and_grasped = hamacher_product(grasped, stick_in_place)
        if single.any():  # `grasped` is float32 there (`caging_and_gripping`)
            product32 = hamacher_single(grasped, stick_in_place).astype(np.float64)
            in_place_and_grasped = np.where(single, product32, in_place_and_grasped)
        inserted = (
            (end_of_stick[:, 0] >= handle[:, 0])
            & (np.abs(end_of_stick[:, 1] - handle[:, 1]) <= 0.040)
            & (np.abs(end_of_stick[:, 2] - handle[:, 2]) <= 0.060)
        )
        lifted = 1.0 + in_place_and_grasped + 5.0 * stick_in_place
        hooked = (
            1.0 + in_place_and_grasped + 5.0 + 2.0 * stick_in_place_2 + 1.0 * container_in_place
        )
        hooked = np.where(handle_to_target <= 0.12, 10.0, hooked)
        reward = np.where(held_stick, np.where(inserted, hooked, lifted), in_place_and_grasped)
        success, near_object = (handle_to_target <= 0.12) & inserted, tcp_to_stick <= 0.03
        touching = grasp_success(frame, stick, tcp_opened)
        return reward, infos(
            reward, success, near_object, touching, grasped, stick_in_place, handle_to_target
        )


class StickPush(_Stick):
    """`SawyerStickPushEnvV3` (sawyer_stick_push_v3.py): push the container with the stick.
    Its caging reward is the shared one measured from `stick_init_pos`."""

    name = "stick-push-v3"
    INSERTION_OFFSET = np.array([0.0, 0.09, 0.0])

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        radius = 0.12
        tcp, tcp_opened = frame.tcp_center, obs[:, 3]
        stick = obs[:, 4:7] + np.array([0.015, 0.0, 0.0])
        container = obs[:, 11:14]
        target, stick_init = frame.consts["_target_pos"], frame.consts["stick_init_pos"]
        tcp_to_stick = norm(stick - tcp)
        stick_to_target = norm(stick - target)
        stick_in_place = tolerance_long_tail(
            stick_to_target, 0, radius, norm(stick_init - target) - radius
        )
        container_to_target = norm(container - target)
        container_in_place = tolerance_long_tail(
            container_to_target,
            0,
            radius,
            norm(frame.consts["obj_init_pos"] - target) - radius,
        )
        from_stick = dataclasses.replace(frame, consts={**frame.consts, "obj_init_pos": stick_init})
        grasped, _ = gripper_caging_reward(from_stick, action, stick, 0.04, 0.05, 0.01)
        held_stick = held(tcp_to_stick, 0.02, tcp_opened, stick, stick_init)
        pushed = 2.0 + 5.0 * stick_in_place + 3.0 * container_in_place
        pushed = np.where(container_to_target <= radius, 10.0, pushed)
        reward = np.where(held_stick, pushed, grasped)
        grasped = np.where(held_stick, 1.0, grasped)
        # `evaluate_state`'s own test, on the observed stick (without the 0.015 offset)
        cheap = opened_and_lifted(tcp_opened, obs[:, 4:7], stick_init, 0.01)
        touching = cheap & frame.touching(cheap, "objGeom")
        success, near_object = touching & (norm(container - target) <= 0.12), tcp_to_stick <= 0.03
        return reward, infos(
            reward, success, near_object, touching, grasped, stick_in_place, container_to_target
        )


# -- a window closed by its handle -------------------------------------------------------------


class WindowClose(HandleSite):
    """`SawyerWindowCloseEnvV3` (sawyer_window_close_v3.py): slide the window shut by its
    handle (window-open's reward the other way, with a gaussian reach)."""

    name = "window-close-v3"
    sites = ("rightEndEffector", "leftEndEffector", "handleCloseStart")
    consts = ("_target_pos", "init_tcp", "window_handle_pos_init")
    SITE, AXIS, TARGET_RADIUS, GAUSSIAN_REACH = "handleCloseStart", 0, 0.05, True
    IN_PLACE_INIT = REACH_INIT = "window_handle_pos_init"
