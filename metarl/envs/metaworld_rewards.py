"""Meta-World's V2 rewards, observations and infos over many sub-envs at once, in NumPy.

Each `Skill` here is one Meta-World v3 env's `_get_pos_objects` / `_get_quat_objects` /
`evaluate_state` written over arrays with a leading sub-env axis: the same operations in the
same order on the same float64 values, so the numbers are Meta-World's bit for bit where
NumPy's elementwise kernels agree with its scalar ones (checked step for step against
Meta-World's own env over whole episodes by `tests/test_metaworld_vector.py`). The batched
engine (`metarl.envs.metaworld_vector`) steps the physics; a skill reads the rows it needs
from a `Frame` of the batch's outputs.

What is translated and what is not: `metarl.envs.metaworld_skills.SKILLS` names the skills
with a batched step; any other skill (and the V1 rewards) runs on Meta-World's own env.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

LONG_TAIL_SCALE = float(np.sqrt(1 / 0.1 - 1))
"""dm_control's `long_tail` sigmoid scale at Meta-World's value 0.1 at the margin."""


# -- the arithmetic of metaworld.utils.reward_utils and SawyerXYZEnv, over rows ------------------


def norm(x: np.ndarray) -> np.ndarray:
    """`np.linalg.norm` of each row's last axis (the same sum order for 2- and 3-vectors)."""
    return np.sqrt((x * x).sum(-1))


def squared(y: np.ndarray) -> np.ndarray:
    """`y ** 2` as NumPy computes it on one float64 scalar (C's `pow`), which differs from
    the array operator's `y * y` in the last bit for about 1 value in 1,300."""
    return np.float_power(y, np.full(np.shape(y), 2.0))


def tolerance_long_tail(
    x: np.ndarray, lower: float, upper: float, margin: np.ndarray | float
) -> np.ndarray:
    """`reward_utils.tolerance(x, bounds=(lower, upper), margin, sigmoid="long_tail")` per row;
    rows whose margin is 0 get 0 outside the bounds, as the scalar function does."""
    x = np.asarray(x, dtype=np.float64)
    margin = np.broadcast_to(np.asarray(margin, dtype=np.float64), x.shape)
    in_bounds = np.logical_and(lower <= x, x <= upper)
    safe = np.where(margin == 0, 1.0, margin)
    d = np.where(x < lower, lower - x, x - upper) / safe
    value = np.where(in_bounds, 1.0, 1 / (squared(d * LONG_TAIL_SCALE) + 1))
    return np.where(margin == 0, np.where(in_bounds, 1.0, 0.0), value)


def hamacher_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`reward_utils.hamacher_product` per row: a b / (a + b - a b), 0 where that is 0 / 0."""
    denominator = a + b - (a * b)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, (a * b) / safe, 0.0)


@dataclass
class Frame:
    """What one step of the physics gives a skill, every array with a leading sub-env axis:
    MuJoCo's `xpos` `[n, nbody, 3]`, `xquat` `[n, nbody, 4]`, `site_xpos` `[n, nsite, 3]`,
    `geom_xpos` `[n, ngeom, 3]`, `geom_xmat` `[n, ngeom, 9]`, `qpos` `[n, nq]`, `qvel`
    `[n, nv]` after Meta-World's final `mj_forward`; `consts` are the per-sub-env values
    Meta-World's reset computed (`Skill.consts`), `[n, ...]` each; `ids` the model's ids by
    `"body:NAME"`, `"site:NAME"`, `"geom:NAME"`, `"joint:NAME"` (qpos address) for the names
    the skill declares."""

    xpos: np.ndarray
    xquat: np.ndarray
    site_xpos: np.ndarray
    geom_xpos: np.ndarray
    geom_xmat: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    consts: dict[str, np.ndarray]
    ids: dict[str, int]
    touching: Callable[[np.ndarray, str], np.ndarray]
    """`touching(rows, geom)`: Meta-World's `touching_object` for the rows given (a bool mask),
    False elsewhere; contacts are computed only for those rows."""
    elapsed: np.ndarray | None = None
    """Each row's step count in its episode, 1 on its first step: for rewards that keep a
    value from an episode's first step (bin-picking's `_target_to_obj_init`)."""

    def body(self, name: str) -> np.ndarray:
        return self.xpos[:, self.ids[f"body:{name}"]]

    def site(self, name: str) -> np.ndarray:
        return self.site_xpos[:, self.ids[f"site:{name}"]]

    def body_quat(self, name: str) -> np.ndarray:
        return self.xquat[:, self.ids[f"body:{name}"]]

    def geom(self, name: str) -> np.ndarray:
        return self.geom_xpos[:, self.ids[f"geom:{name}"]]

    def joint_qpos(self, name: str) -> np.ndarray:
        """The joint's first qpos value per row (`data.joint(name).qpos[0]`)."""
        return self.qpos[:, self.ids[f"joint:{name}"]]

    def geom_matrix(self, name: str) -> np.ndarray:
        return self.geom_xmat[:, self.ids[f"geom:{name}"]].reshape(-1, 3, 3)

    @property
    def tcp_center(self) -> np.ndarray:
        """`SawyerXYZEnv.tcp_center`: the midpoint of the two finger sites."""
        return (self.site("rightEndEffector") + self.site("leftEndEffector")) / 2.0


def quaternion(matrices: np.ndarray) -> np.ndarray:
    """`Rotation.from_matrix(m).as_quat()` of each `[3, 3]` matrix (SciPy's, x y z w)."""
    from scipy.spatial.transform import Rotation

    return np.asarray(Rotation.from_matrix(matrices).as_quat()).reshape(-1, 4)


Info = dict[str, np.ndarray]


class Skill:
    """One Meta-World skill's observation of its objects and V2 reward, over rows."""

    name: ClassVar[str]
    bodies: ClassVar[tuple[str, ...]] = ()
    sites: ClassVar[tuple[str, ...]] = ("rightEndEffector", "leftEndEffector")
    geoms: ClassVar[tuple[str, ...]] = ()
    joints: ClassVar[tuple[str, ...]] = ()
    consts: ClassVar[tuple[str, ...]] = ("_target_pos",)
    """Env attributes Meta-World's reset sets and the reward reads, captured per task."""

    def objects(self, frame: Frame) -> np.ndarray:
        """`hstack((pos, quat) per object)`, `[n, 7 * objects]` (before the padding to 14)."""
        raise NotImplementedError

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        """The env's `evaluate_state(obs, action)` for every row: rewards `[n]` and infos."""
        raise NotImplementedError


class _OneObject(Skill):
    """Skills whose observation is body `obj`'s position and geom `objGeom`'s quaternion."""

    bodies = ("obj", "leftpad", "rightpad")
    geoms = ("objGeom",)

    def objects(self, frame: Frame) -> np.ndarray:
        quat = quaternion(frame.geom_matrix("objGeom"))
        return np.concatenate([frame.body("obj"), quat], axis=1)


class Reach(_OneObject):
    """`SawyerReachEnvV3` (sawyer_reach_v3.py)."""

    name = "reach-v3"
    consts = ("_target_pos", "hand_init_pos")

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        target = frame.consts["_target_pos"]
        tcp_to_target = norm(frame.tcp_center - target)
        in_place_margin = norm(frame.consts["hand_init_pos"] - target)
        in_place = tolerance_long_tail(tcp_to_target, 0, 0.05, in_place_margin)
        reward = 10 * in_place
        info = {
            "success": (tcp_to_target <= 0.05).astype(np.float64),
            "near_object": tcp_to_target,
            "grasp_success": np.ones_like(reward),
            "grasp_reward": tcp_to_target,
            "in_place_reward": in_place,
            "obj_to_target": tcp_to_target,
            "unscaled_reward": reward,
        }
        return reward, info


def _gripper_caging_reward(
    frame: Frame,
    action: np.ndarray,
    obj_pos: np.ndarray,
    obj_radius: float,
    pad_success_thresh: float,
    xz_thresh: float,
) -> tuple[np.ndarray, np.ndarray]:
    """`SawyerXYZEnv._gripper_caging_reward(..., high_density=True)` over rows."""
    caging = gripper_caging(frame, obj_pos, obj_radius, pad_success_thresh, xz_thresh)
    return caging_and_gripping(caging, action)


def gripper_caging(
    frame: Frame,
    obj_pos: np.ndarray,
    obj_radius: float,
    pad_success_thresh: float,
    xz_thresh: float,
) -> np.ndarray:
    """The `caging` term of `SawyerXYZEnv._gripper_caging_reward` over rows (before the
    gripper's effort enters; the skills combine the two by their own density)."""
    obj_init = frame.consts["obj_init_pos"]
    pad_y_lr = np.stack([frame.body("leftpad")[:, 1], frame.body("rightpad")[:, 1]], axis=1)
    pad_to_obj_lr = np.abs(pad_y_lr - obj_pos[:, 1:2])
    pad_to_objinit_lr = np.abs(pad_y_lr - obj_init[:, 1:2])
    caging_lr_margin = np.abs(pad_to_objinit_lr - pad_success_thresh)
    left, right = (
        tolerance_long_tail(
            pad_to_obj_lr[:, i], obj_radius, pad_success_thresh, caging_lr_margin[:, i]
        )
        for i in range(2)
    )
    caging_y = hamacher_product(left, right)
    tcp = frame.tcp_center
    xz = [0, 2]
    caging_xz_margin = norm(obj_init[:, xz] - frame.consts["init_tcp"][:, xz])
    caging_xz_margin = caging_xz_margin - xz_thresh
    caging_xz = tolerance_long_tail(
        norm(tcp[:, xz] - obj_pos[:, xz]), 0, xz_thresh, caging_xz_margin
    )
    return hamacher_product(caging_y, caging_xz)


def caging_and_gripping(
    caging: np.ndarray,
    action: np.ndarray,
    desired_gripper_effort: float = 1.0,
    high_density: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The end of the caging rewards: `hamacher(caging, gripping)`, averaged with `caging`
    where `high_density`; gripping is `min(max(0, effort), desired) / desired` of the
    action's gripper effort where `caging > 0.97`, else 0.

    Where the action is float32 (a policy's) and `0 < effort <= desired`, Meta-World's
    `gripping` is a NumPy float32 scalar (`min` keeps it, the division by a Python float
    stays float32) and, by NumPy's promotion rules, the product and everything computed from
    it is float32. Returns the values (float64 arrays holding those float32 values where they
    are such) and the mask of the float32 rows (`single`)."""
    effort = action[:, -1]
    desired = desired_gripper_effort
    caging = np.asarray(caging, dtype=np.float64)
    closed = np.minimum(np.maximum(0, effort.astype(np.float64)), desired) / desired
    value = hamacher_product(caging, np.where(caging > 0.97, closed, 0.0))
    if high_density:
        value = (value + caging) / 2
    single = (caging > 0.97) & (effort > 0) & (effort.dtype == np.float32)
    single &= effort <= np.float32(desired)
    if single.any():
        c = caging.astype(np.float32)
        value32 = hamacher_single(c, effort.astype(np.float32) / np.float32(desired))
        if high_density:
            value32 = (value32 + c) / np.float32(2)
        value = np.where(single, value32.astype(np.float64), value)
    return value, single


def hamacher_single(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`hamacher_product` in float32 (where an operand is a NumPy float32 scalar)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    denominator = a + b - (a * b)
    safe = np.where(denominator > 0, denominator, np.float32(1))
    return np.where(denominator > 0, (a * b) / safe, np.float32(0))


def _drop_y(points: np.ndarray) -> np.ndarray:
    """`p + np.array([0.0, -p[1], 0.0])` per row (pick-place's x-z plane)."""
    offset = np.zeros_like(points)
    offset[:, 1] = -points[:, 1]
    return points + offset


def _grasp_success(frame: Frame, obj: np.ndarray, tcp_opened: np.ndarray) -> np.ndarray:
    """`touching_main_object and tcp_opened > 0 and obj[2] - 0.02 > obj_init_pos[2]`: the
    contacts are computed only where the two cheap conditions hold (the same value)."""
    cheap = (tcp_opened > 0) & (obj[:, 2] - 0.02 > frame.consts["obj_init_pos"][:, 2])
    return (cheap & frame.touching(cheap, "objGeom")).astype(np.float64)


class Push(_OneObject):
    """`SawyerPushEnvV3` (sawyer_push_v3.py)."""

    name = "push-v3"
    consts = ("_target_pos", "obj_init_pos", "init_tcp")
    TARGET_RADIUS = 0.05

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        target, obj_init = frame.consts["_target_pos"], frame.consts["obj_init_pos"]
        tcp_to_obj = norm(obj - frame.tcp_center)
        target_to_obj = norm(obj - target)
        target_to_obj_init = norm(obj_init - target)
        in_place = tolerance_long_tail(target_to_obj, 0, self.TARGET_RADIUS, target_to_obj_init)
        object_grasped, single = _gripper_caging_reward(frame, action, obj, 0.015, 0.05, 0.005)
        reward = 2 * object_grasped
        near = (tcp_to_obj < 0.02) & (tcp_opened > 0)
        bonus = reward + (1.0 + reward + 5.0 * in_place)
        if single.any():  # `reward` is float32 there (`caging_and_gripping`)
            r = reward.astype(np.float32)
            bonus32 = r + ((np.float32(1.0) + r) + (5.0 * in_place).astype(np.float32))
            bonus = np.where(single, bonus32.astype(np.float64), bonus)
        reward = np.where(near, bonus, reward)
        reward = np.where(target_to_obj < self.TARGET_RADIUS, 10.0, reward)
        info = {
            "success": (target_to_obj <= self.TARGET_RADIUS).astype(np.float64),
            "near_object": (tcp_to_obj <= 0.03).astype(np.float64),
            "grasp_success": _grasp_success(frame, obj, tcp_opened),
            "grasp_reward": object_grasped,
            "in_place_reward": in_place,
            "obj_to_target": target_to_obj,
            "unscaled_reward": reward,
        }
        return reward, info


class PickPlace(_OneObject):
    """`SawyerPickPlaceEnvV3` (sawyer_pick_place_v3.py), with its own caging reward. Its
    `init_left_pad` / `init_right_pad` are live views of the pads' current positions
    (`get_body_com` returns a view of `data.xpos`), so the reward reads the current pads."""

    name = "pick-place-v3"
    consts = ("_target_pos", "obj_init_pos", "init_tcp")

    def _caging(
        self, frame: Frame, action: np.ndarray, obj_pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        pad_success_margin, x_z_success_margin, obj_radius = 0.05, 0.005, 0.015
        tcp = frame.tcp_center
        left_pad, right_pad = frame.body("leftpad"), frame.body("rightpad")
        delta_object_y_left_pad = left_pad[:, 1] - obj_pos[:, 1]
        delta_object_y_right_pad = obj_pos[:, 1] - right_pad[:, 1]
        right_caging_margin = abs(abs(obj_pos[:, 1] - right_pad[:, 1]) - pad_success_margin)
        left_caging_margin = abs(abs(obj_pos[:, 1] - left_pad[:, 1]) - pad_success_margin)
        right_caging = tolerance_long_tail(
            delta_object_y_right_pad, obj_radius, pad_success_margin, right_caging_margin
        )
        left_caging = tolerance_long_tail(
            delta_object_y_left_pad, obj_radius, pad_success_margin, left_caging_margin
        )
        y_caging = hamacher_product(left_caging, right_caging)
        tcp_obj_norm_x_z = norm(_drop_y(tcp) - _drop_y(obj_pos))
        obj_init, init_tcp = frame.consts["obj_init_pos"], frame.consts["init_tcp"]
        init_obj_x_z, init_tcp_x_z = _drop_y(obj_init), _drop_y(init_tcp)
        margin = norm(init_obj_x_z - init_tcp_x_z) - x_z_success_margin
        x_z_caging = tolerance_long_tail(tcp_obj_norm_x_z, 0, x_z_success_margin, margin)
        return caging_and_gripping(hamacher_product(y_caging, x_z_caging), action)

    def evaluate_state(
        self, frame: Frame, obs: np.ndarray, action: np.ndarray
    ) -> tuple[np.ndarray, Info]:
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        target, obj_init = frame.consts["_target_pos"], frame.consts["obj_init_pos"]
        obj_to_target = norm(obj - target)
        tcp_to_obj = norm(obj - frame.tcp_center)
        in_place_margin = norm(obj_init - target)
        in_place = tolerance_long_tail(obj_to_target, 0, 0.05, in_place_margin)
        object_grasped, single = self._caging(frame, action, obj)
        reward = hamacher_product(object_grasped, in_place)
        bonus = 1.0 + 5.0 * in_place
        lifted_reward = reward + bonus
        if single.any():  # `object_grasped` is float32 there (`caging_and_gripping`)
            reward32 = hamacher_single(object_grasped, in_place)
            reward = np.where(single, reward32.astype(np.float64), reward)
            lifted32 = reward32 + bonus.astype(np.float32)
            lifted_reward = np.where(single, lifted32.astype(np.float64), lifted_reward)
        lifted = (tcp_to_obj < 0.02) & (tcp_opened > 0) & (obj[:, 2] - 0.01 > obj_init[:, 2])
        reward = np.where(lifted, lifted_reward, reward)
        reward = np.where(obj_to_target < 0.05, 10.0, reward)
        info = {
            "success": (obj_to_target <= 0.07).astype(np.float64),
            "near_object": (tcp_to_obj <= 0.03).astype(np.float64),
            "grasp_success": _grasp_success(frame, obj, tcp_opened),
            "grasp_reward": object_grasped,
            "in_place_reward": in_place,
            "obj_to_target": obj_to_target,
            "unscaled_reward": reward,
        }
        return reward, info


__all__ = [
    "Frame",
    "Skill",
    "caging_and_gripping",
    "gripper_caging",
    "hamacher_product",
    "norm",
    "tolerance_long_tail",
]
