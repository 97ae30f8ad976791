"""The vectorized HalfCheetah families against the single Gymnasium family env they batch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

if importlib.util.find_spec("mujoco") is None or importlib.util.find_spec("mujoco.batch") is None:
    # e.g. beside the [metaworld] extra, which pins mujoco 3.3.0
    pytest.skip("needs MuJoCo >= 4.0 (mujoco.batch)", allow_module_level=True)

import metarl  # noqa: F401,E402  (registers the metarl/ envs)
from metarl.envs.vector_mujoco import (
    AntDirVector,
    HalfCheetahDirVector,
    HalfCheetahVelVector,
    MujocoTaskVectorEnv,
)
from metarl.errors import ConfigError

FAMILIES = {
    "vel": (HalfCheetahVelVector, [{"velocity": 0.3}, {"velocity": 1.7}]),
    "dir": (HalfCheetahDirVector, [{"direction": -1.0}, {"direction": 1.0}]),
}


def single_env(family: str, task: dict[str, float]) -> gymnasium.Env:
    env = gymnasium.make(family)
    env.get_wrapper_attr("set_task")(task)
    return env


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_full_episode_equals_the_gymnasium_family_env(name: str) -> None:
    """Same start, same actions: the same observations, rewards, truncation at 200 and the
    same-step autoreset's final and first observations, sub-env by sub-env."""
    cls, tasks = FAMILIES[name]
    vec = cls(n_tasks=2, envs_per_task=2)
    vec.set_tasks(tasks)
    obs, _ = vec.reset(seed=7)
    refs = [single_env(cls.family.family_name, tasks[i // 2]) for i in range(vec.num_envs)]
    for i, env in enumerate(refs):
        env.reset(seed=100 + i)  # Gymnasium's own reset (mj_resetData), then our start state
        env.unwrapped.set_state(vec.qpos[i].copy(), vec.qvel[i].copy())  # type: ignore[attr-defined]
        qpos = env.unwrapped.data.qpos  # type: ignore[attr-defined]
        qvel = env.unwrapped.data.qvel  # type: ignore[attr-defined]
        np.testing.assert_array_equal(obs[i], np.concatenate([qpos[1:], qvel]).astype(np.float32))

    rng = np.random.default_rng(0)
    for t in range(200 + 5):
        actions = rng.uniform(-1, 1, vec.action_space.shape).astype(np.float32)
        obs, rewards, terminated, truncated, infos = vec.step(actions)
        assert not terminated.any()
        assert truncated.all() == (t == 199)
        assert ("final_obs" in infos) == (t == 199)
        for i, env in enumerate(refs):
            ref_obs, ref_reward, ref_term, ref_trunc, ref_info = env.step(actions[i])
            seen = infos["final_obs"][i] if t == 199 else obs[i]
            np.testing.assert_allclose(seen, ref_obs.astype(np.float32), rtol=1e-6, atol=1e-6)
            assert rewards[i] == pytest.approx(ref_reward, rel=1e-9, abs=1e-9)
            assert infos["x_velocity"][i] == pytest.approx(ref_info["x_velocity"], rel=1e-9)
            assert (terminated[i], truncated[i]) == (ref_term, ref_trunc)
            if t == 199:
                # the new episode: the returned obs is its first; go on from the same state
                assert infos["_final_obs"][i]
                env.reset(seed=100 + i)
                env.unwrapped.set_state(vec.qpos[i].copy(), vec.qvel[i].copy())  # type: ignore[attr-defined]
                fresh = np.concatenate([vec.qpos[i, 1:], vec.qvel[i]]).astype(np.float32)
                np.testing.assert_array_equal(obs[i], fresh)
                assert not np.allclose(obs[i], infos["final_obs"][i])
    assert rewards.dtype == np.float64
    assert terminated.dtype == truncated.dtype == np.bool_


def test_ant_dir_equals_the_gymnasium_family_env_through_falls_and_autoresets() -> None:
    """The ant reads what Gymnasium leaves after `mj_step` (RK4's last-stage torso position,
    `mj_rnePostConstraint`'s contact forces): same start, same actions, the same observations
    (contact forces included) bit for bit, the same terminations when it falls, the same
    truncations and rewards (Gymnasium's control cost is float32: 1e-6)."""
    tasks = [{"direction": 0.3}, {"direction": 4.0}]
    vec = AntDirVector(n_tasks=2, envs_per_task=2, max_episode_steps=60)
    vec.set_tasks(tasks)
    obs, _ = vec.reset(seed=7)
    assert obs.shape == (4, 105) and obs[:, 27:].any() == False  # noqa: E712 (no contact yet)

    def restart(env: gymnasium.Env, i: int) -> None:
        env.reset(seed=100 + i)  # Gymnasium's own reset (mj_resetData), then our start state
        env.unwrapped.set_state(vec.qpos[i].copy(), vec.qvel[i].copy())  # type: ignore[attr-defined]

    refs = []
    for i in range(vec.num_envs):
        env = gymnasium.make("metarl/AntDir-v0", max_episode_steps=60)
        env.get_wrapper_attr("set_task")(tasks[i // 2])
        restart(env, i)
        refs.append(env)
    rng = np.random.default_rng(0)
    ended = {"terminated": 0, "truncated": 0, "contact": 0}
    for _ in range(130):
        actions = rng.uniform(-1, 1, vec.action_space.shape).astype(np.float32)
        obs, rewards, terminated, truncated, infos = vec.step(actions)
        ended["terminated"] += int(terminated.sum())
        ended["truncated"] += int(truncated.sum())
        for i, env in enumerate(refs):
            ref_obs, ref_reward, ref_term, ref_trunc, ref_info = env.step(actions[i])
            done = terminated[i] or truncated[i]
            seen = infos["final_obs"][i] if done else obs[i]
            np.testing.assert_array_equal(seen, ref_obs.astype(np.float32))
            ended["contact"] += int(seen[27:].any())
            assert rewards[i] == pytest.approx(ref_reward, rel=1e-6, abs=1e-6)
            assert infos["x_velocity"][i] == pytest.approx(ref_info["x_velocity"], rel=1e-9)
            assert infos["y_velocity"][i] == pytest.approx(ref_info["y_velocity"], rel=1e-9)
            assert (terminated[i], truncated[i]) == (ref_term, ref_trunc)
            if done:
                restart(env, i)
                np.testing.assert_array_equal(obs[i, 27:], 0.0)  # a fresh start: no contact
    assert ended["terminated"] > 0 and ended["truncated"] > 0 and ended["contact"] > 100
    assert rewards.dtype == np.float64


def test_ant_dir_rewards_the_velocity_along_each_slots_direction() -> None:
    """The same motion in two slots: the rewards differ by the projected velocity alone."""
    vec = AntDirVector(n_tasks=2, envs_per_task=1)
    vec.reset(seed=0, options={"tasks": [{"direction": 0.0}, {"direction": np.pi / 2}]})
    vec.qpos[1] = vec.qpos[0]  # the kept derived fields follow from the next step on
    vec.qvel[1] = vec.qvel[0]
    for _ in range(5):
        obs, rewards, terminated, _, infos = vec.step(np.full((2, 8), 0.3, np.float32))
    assert not terminated.any() and (obs[0] == obs[1]).all()
    vx, vy = infos["x_velocity"][0], infos["y_velocity"][0]
    assert rewards[0] - rewards[1] == pytest.approx(vx - vy, rel=1e-9, abs=1e-12)


def test_sub_env_i_starts_where_gymnasium_reset_with_seed_plus_i_starts() -> None:
    """Reset noise is Gymnasium's HalfCheetah `reset` from the seed `s + i` (SyncVectorEnv's
    convention), and the autoreset's next start is that env's next `reset()`."""
    vec = HalfCheetahVelVector(2, 3, max_episode_steps=2)
    obs, _ = vec.reset(seed=11)
    for _ in range(2):
        *_, infos = vec.step(np.zeros(vec.action_space.shape, dtype=np.float32))
    assert infos["_final_obs"].all()
    after = np.concatenate([vec.qpos[:, 1:], vec.qvel], axis=1).astype(np.float32)
    for i in range(vec.num_envs):
        env = gymnasium.make("metarl/HalfCheetahVel-v0")
        first, _ = env.reset(seed=11 + i)
        second, _ = env.reset()
        np.testing.assert_array_equal(obs[i], first.astype(np.float32))
        np.testing.assert_array_equal(after[i], second.astype(np.float32))


def test_reset_noise_statistics_look_like_gymnasiums() -> None:
    """qpos = init + U(-0.1, 0.1), qvel = init + 0.1 N(0, 1), over 400 sub-envs."""
    vec = HalfCheetahDirVector(100, 4)
    vec.reset(seed=0)
    base = gymnasium.make("HalfCheetah-v5").unwrapped
    dq = vec.qpos - base.init_qpos  # type: ignore[attr-defined]
    dv = vec.qvel - base.init_qvel  # type: ignore[attr-defined]
    assert np.abs(dq).max() <= 0.1
    assert abs(dq.mean()) < 0.005 and dq.std() == pytest.approx(0.1 / np.sqrt(3), rel=0.05)
    assert abs(dv.mean()) < 0.01 and dv.std() == pytest.approx(0.1, rel=0.05)


def test_reset_is_a_function_of_seed_and_sub_env_index() -> None:
    a = HalfCheetahVelVector(2, 3, max_episode_steps=3)
    b = HalfCheetahVelVector(3, 2, max_episode_steps=3)  # another layout, same indices
    obs_a, _ = a.reset(seed=5)
    obs_b, _ = b.reset(seed=5)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert len(np.unique(obs_a, axis=0)) == a.num_envs  # sub-envs start apart
    assert not np.array_equal(a.reset(seed=6)[0], obs_a)
    np.testing.assert_array_equal(a.reset(seed=list(range(5, 11)))[0], obs_a)  # one per sub-env
    swapped = a.reset(seed=[8, 9, 10, 5, 6, 7])[0]  # task slots swap their seeds
    np.testing.assert_array_equal(swapped, np.concatenate([obs_a[3:], obs_a[:3]]))

    actions = np.random.default_rng(1).uniform(-1, 1, (7, *a.action_space.shape))
    runs = []
    for _ in range(2):  # through two autoresets
        a.reset(seed=5)
        runs.append(np.stack([a.step(act)[0] for act in actions]))
    np.testing.assert_array_equal(runs[0], runs[1])
    for bad in ([1, 2], -1, 1.5, True, "7"):
        with pytest.raises(ConfigError, match=r"expected a non-negative int or 6 of them"):
            a.reset(seed=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_task_slots_get_their_own_rewards_for_the_same_motion(name: str) -> None:
    cls, tasks = FAMILIES[name]
    vec = cls(n_tasks=2, envs_per_task=3)
    vec.set_tasks(tasks)
    vec.reset(seed=0)
    vec.qpos[:] = vec.qpos[0]
    vec.qvel[:] = vec.qvel[0]
    action = np.linspace(-0.8, 0.8, 6, dtype=np.float32)
    for _ in range(10):
        obs, rewards, *_, infos = vec.step(np.tile(action, (vec.num_envs, 1)))
    assert (obs == obs[0]).all()
    v = infos["x_velocity"][0]
    cost = 0.05 * float(np.sum(np.square(action.astype(np.float64))))
    if name == "vel":
        expected = [-abs(v - t["velocity"]) - cost for t in tasks]
    else:
        expected = [t["direction"] * v - cost for t in tasks]
    np.testing.assert_allclose(rewards, np.repeat(expected, 3), rtol=1e-12)
    assert rewards[0] != rewards[3]
    assert vec.get_tasks() == tasks


def test_set_tasks_checks_each_task_as_the_single_env_does() -> None:
    vec = HalfCheetahVelVector(2, 1)
    single = gymnasium.make("metarl/HalfCheetahVel-v0").get_wrapper_attr("set_task")
    for bad in ({"speed": 1.0}, {"velocity": "fast"}, 3.0):
        with pytest.raises(ConfigError) as expected:
            single(bad)
        with pytest.raises(ConfigError) as got:
            vec.set_tasks([{"velocity": 1.0}, bad])  # type: ignore[list-item]
        assert str(got.value) == str(expected.value)
    with pytest.raises(ConfigError, match=r"one task per slot \(2\)"):
        vec.set_tasks([{"velocity": 1.0}])
    assert vec.get_tasks() == [{"velocity": 1.0}, {"velocity": 1.0}]  # the default, unchanged
    vec.reset(seed=0, options={"tasks": [{"velocity": 0.5}, {"velocity": 1.5}]})
    assert vec.get_tasks() == [{"velocity": 0.5}, {"velocity": 1.5}]
    with pytest.raises(ConfigError, match=r"reset options \['task'\]: the only option is 'tasks'"):
        vec.reset(options={"task": {"velocity": 1.0}})


def test_spaces_dtypes_and_metadata() -> None:
    vec = HalfCheetahDirVector(3, 2)
    single = gymnasium.make("metarl/HalfCheetahDir-v0")
    assert vec.num_envs == 6
    assert vec.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP
    assert vec.single_action_space == single.action_space
    assert vec.single_observation_space.shape == single.observation_space.shape
    assert vec.max_episode_steps == single.spec.max_episode_steps == 200  # type: ignore[union-attr]
    obs, info = vec.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (6, 17) and info == {}
    assert obs in vec.observation_space
    obs, rewards, terminated, truncated, infos = vec.step(vec.action_space.sample())
    assert obs.dtype == np.float32 and rewards.shape == terminated.shape == (6,)
    assert infos["x_velocity"].shape == (6,)


def test_the_physics_pool_defaults_to_the_cores_this_process_may_use() -> None:
    """No core count written into the library: the default follows the process's affinity,
    so a narrower affinity (a container, taskset) gives fewer threads, and torch's thread
    count (`--threads`) caps it."""
    import os

    import torch

    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    vec = HalfCheetahVelVector(1, 1)
    assert vec.threads == min(allowed, torch.get_num_threads())
    vec.close()
    before_torch = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        capped = HalfCheetahVelVector(1, 1)
        assert capped.threads == 1
        capped.close()
    finally:
        torch.set_num_threads(before_torch)
    if hasattr(os, "sched_setaffinity") and allowed > 1:
        before = os.sched_getaffinity(0)
        try:
            os.sched_setaffinity(0, {min(before)})
            one = HalfCheetahVelVector(1, 1)
            assert one.threads == 1
            one.close()
        finally:
            os.sched_setaffinity(0, before)


def test_bad_arguments_say_what_is_accepted() -> None:
    with pytest.raises(ConfigError, match="n_tasks = 0: expected a positive integer"):
        HalfCheetahVelVector(0, 2)
    with pytest.raises(ConfigError, match="max_episode_steps = -1"):
        HalfCheetahVelVector(1, 1, max_episode_steps=-1)
    with pytest.raises(ConfigError, match="threads = 0"):
        HalfCheetahVelVector(1, 1, threads=0)
    with pytest.raises(ConfigError, match=r"params\.velocity"):
        HalfCheetahVelVector(1, 1, params={"velocity": {"uniform": [2.0, 0.0]}})
    vec = HalfCheetahVelVector(1, 2, params={"velocity": {"uniform": [3.0, 4.0]}})
    assert all(3.0 <= t["velocity"] <= 4.0 for t in vec.sample_tasks(5, np.random.default_rng(0)))
    with pytest.raises(gymnasium.error.ResetNeeded):
        vec.step(np.zeros((2, 6)))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(6,\)"):
        vec.step(np.zeros(6))


def test_threads_do_not_change_the_trajectory() -> None:
    runs = []
    for threads in (1, 2):
        vec = HalfCheetahVelVector(4, 2, threads=threads)
        vec.reset(seed=3)
        actions = np.random.default_rng(0).uniform(-1, 1, (20, *vec.action_space.shape))
        runs.append(np.stack([vec.step(a)[0] for a in actions]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_importing_the_module_does_not_import_mujoco() -> None:
    code = "import sys, metarl.envs.vector_mujoco; assert 'mujoco' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert issubclass(HalfCheetahVelVector, MujocoTaskVectorEnv)


def test_making_the_envs_prints_nothing_and_leaves_no_mujoco_log(tmp_path) -> None:
    """MuJoCo 4 deprecates an attribute of Gymnasium's HalfCheetah XML; its default handler
    printed that once per env built and wrote MUJOCO_LOG.TXT into the user's folder."""
    code = (
        "import gymnasium, metarl\n"
        "from metarl.envs.vector_mujoco import HalfCheetahDirVector\n"
        "HalfCheetahDirVector(n_tasks=2, envs_per_task=2).close()\n"
        "gymnasium.make('metarl/HalfCheetahVel-v0').close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    assert list(tmp_path.iterdir()) == []
