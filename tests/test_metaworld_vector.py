"""The batched Meta-World step (`metarl.envs.metaworld_vector`) against Meta-World's own env.

For each skill with a batched step, sub-envs of two tasks start from Meta-World's own reset and
take the same actions as Meta-World's env, one env per sub-env, over a whole 500-step episode:
uniform random actions on one sub-env of each task, the scripted expert Meta-World ships for
the skill on the other (it reaches, grasps and carries the object, so contacts and
`grasp_success` are exercised).
Observations, rewards and every info value must be equal **bit for bit**: both sides run the
same MuJoCo on the same model and state, and the NumPy arithmetic is written in Meta-World's
order (`metaworld_rewards`), so there is no float32/float64 or summation-order slack to allow;
a tolerance would hide a translation error.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

HAVE_METAWORLD = importlib.util.find_spec("metaworld") is not None
pytestmark = pytest.mark.skipif(not HAVE_METAWORLD, reason="Meta-World not installed")


def _skills() -> list[str]:
    from metarl.envs.metaworld_skills import SKILLS

    return sorted(SKILLS)


SKILLS = _skills() if HAVE_METAWORLD else []
GRASPING = {
    "push-v3",
    "pick-place-v3",
    "hand-insert-v3",
    "pick-place-wall-v3",
    "pick-out-of-hole-v3",
    "peg-unplug-side-v3",
    "hammer-v3",
    "basketball-v3",
    "peg-insert-side-v3",
    "shelf-place-v3",
    "stick-pull-v3",
    "stick-push-v3",
    "bin-picking-v3",
    "assembly-v3",
}
"""Skills whose expert episodes must show `grasp_success` (grasps, and the contacts where
that info reads them, exercised)."""


def test_every_metaworld_skill_has_a_batched_step():
    """What docs/meta-rl.md says: all of Meta-World's v3 skills are translated."""
    from metarl.envs.metaworld import require_metaworld

    assert set(SKILLS) == set(require_metaworld().ALL_V3_ENVIRONMENTS)


def expert_of(skill: str) -> str:
    """Meta-World's scripted policy class for `skill`, from its own map: mostly named after
    the skill (door-open-v3 -> SawyerDoorOpenV3Policy), but not always
    (peg-insert-side-v3 -> SawyerPegInsertionSideV3Policy)."""
    import metaworld.policies as policies

    return policies.ENV_POLICY_MAP[skill].__name__


TASKS, ENVS_PER_TASK = 2, 2


def _both(skill: str):
    from metarl.envs.metaworld import MetaWorldDistribution, MetaWorldTask, make_skill_env
    from metarl.envs.metaworld_vector import MetaWorldVector

    dist = MetaWorldDistribution("ML1", skill.removesuffix("-v3"))
    tasks = [MetaWorldTask("ML1", dist.skill, "train", 7 * i, 0) for i in range(TASKS)]
    vec = dist.make_vector_env(TASKS, ENVS_PER_TASK)
    assert isinstance(vec, MetaWorldVector)
    vec.set_tasks([t.to_dict() for t in tasks])
    first, _ = vec.reset()
    own, goals, starts = [], [], []
    for task in tasks:
        for _ in range(ENVS_PER_TASK):
            env = make_skill_env(dist.skill, "v2")
            env.set_task(task.resolve())
            obs, _ = env.reset()
            np.testing.assert_array_equal(first[len(own)], obs.astype(np.float32))
            own.append(env)
            goals.append(np.array(env._target_pos))
            starts.append(obs)
    return vec, own, np.stack(goals), np.stack(starts)


def _compare(vec, own, act) -> dict[str, int]:
    """Step both sides 500 times with `act(obs [n, 39]) -> actions [n, 4]`; count the steps
    where Meta-World reported a grasp (so a test knows contacts were exercised)."""
    seen = {"grasp": 0, "success": 0}
    observations = None
    for step in range(500):
        actions = act(observations, step)
        got_obs, got_reward, got_truncated, got_info = vec.step_float64(actions)
        want = [env.step(actions[i]) for i, env in enumerate(own)]
        want_obs = np.stack([w[0] for w in want])
        np.testing.assert_array_equal(got_obs, want_obs, err_msg=f"observation at step {step}")
        np.testing.assert_array_equal(
            got_reward, np.array([float(w[1]) for w in want]), err_msg=f"reward at step {step}"
        )
        assert list(got_truncated) == [w[3] for w in want], step
        for key in want[0][4]:
            np.testing.assert_array_equal(
                got_info[key],
                np.array([float(w[4][key]) for w in want]),
                err_msg=f"info[{key!r}] at step {step}",
            )
        seen["grasp"] += int(np.sum(got_info["grasp_success"] > 0))
        seen["success"] += int(np.sum(got_info["success"] > 0))
        observations = want_obs
    return seen


@pytest.mark.parametrize("skill", SKILLS)
def test_the_batched_step_is_metaworlds_under_random_and_expert_actions(skill):
    """Two tasks, two sub-envs each, one whole episode: the first sub-env of each task takes
    uniform random float32 actions, the second Meta-World's scripted expert, shown the goal
    that ML1 hides from a policy and acting in float32 as a policy does. The expert solves
    the tasks, so the comparison covers reaching, grasps, carrying and success."""
    import metaworld.policies as policies

    vec, own, goals, first = _both(skill)
    expert = getattr(policies, expert_of(skill))()
    rng = np.random.default_rng(0)
    scripted = np.arange(len(own)) % ENVS_PER_TASK == 1

    def act(obs, t):
        seen = (first if obs is None else obs).copy()
        seen[:, 36:39] = goals
        actions = rng.uniform(-1, 1, (len(own), 4)).astype(np.float32)
        for i in np.flatnonzero(scripted):
            actions[i] = expert.get_action(seen[i])
        return actions

    try:
        seen = _compare(vec, own, act)
    finally:
        vec.close()
    assert seen["success"] > 0, "the expert never succeeded: the comparison missed the goal"
    if skill in GRASPING:
        assert seen["grasp"] > 0, "no grasp_success: contacts were not exercised"


def test_grip_efforts_past_the_desired_one_are_metaworlds(monkeypatch):
    """A caging reward that asks for a gripper effort below 1 (pick-out-of-hole's 0.1): the
    expert's closing efforts are replaced by random ones in (0, 1), so that, with the object
    caged, both Meta-World's float32 gripping (effort up to the desired one) and its capped
    Python-float one (effort past it) occur, and match. (Peg-unplug-side's 0.8 is not
    exercised so: its peg stays caged only under the expert's own light grip.)"""
    skill = "pick-out-of-hole-v3"
    import metaworld.policies as policies

    import metarl.envs.metaworld_rewards as rewards

    seen = {"float32": 0, "capped": 0}
    combine = rewards.caging_and_gripping

    def counted(caging, action, desired, high_density):
        value, single = combine(caging, action, desired, high_density)
        seen["float32"] += int(single.sum())
        seen["capped"] += int(((caging > 0.97) & (action[:, -1] > desired)).sum())
        return value, single

    monkeypatch.setattr(rewards, "caging_and_gripping", counted)
    vec, own, goals, first = _both(skill)
    expert = getattr(policies, expert_of(skill))()
    rng = np.random.default_rng(2)

    def act(obs, t):
        seen_obs = (first if obs is None else obs).copy()
        seen_obs[:, 36:39] = goals
        actions = np.stack([expert.get_action(o) for o in seen_obs]).astype(np.float32)
        closing = actions[:, 3] > 0
        actions[closing, 3] = rng.uniform(0, 1, int(closing.sum()))
        return actions

    try:
        _compare(vec, own, act)
    finally:
        vec.close()
    assert seen["float32"] > 0 and seen["capped"] > 0, seen


def test_episodes_restart_from_metaworlds_reset_after_500_steps():
    vec, own, _, _ = _both("push-v3")
    rng = np.random.default_rng(1)
    try:
        start, _ = vec.reset()
        for _ in range(499):
            _, _, terminated, truncated, infos = vec.step(rng.uniform(-1, 1, (vec.num_envs, 4)))
            assert not truncated.any() and not terminated.any()
        obs, _, _, truncated, infos = vec.step(rng.uniform(-1, 1, (vec.num_envs, 4)))
        assert truncated.all() and infos["_final_obs"].all()
        np.testing.assert_array_equal(obs, start)
        assert not np.array_equal(infos["final_obs"], start)
    finally:
        vec.close()


def test_skills_without_a_batched_step_fall_back_to_metaworlds_env():
    """The V1 rewards are not translated: a skill with a batched V2 step (hammer) runs on
    Meta-World's own envs under reward_version "v1"."""
    from metarl.envs.metaworld import MetaWorldDistribution
    from metarl.envs.metaworld_skills import SKILLS
    from metarl.envs.vector import ProtocolVectorEnv, make_task_vector_env

    assert "hammer-v3" in SKILLS
    dist = MetaWorldDistribution("ML1", "hammer", reward_version="v1")
    env = make_task_vector_env(dist, dist.sample(2, np.random.default_rng(0)), 1)
    try:
        assert isinstance(env, ProtocolVectorEnv)
    finally:
        env.close()


def test_ml10_meta_batches_step_each_skill_group_as_metaworld_does():
    """An ML10 meta-batch (every train skill once, two envs each): the batched skills and the
    others (on Meta-World's env) laid out as one vector env, equal to Meta-World's own envs."""
    from metarl.envs.metaworld import MetaWorldDistribution, make_skill_env
    from metarl.envs.metaworld_vector import MetaWorldMixedVector

    dist = MetaWorldDistribution("ML10")
    tasks = dist.sample(10, np.random.default_rng(3))
    vec = dist.make_vector_env(10, 2)
    assert isinstance(vec, MetaWorldMixedVector)
    vec.set_tasks(tasks)
    first, _ = vec.reset()
    own = []
    for task in tasks:
        for _ in range(2):
            env = make_skill_env(task.skill, "v2")
            env.set_task(task.resolve())
            obs, _ = env.reset()
            np.testing.assert_array_equal(first[len(own)], obs.astype(np.float32))
            own.append(env)
    rng = np.random.default_rng(0)
    try:
        for step in range(60):
            actions = rng.uniform(-1, 1, (20, 4)).astype(np.float32)
            obs, reward, _, _, infos = vec.step(actions)
            want = [env.step(actions[i]) for i, env in enumerate(own)]
            np.testing.assert_array_equal(obs, np.stack([w[0] for w in want]).astype(np.float32))
            np.testing.assert_array_equal(reward, [float(w[1]) for w in want], err_msg=str(step))
            np.testing.assert_array_equal(infos["success"], [w[4]["success"] for w in want])
    finally:
        vec.close()


@pytest.mark.parametrize("suite", ["ML1", "ML10"])
def test_the_batched_scorer_is_metaworlds_evaluator_on_per_task_policies(suite):
    """Each task its own policy, as adapted policies are: Meta-World's scripted expert (shown
    the goal) on every other task, a random linear map on the others. The batched scorer's
    success rates are Meta-World's evaluator's exactly, its returns equal to float32's
    precision (Meta-World's accumulator turns float32, see `evaluate_policies`)."""
    import metaworld.policies as policies

    from metarl.envs.metaworld import MetaWorldDistribution

    dist = (
        MetaWorldDistribution("ML1", "reach") if suite == "ML1" else MetaWorldDistribution("ML10")
    )
    tasks = dist.sample(6, np.random.default_rng(5), split="test")
    rng = np.random.default_rng(0)

    def linear(w):
        return lambda obs: np.clip(np.asarray(obs, np.float32) @ w, -1, 1)

    acts = []
    for i, task in enumerate(tasks):
        if i % 2:
            acts.append(linear(rng.normal(0, 0.3, (39, 4)).astype(np.float32)))
        else:
            acts.append(_goal_seeing(dist, task, getattr(policies, expert_of(task.skill))()))
    together = dist.evaluate_policies(tasks, acts)
    assert together is not None
    one_by_one = [dist.evaluate_policy(t, a) for t, a in zip(tasks, acts, strict=True)]
    np.testing.assert_array_equal(together["success"], [s["success"] for s in one_by_one])
    np.testing.assert_allclose(together["return"], [s["return"] for s in one_by_one], rtol=1e-5)
    assert together["success"][::2].min() == 1.0 and together["success"][1::2].max() == 0.0


def test_the_batched_scorer_builds_its_env_once_and_scores_fewer_tasks_on_it(monkeypatch):
    """The scorer keeps its batched env from one call to the next (an evaluation calls it for
    each chunk of tasks after each number of updates): ML10 tasks of several skills scored
    in a chunk of 5, then 3 (the other slots left on their tasks, stepped and unread), then
    the first 5 again, on one env built once; each call's scores are Meta-World's evaluator's
    on the same policies, and the repeated call's are the first call's."""
    import metaworld.policies as policies

    from metarl.envs.metaworld import MetaWorldDistribution

    dist = MetaWorldDistribution("ML10", eval_episodes=1)
    built = []
    make = dist.make_vector_env

    def counted(n_tasks, envs_per_task):
        built.append((n_tasks, envs_per_task))
        return make(n_tasks, envs_per_task)

    monkeypatch.setattr(dist, "make_vector_env", counted)
    tasks = dist.sample(8, np.random.default_rng(3), split="test")
    rng = np.random.default_rng(1)
    acts = [
        _goal_seeing(dist, t, getattr(policies, expert_of(t.skill))())
        if i % 2
        else (lambda w: lambda obs: np.clip(np.asarray(obs, np.float32) @ w, -1, 1))(
            rng.normal(0, 0.3, (39, 4)).astype(np.float32)
        )
        for i, t in enumerate(tasks)
    ]
    first = dist.evaluate_policies(tasks[:5], acts[:5])
    fewer = dist.evaluate_policies(tasks[5:], acts[5:])
    again = dist.evaluate_policies(tasks[:5], acts[:5])
    assert built == [(5, 1)]
    for got, part in ((first, slice(0, 5)), (fewer, slice(5, 8))):
        alone = [dist.evaluate_policy(t, a) for t, a in zip(tasks[part], acts[part], strict=True)]
        np.testing.assert_array_equal(got["success"], [s["success"] for s in alone])
        np.testing.assert_allclose(got["return"], [s["return"] for s in alone], rtol=1e-5)
    np.testing.assert_array_equal(again["success"], first["success"])
    np.testing.assert_array_equal(again["return"], first["return"])
    assert first["success"].max() == 1.0 and fewer["success"].max() == 1.0
    dist.release_scorer()
    dist.evaluate_policies(tasks[:2], acts[:2])
    assert built == [(5, 1), (2, 1)]
    dist.close()


def _goal_seeing(dist, task, scripted):
    """`scripted` acting on observations with the task's goal filled in (ML hides it)."""
    from metarl.envs.metaworld import make_skill_env

    env = make_skill_env(task.skill, dist.reward_version)
    env.set_task(task.resolve())
    env.reset()
    goal = np.array(env._target_pos, dtype=np.float64)
    env.close()

    def act(obs):
        seen = np.array(obs, dtype=np.float64)
        seen[:, 36:39] = goal
        return np.stack([scripted.get_action(o) for o in seen]).astype(np.float32)

    return act


@pytest.mark.parametrize("skill", ["sweep-into-v3", "sweep-v3", "pick-place-v3"])
def test_rows_skipped_by_the_contact_distance_test_have_no_such_contact(skill, monkeypatch):
    """`_touching` runs the scratch forward only on rows where the pads are within MuJoCo's
    bounding-sphere reach of the object (`_within_reach`). Over an expert and a random
    episode, every row that test rules out has, after a forward, no contact of that pad and
    the object at all (so skipping it cannot change `grasp_success`), and the test rules out
    some rows and keeps some (it is exercised both ways)."""
    import metaworld.policies as policies
    import mujoco

    from metarl.envs.metaworld_vector import MetaWorldVector

    counts = {"kept": 0, "skipped": 0}
    original = MetaWorldVector._within_reach

    def checked(self, geom, pad):
        near = original(self, geom, pad)
        a, b = self._ids[f"geom:{geom}"], self._ids[f"geom:{pad}"]
        for i in np.flatnonzero(~near):
            self._batch.get_data(int(i), self._scratch)
            mujoco.mj_forward(self._models[i], self._scratch)
            pairs = {
                tuple(sorted(p))
                for p in zip(self._scratch.contact.geom1, self._scratch.contact.geom2, strict=True)
            }
            assert tuple(sorted((a, b))) not in pairs
        counts["kept"] += int(near.sum())
        counts["skipped"] += int((~near).sum())
        return near

    monkeypatch.setattr(MetaWorldVector, "_within_reach", checked)
    vec, own, goals, first = _both(skill)
    expert = getattr(policies, expert_of(skill))()
    rng = np.random.default_rng(1)

    def act(obs, t):
        seen = (first if obs is None else obs).copy()
        seen[:, 36:39] = goals
        actions = rng.uniform(-1, 1, (len(own), 4)).astype(np.float32)
        for i in range(1, len(own), 2):
            actions[i] = expert.get_action(seen[i])
        return actions

    try:
        _compare(vec, own, act)
    finally:
        vec.close()
    assert counts["kept"] > 0 and counts["skipped"] > 0, counts
