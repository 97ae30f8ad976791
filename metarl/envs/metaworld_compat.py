"""Meta-World 3.1.1 on MuJoCo 4: the one line where the two disagree, and nothing else.

Meta-World 3.1.1 pins `mujoco==3.3.0`; metarl's vector MuJoCo envs use `mujoco.batch` from
MuJoCo 4. The only break between the two for Meta-World is `SawyerMocapBase.reset_mocap_welds`,
which writes an 11-wide weld row (anchor 3, relative pose 3 + 4, torque scale 1) into
`model.eq_data`, whose rows MuJoCo 4 widened to `mujoco.mjNEQDATA` = 12: the assignment raises
a broadcast error when any Meta-World env is built. `patch_for_mujoco` writes the same 11
values into the first 11 columns and leaves MuJoCo 4's extra column at the model's own value.

Faithfulness is measured, not assumed: `tests/test_metaworld.py` replays Meta-World's scripted
expert policies on ML1 test goals and compares with a reference recorded under MuJoCo 3.3.0
(`scripts/tools/metaworld_reference.py`): the same goals succeed and the first successful step
moves by at most 3 of 500 steps, and the observations after reset stay within 2e-3 (what the
test asserts). MuJoCo 4's solver differs in the last digits, and in contact (the gripper
pushing an object) the paths drift apart (docs/results/meta-world.md), still ending in the same
successes. Run records keep both
versions.
"""

from __future__ import annotations

from typing import Any

WELD_ROW = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0)
"""Meta-World's weld data (MuJoCo 3's 11 columns), as `reset_mocap_welds` writes it."""


def needs_patch() -> bool:
    """Whether the installed MuJoCo's weld rows are wider than the 11 Meta-World writes."""
    import mujoco

    return int(getattr(mujoco, "mjNEQDATA", len(WELD_ROW))) != len(WELD_ROW)


def patch_for_mujoco(metaworld_module: Any) -> bool:
    """Make Meta-World's mocap weld reset write its 11 values into MuJoCo 4's wider rows.
    Idempotent; returns whether the patch is in place (False where MuJoCo needs none)."""
    if not needs_patch():
        return False
    import mujoco
    from metaworld import sawyer_xyz_env

    base = sawyer_xyz_env.SawyerMocapBase
    if getattr(base.reset_mocap_welds, "_metarl_patched", False):
        return True

    def reset_mocap_welds(self: Any) -> None:
        """Meta-World's reset of the mocap welds, writing its 11 columns of each weld row."""
        if self.model.nmocap > 0 and self.model.eq_data is not None:
            for i in range(self.model.eq_data.shape[0]):
                if self.model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                    self.model.eq_data[i, : len(WELD_ROW)] = WELD_ROW

    reset_mocap_welds._metarl_patched = True  # type: ignore[attr-defined]
    base.reset_mocap_welds = reset_mocap_welds  # type: ignore[method-assign]
    return True


EXPERTS = {
    "reach-v3": "SawyerReachV3Policy",
    "push-v3": "SawyerPushV3Policy",
    "pick-place-v3": "SawyerPickPlaceV3Policy",
}
"""The ML1 skills whose scripted expert the fidelity check replays."""


def expert_replay(skill: str, goals: int, seed: int = 0) -> dict[str, Any]:
    """Meta-World's scripted expert on the first `goals` ML1 test goals of `skill` (benchmark
    seed `seed`, goal visible to the expert): per goal, the first step with
    `info["success"]` (-1 if none in 500 steps), and the observation after reset and after
    40 steps. What the fidelity test compares across MuJoCo versions."""
    import metaworld
    from metaworld import policies

    patch_for_mujoco(metaworld)
    ml1 = metaworld.ML1(skill, seed=seed)
    env = ml1.test_classes[skill]()
    expert = getattr(policies, EXPERTS[skill])()
    first_success, obs_reset, obs_40 = [], [], []
    for task in ml1.test_tasks[:goals]:
        env.set_task(task)
        env._partially_observable = False  # the expert reads the goal from the observation
        obs, _ = env.reset(seed=seed)
        obs_reset.append(obs.tolist())
        first = -1
        for t in range(500):
            obs, _, _, truncated, info = env.step(expert.get_action(obs))
            if t == 39:
                obs_40.append(obs.tolist())
            if info["success"] and first < 0:
                first = t
            if truncated or (first >= 0 and t >= 39):
                break
        first_success.append(first)
    env.close()
    return {"first_success": first_success, "obs_reset": obs_reset, "obs_40": obs_40}


__all__ = ["EXPERTS", "WELD_ROW", "expert_replay", "needs_patch", "patch_for_mujoco"]
