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
from functools import cached_property
from typing import ClassVar, NamedTuple

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


GAUSSIAN_SCALE = np.sqrt(-2 * np.log(0.1))
"""dm_control's `gaussian` sigmoid scale at Meta-World's value 0.1 at the margin (a NumPy
float64, as the scalar code computes it)."""


def _tolerance(
    x: np.ndarray,
    lower: float,
    upper: float,
    margin: np.ndarray | float,
    sigmoid: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """`reward_utils.tolerance(x, bounds=(lower, upper), margin, sigmoid)` per row, `sigmoid`
    of the distance past the bounds in margins; rows whose margin is 0 get 0 outside the
    bounds, as the scalar function does."""
    x = np.asarray(x, dtype=np.float64)
    margin = np.broadcast_to(np.asarray(margin, dtype=np.float64), x.shape)
    in_bounds = np.logical_and(lower <= x, x <= upper)
    safe = np.where(margin == 0, 1.0, margin)
    d = np.where(x < lower, lower - x, x - upper) / safe
    value = np.where(in_bounds, 1.0, sigmoid(d))
    return np.where(margin == 0, np.where(in_bounds, 1.0, 0.0), value)


def tolerance_long_tail(
    x: np.ndarray, lower: float, upper: float, margin: np.ndarray | float
) -> np.ndarray:
    """`reward_utils.tolerance(..., sigmoid="long_tail")` per row (`_tolerance`)."""
    return _tolerance(x, lower, upper, margin, lambda d: 1 / (squared(d * LONG_TAIL_SCALE) + 1))


def tolerance_gaussian(
    x: np.ndarray, lower: float, upper: float, margin: np.ndarray | float
) -> np.ndarray:
    """`reward_utils.tolerance(..., sigmoid="gaussian")` per row (`_tolerance`)."""
    return _tolerance(x, lower, upper, margin, lambda d: np.exp(-0.5 * squared(d * GAUSSIAN_SCALE)))


def hamacher_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`reward_utils.hamacher_product` per row: a b / (a + b - a b), 0 where that is 0 / 0."""
    denominator = a + b - (a * b)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, (a * b) / safe, 0.0)


def abs_norm(x: np.ndarray) -> np.ndarray:
    """`np.linalg.norm` of one scalar per row: `sqrt(x . x)` (equal to |x|, kept literal)."""
    return np.sqrt(x * x)


def norm4(x: np.ndarray) -> np.ndarray:
    """`np.linalg.norm` of each row (row by row: its order of summing 4 values is its own)."""
    return np.array([np.linalg.norm(row) for row in x])


def flag(mask: np.ndarray) -> np.ndarray:
    """A boolean test per row as Meta-World's info value: `float(test)`."""
    return mask.astype(np.float64)


def drop_y(points: np.ndarray) -> np.ndarray:
    """`p + np.array([0.0, -p[1], 0.0])` per row (the caging rewards' x-z plane)."""
    offset = np.zeros_like(points)
    offset[:, 1] = -points[:, 1]
    return points + offset


@dataclass
class Frame:
    """What one step of the physics gives a skill, every array with a leading sub-env axis:
    MuJoCo's `xpos` `[n, nbody, 3]`, `xquat` `[n, nbody, 4]`, `xmat` `[n, nbody, 9]`,
    `site_xpos` `[n, nsite, 3]`,
    `geom_xpos` `[n, ngeom, 3]`, `geom_xmat` `[n, ngeom, 9]`, `qpos` `[n, nq]`, `qvel`
    `[n, nv]` after Meta-World's final `mj_forward`; `consts` are the per-sub-env values
    Meta-World's reset computed (`Skill.consts`), `[n, ...]` each; `ids` the model's ids by
    `"body:NAME"`, `"site:NAME"`, `"geom:NAME"`, `"joint:NAME"` (qpos address) for the names
    the skill declares."""

    xpos: np.ndarray
    xquat: np.ndarray
    xmat: np.ndarray
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

    def body_matrix(self, name: str) -> np.ndarray:
        """The body's `xmat` rows, `[n, 3, 3]` (`data.body(name).xmat`)."""
        return self.xmat[:, self.ids[f"body:{name}"]].reshape(-1, 3, 3)

    @cached_property
    def tcp_center(self) -> np.ndarray:
        """`SawyerXYZEnv.tcp_center`: the midpoint of the two finger sites (computed once a
        frame: most rewards read it several times)."""
        return (self.site("rightEndEffector") + self.site("leftEndEffector")) / 2.0


def quaternion(matrices: np.ndarray) -> np.ndarray:
    """`Rotation.from_matrix(m).as_quat()` of each `[3, 3]` matrix (SciPy's, x y z w)."""
    from scipy.spatial.transform import Rotation

    return np.asarray(Rotation.from_matrix(matrices).as_quat()).reshape(-1, 4)


def with_quat(pos: np.ndarray, quat: np.ndarray) -> np.ndarray:
    """One object's observation: its position and quaternion, `[n, 7]`."""
    return np.concatenate([pos, quat], axis=1)


def without_quat(pos: np.ndarray) -> np.ndarray:
    """A position with the zero quaternion of envs whose `_get_quat_objects` is zeros(4)."""
    return with_quat(pos, np.zeros((len(pos), 4)))


def body_object(frame: Frame, body: str) -> np.ndarray:
    """A body's position (`get_body_com`) and its `xquat`."""
    return with_quat(frame.body(body), frame.body_quat(body))


def geom_object(frame: Frame, geom: str) -> np.ndarray:
    """A geom's position and the quaternion of its frame (`Rotation.from_matrix(xmat)`)."""
    return with_quat(frame.geom(geom), quaternion(frame.geom_matrix(geom)))


def body_matrix_quat(frame: Frame, body: str) -> np.ndarray:
    """`Rotation.from_matrix(data.body(body).xmat).as_quat()` per row: SciPy's quaternion
    of the matrix MuJoCo's kinematics derives from the body's `xquat`."""
    return quaternion(frame.body_matrix(body))


Info = dict[str, np.ndarray]
Evaluation = tuple[np.ndarray, Info]
"""What `evaluate_state` returns: the rewards `[n]` and the infos."""


def infos(
    reward: np.ndarray,
    success: np.ndarray,
    near_object: np.ndarray | float,
    grasp_success: np.ndarray | float,
    grasp_reward: np.ndarray | float,
    in_place_reward: np.ndarray,
    obj_to_target: np.ndarray | float,
) -> Info:
    """Meta-World's info values of `evaluate_state` per row, with `unscaled_reward`: a boolean
    test becomes its 0/1 float (`float(test)`), a constant fills every row. The arguments are
    in the order every skill's `evaluate_state` writes its info dict, so a skill passes its
    six values in one line."""

    def value(v: np.ndarray | float) -> np.ndarray:
        v = np.asarray(v)
        if v.dtype == bool:
            return v.astype(np.float64)
        return np.full(reward.shape, float(v)) if v.ndim == 0 else v

    return {
        "success": value(success),
        "near_object": value(near_object),
        "grasp_success": value(grasp_success),
        "grasp_reward": value(grasp_reward),
        "in_place_reward": value(in_place_reward),
        "obj_to_target": value(obj_to_target),
        "unscaled_reward": reward,
    }


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

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        """The env's `evaluate_state(obs, action)` for every row: rewards `[n]` and infos."""
        raise NotImplementedError


class OneObject(Skill):
    """Skills that move one object to a target: observed as body `obj`'s position and the
    quaternion of the frame of their first geom (`objGeom` unless the skill names another),
    their reward reading the reset's target, object and hand."""

    bodies: ClassVar[tuple[str, ...]] = ("obj", "leftpad", "rightpad")
    geoms: ClassVar[tuple[str, ...]] = ("objGeom",)
    consts: ClassVar[tuple[str, ...]] = ("_target_pos", "obj_init_pos", "init_tcp")

    def objects(self, frame: Frame) -> np.ndarray:
        return with_quat(frame.body("obj"), quaternion(frame.geom_matrix(self.geoms[0])))


class Reach(OneObject):
    """`SawyerReachEnvV3` (sawyer_reach_v3.py)."""

    name = "reach-v3"
    consts = ("_target_pos", "hand_init_pos")

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        target = frame.consts["_target_pos"]
        tcp_to_target = norm(frame.tcp_center - target)
        in_place_margin = norm(frame.consts["hand_init_pos"] - target)
        in_place = tolerance_long_tail(tcp_to_target, 0, 0.05, in_place_margin)
        reward = 10 * in_place
        success = tcp_to_target <= 0.05
        return reward, infos(
            reward, success, tcp_to_target, 1.0, tcp_to_target, in_place, tcp_to_target
        )


# -- caging: SawyerXYZEnv._gripper_caging_reward and the skills' own versions of it -----------


def gripper_caging(
    frame: Frame,
    obj_pos: np.ndarray,
    obj_radius: float,
    pad_success_thresh: float,
    xz_thresh: float,
) -> np.ndarray:
    """The `caging` term of `SawyerXYZEnv._gripper_caging_reward` over rows (before the
    gripper's effort enters; `gripper_caging_reward` combines the two by a density)."""
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


def gripper_caging_reward(
    frame: Frame,
    action: np.ndarray,
    obj_pos: np.ndarray,
    obj_radius: float,
    pad_success_thresh: float,
    xz_thresh: float,
    *,
    desired_gripper_effort: float = 1.0,
    high_density: bool = True,
    reach_radius: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`SawyerXYZEnv._gripper_caging_reward` over rows: high density (averaged with the
    caging term), medium density where `reach_radius` (its `object_reach_radius`) is given
    with `high_density=False` (averaged with the reach term), or neither. Returns the values
    (float64 arrays holding float32 values where Meta-World's are float32) and the mask of
    those rows (`caging_and_gripping`)."""
    if high_density and reach_radius is not None:
        raise ValueError(
            "gripper_caging_reward: reach_radius (medium density) needs high_density=False"
        )
    caging = gripper_caging(frame, obj_pos, obj_radius, pad_success_thresh, xz_thresh)
    value, single = caging_and_gripping(caging, action, desired_gripper_effort, high_density)
    if reach_radius is None:
        return value, single
    tcp_to_obj = norm(obj_pos - frame.tcp_center)
    tcp_to_obj_init = norm(frame.consts["obj_init_pos"] - frame.consts["init_tcp"])
    reach = tolerance_long_tail(tcp_to_obj, 0, reach_radius, np.abs(tcp_to_obj_init - reach_radius))
    value32 = (value.astype(np.float32) + reach.astype(np.float32)) / np.float32(2)
    return np.where(single, value32.astype(np.float64), (value + reach) / 2), single


def pad_y_caging(
    frame: Frame, obj: np.ndarray, obj_radius: float, bound: float, pad_success_margin: float = 0.05
) -> np.ndarray:
    """The y-caging of the skills with their own caging reward (pick-place, sweeps, push-back,
    soccer): `hamacher` of each pad's y distance to the object within `[obj_radius, bound]`,
    the margins from the pads' current positions (Meta-World's `init_left_pad` /
    `init_right_pad` are live views of `data.xpos`)."""
    left_pad, right_pad = frame.body("leftpad"), frame.body("rightpad")
    delta_left = left_pad[:, 1] - obj[:, 1]
    delta_right = obj[:, 1] - right_pad[:, 1]
    right_margin = abs(abs(obj[:, 1] - right_pad[:, 1]) - pad_success_margin)
    left_margin = abs(abs(obj[:, 1] - left_pad[:, 1]) - pad_success_margin)
    right = tolerance_long_tail(delta_right, obj_radius, bound, right_margin)
    left = tolerance_long_tail(delta_left, obj_radius, bound, left_margin)
    return hamacher_product(right, left)


def xz_caging(frame: Frame, obj: np.ndarray, xz_margin: float) -> np.ndarray:
    """The hand's x-z caging of those skills, margin from the reset's object and hand."""
    tcp_obj_x_z = norm(drop_y(frame.tcp_center) - drop_y(obj))
    init_obj_x_z = drop_y(frame.consts["obj_init_pos"])
    init_tcp_x_z = drop_y(frame.consts["init_tcp"])
    margin = norm(init_obj_x_z - init_tcp_x_z) - xz_margin
    return tolerance_long_tail(tcp_obj_x_z, 0, xz_margin, margin)


def pad_caging(
    frame: Frame, obj: np.ndarray, obj_radius: float, grip_margin: float, xz_margin: float
) -> np.ndarray:
    """The `_gripper_caging_reward` of sweep, sweep-into, push-back and soccer: the caging
    (`pad_y_caging` and `xz_caging`), and for gripping the y-caging at the tighter
    `grip_margin` where the caging is above 0.95, averaged. It never reads the gripper's
    effort, so every value is float64."""
    y_caging = pad_y_caging(frame, obj, obj_radius, 0.05)
    y_gripping = pad_y_caging(frame, obj, obj_radius, grip_margin)
    caging = hamacher_product(y_caging, xz_caging(frame, obj, xz_margin))
    gripping = np.where(caging > 0.95, y_gripping, 0.0)
    return (caging + gripping) / 2


# -- float32 rows ---------------------------------------------------------------------------


def hamacher_single(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`hamacher_product` in float32 (where an operand is a NumPy float32 scalar)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    denominator = a + b - (a * b)
    safe = np.where(denominator > 0, denominator, np.float32(1))
    return np.where(denominator > 0, (a * b) / safe, np.float32(0))


def hamacher_typed(a: np.ndarray, b: np.ndarray, single: np.ndarray) -> np.ndarray:
    """`hamacher_product`, in float32 on the rows of `single` (where `a` is a float32 value in
    Meta-World, `caging_and_gripping`)."""
    value = hamacher_product(a, b)
    if single.any():
        value = np.where(single, hamacher_single(a, b).astype(np.float64), value)
    return value


def plus_bonus(reward: np.ndarray, bonus: np.ndarray, single: np.ndarray) -> np.ndarray:
    """`reward + bonus` (a float64 bonus), in float32 on the rows of `single` (where `reward`
    is a float32 value in Meta-World)."""
    total = reward + bonus
    if single.any():
        total32 = reward.astype(np.float32) + bonus.astype(np.float32)
        total = np.where(single, total32.astype(np.float64), total)
    return total


def opened_and_lifted(
    tcp_opened: np.ndarray, obj: np.ndarray, obj_init: np.ndarray, height: float
) -> np.ndarray:
    """`tcp_opened > 0 and obj[2] - height > obj_init[2]` per row: the gripper's opening
    positive and the object `height` above where it started."""
    return (tcp_opened > 0) & (obj[:, 2] - height > obj_init[:, 2])


def held(
    tcp_to_obj: np.ndarray,
    near: float,
    tcp_opened: np.ndarray,
    obj: np.ndarray,
    obj_init: np.ndarray,
    height: float = 0.01,
) -> np.ndarray:
    """`tcp_to_obj < near` and `opened_and_lifted`: the object lifted within `near` of the
    hand, the test of the lift bonus most carrying skills add."""
    return (tcp_to_obj < near) & opened_and_lifted(tcp_opened, obj, obj_init, height)


def lifted_in_grip(
    near_object: np.ndarray,
    tcp_opened: np.ndarray,
    pinch: float,
    obj: np.ndarray,
    obj_init: np.ndarray,
) -> np.ndarray:
    """Bin-picking's and pick-out-of-hole's `near_object and not pinched_without_obj and
    lifted`: the object near, the gripper's opening not below `pinch` (closed on nothing)
    and the object 2 cm above where it started."""
    return near_object & ~(tcp_opened < pinch) & (obj[:, 2] - 0.02 > obj_init[:, 2])


def grasp_success(frame: Frame, obj: np.ndarray, tcp_opened: np.ndarray) -> np.ndarray:
    """`touching_main_object and tcp_opened > 0 and obj[2] - 0.02 > obj_init_pos[2]`: the
    contacts are computed only where the two cheap conditions hold (the same value)."""
    cheap = opened_and_lifted(tcp_opened, obj, frame.consts["obj_init_pos"], 0.02)
    return cheap & frame.touching(cheap, "objGeom")


class Carry(NamedTuple):
    """The terms every skill that moves an object to a target starts from, per row."""

    obj: np.ndarray
    """The observed object (`obs[4:7]`)."""
    tcp_opened: np.ndarray
    obj_init: np.ndarray
    tcp_to_obj: np.ndarray
    obj_to_target: np.ndarray
    in_place: np.ndarray
    """Long-tail tolerance of `obj_to_target` within the target radius, margin the reset's
    distance."""


def carry(frame: Frame, obs: np.ndarray, radius: float, target: np.ndarray | None = None) -> Carry:
    """`Carry` of the observed object to `target` (default `_target_pos`)."""
    obj, tcp_opened = obs[:, 4:7], obs[:, 3]
    target = frame.consts["_target_pos"] if target is None else target
    obj_init = frame.consts["obj_init_pos"]
    obj_to_target = norm(obj - target)
    in_place = tolerance_long_tail(obj_to_target, 0, radius, norm(obj_init - target))
    tcp_to_obj = norm(obj - frame.tcp_center)
    return Carry(obj, tcp_opened, obj_init, tcp_to_obj, obj_to_target, in_place)


def carry_infos(
    frame: Frame,
    reward: np.ndarray,
    c: Carry,
    grasp_reward: np.ndarray,
    success_radius: float = 0.07,
    in_place_reward: np.ndarray | None = None,
) -> Info:
    """The infos of those skills: success within `success_radius` of the target, near within
    0.03 of the hand, `grasp_success` by the pads' contacts (`grasp_success`)."""
    success, near_object = c.obj_to_target <= success_radius, c.tcp_to_obj <= 0.03
    grasped = grasp_success(frame, c.obj, c.tcp_opened)
    in_place = c.in_place if in_place_reward is None else in_place_reward
    return infos(reward, success, near_object, grasped, grasp_reward, in_place, c.obj_to_target)


class Push(OneObject):
    """`SawyerPushEnvV3` (sawyer_push_v3.py)."""

    name = "push-v3"
    TARGET_RADIUS = 0.05

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        c = carry(frame, obs, self.TARGET_RADIUS)
        object_grasped, single = gripper_caging_reward(frame, action, c.obj, 0.015, 0.05, 0.005)
        reward = 2 * object_grasped
        near = (c.tcp_to_obj < 0.02) & (c.tcp_opened > 0)
        bonus = reward + (1.0 + reward + 5.0 * c.in_place)
        if single.any():  # `reward` is float32 there (`caging_and_gripping`)
            r = reward.astype(np.float32)
            bonus32 = r + ((np.float32(1.0) + r) + (5.0 * c.in_place).astype(np.float32))
            bonus = np.where(single, bonus32.astype(np.float64), bonus)
        reward = np.where(near, bonus, reward)
        reward = np.where(c.obj_to_target < self.TARGET_RADIUS, 10.0, reward)
        return reward, carry_infos(frame, reward, c, object_grasped, self.TARGET_RADIUS)


class PickPlace(OneObject):
    """`SawyerPickPlaceEnvV3` (sawyer_pick_place_v3.py), with its own caging reward: the
    pads' y-caging and the hand's x-z caging (`pad_y_caging`, `xz_caging`), then the gripper's
    effort as the shared reward's."""

    name = "pick-place-v3"

    def evaluate_state(self, frame: Frame, obs: np.ndarray, action: np.ndarray) -> Evaluation:
        c = carry(frame, obs, 0.05)
        obj = c.obj
        caging = hamacher_product(
            pad_y_caging(frame, obj, 0.015, 0.05), xz_caging(frame, obj, 0.005)
        )
        object_grasped, single = caging_and_gripping(caging, action)
        reward = hamacher_typed(object_grasped, c.in_place, single)
        lifted = held(c.tcp_to_obj, 0.02, c.tcp_opened, obj, c.obj_init)
        reward = np.where(lifted, plus_bonus(reward, 1.0 + 5.0 * c.in_place, single), reward)
        reward = np.where(c.obj_to_target < 0.05, 10.0, reward)
        return reward, carry_infos(frame, reward, c, object_grasped)


__all__ = [
    "Carry",
    "Evaluation",
    "Frame",
    "Info",
    "OneObject",
    "Skill",
    "abs_norm",
    "body_matrix_quat",
    "body_object",
    "caging_and_gripping",
    "carry",
    "carry_infos",
    "drop_y",
    "flag",
    "geom_object",
    "grasp_success",
    "gripper_caging",
    "gripper_caging_reward",
    "hamacher_product",
    "hamacher_single",
    "hamacher_typed",
    "held",
    "infos",
    "lifted_in_grip",
    "norm",
    "norm4",
    "opened_and_lifted",
    "pad_caging",
    "pad_y_caging",
    "plus_bonus",
    "quaternion",
    "squared",
    "tolerance_gaussian",
    "tolerance_long_tail",
    "with_quat",
    "without_quat",
    "xz_caging",
]
