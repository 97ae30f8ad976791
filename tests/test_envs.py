"""Environment families: the Gymnasium API, determinism, tasks, catalog errors, and analytic
anchors for Navigation2D. MuJoCo envs take only a few steps each, to keep the file quick."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from typer.testing import CliRunner

import metarl  # noqa: F401  (registers the metarl/ envs)
from metarl.cli import app
from metarl.envs import load_family, register_family_file, registered_families
from metarl.envs.base import episode_return
from metarl.envs.distribution import EnvFamilyDistribution, EnvTask
from metarl.envs.navigation import oracle_action
from metarl.envs.physics import PhysicsFamily
from metarl.errors import ConfigError, UserError
from metarl.protocol import RLDistribution, Split
from metarl.registry import make_distribution

ENV_IDS = sorted(k for k in gymnasium.registry if k.startswith("metarl/"))
MUJOCO = {"metarl/HalfCheetahVel-v0", "metarl/HalfCheetahDir-v0", "metarl/AntDir-v0"}
NAV = "metarl/Navigation2D-v0"


HAVE_MUJOCO = importlib.util.find_spec("mujoco") is not None


def param(env_id: str):
    """A readable id (`Navigation2D-v0`); MuJoCo families skip where MuJoCo is not installed."""
    marks = [] if HAVE_MUJOCO or env_id not in MUJOCO else [pytest.mark.skip("needs mujoco")]
    return pytest.param(env_id, id=env_id.removeprefix("metarl/"), marks=marks)


envs = pytest.mark.parametrize("env_id", [param(e) for e in ENV_IDS])


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    """MuJoCo writes its warnings to MUJOCO_LOG.TXT in the working directory: keep it out of
    the source tree."""
    monkeypatch.chdir(tmp_path)


def call(env: gymnasium.Env, method: str, *args):
    """A family method through `gymnasium.make`'s wrappers (Gymnasium 1.x does not forward)."""
    return env.get_wrapper_attr(method)(*args)


def test_every_catalog_family_is_registered():
    # other tests register families of their own in this process: compare the catalog's
    catalog = {f.env_id for f in registered_families() if f.source.parent.name == "envs"}
    assert catalog == set(ENV_IDS)
    assert {
        "metarl/Navigation2D-v0",
        "metarl/HalfCheetahVel-v0",
        "metarl/HalfCheetahDir-v0",
        "metarl/AntDir-v0",
        "metarl/CartPolePhysics-v0",
        "metarl/PendulumPhysics-v0",
    } <= catalog


@envs
@pytest.mark.filterwarnings("ignore:.*different from the unwrapped")
@pytest.mark.filterwarnings("ignore:.*A Box observation space m")  # unbounded, as the base envs
@pytest.mark.filterwarnings("ignore:.*symmetric and normalized")  # Nav2D's and Pendulum's ranges
def test_check_env(env_id):
    # On the made env, so the family's own reset/step (not only the base env) is checked.
    env = gymnasium.make(env_id)
    call(env, "set_task", call(env, "sample_tasks", 1, np.random.default_rng(1))[0])
    check_env(env, skip_render_check=True)


def rollout(env_id: str, task: dict, seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    env = gymnasium.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed, options={"task": task})
    observations, rewards = [obs], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    env.close()
    return np.stack(observations), np.asarray(rewards, dtype=np.float64)


@envs
def test_same_seed_task_and_actions_give_the_same_rollout(env_id):
    env = gymnasium.make(env_id)
    task = call(env, "sample_tasks", 1, np.random.default_rng(7))[0]
    steps = 10 if env_id in MUJOCO else 50
    obs_a, rew_a = rollout(env_id, task, seed=3, steps=steps)
    obs_b, rew_b = rollout(env_id, task, seed=3, steps=steps)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)


@envs
def test_task_round_trips_through_set_task_and_reset_options(env_id):
    env = gymnasium.make(env_id)
    default = call(env, "get_task")
    task = call(env, "sample_tasks", 1, np.random.default_rng(11))[0]
    call(env, "set_task", task)
    assert call(env, "get_task") == task
    other = gymnasium.make(env_id)
    other.reset(seed=0, options={"task": task})
    assert call(other, "get_task") == task
    other.reset(seed=1)  # a reset without options keeps the task
    assert call(other, "get_task") == task
    assert set(default) == set(task)
    with pytest.raises(UserError, match="do not match the family's parameters"):
        call(env, "set_task", {**task, "unknown": 1.0})


@envs
def test_sample_tasks_lie_in_the_declared_ranges_and_follow_the_seed(env_id):
    env = gymnasium.make(env_id)
    spec = next(f for f in registered_families() if f.env_id == env_id)
    defaults = call(env, "get_task")  # a fresh env holds the base defaults (physics)
    tasks = call(env, "sample_tasks", 200, np.random.default_rng(0))
    assert len(tasks) == 200
    for name, dist in spec.params.items():
        values = np.array([t[name] for t in tasks], dtype=np.float64)
        if dist.size is not None:
            assert values.shape == (200, dist.size)
        if dist.scale:
            values = values / defaults[name]
        assert dist.contains(values.tolist()), (name, values.min(), values.max())
        assert len(np.unique(values)) > 1  # something varies
    again = call(env, "sample_tasks", 200, np.random.default_rng(0))
    assert again == tasks


def test_cartpole_physics_recomputes_derived_quantities():
    env = gymnasium.make("metarl/CartPolePhysics-v0")
    call(env, "set_task", {"length": 0.9, "masspole": 0.3})
    cart = env.unwrapped
    assert cart.length == 0.9 and cart.masspole == 0.3  # type: ignore[attr-defined]
    assert cart.total_mass == pytest.approx(0.3 + cart.masscart)  # type: ignore[attr-defined]
    assert cart.polemass_length == pytest.approx(0.27)  # type: ignore[attr-defined]


def test_pendulum_scale_multiplies_the_default():
    env = gymnasium.make("metarl/PendulumPhysics-v0")
    assert call(env, "get_task") == {"m": 1.0, "l": 1.0, "g": 10.0}
    gs = [t["g"] for t in call(env, "sample_tasks", 100, np.random.default_rng(0))]
    assert min(gs) >= 5.0 and max(gs) <= 15.0 and max(gs) > 10.0


@pytest.mark.skipif(not HAVE_MUJOCO, reason="needs mujoco")
@pytest.mark.parametrize(
    "env_id,task,expected",
    [
        (
            "metarl/HalfCheetahVel-v0",
            {"velocity": 1.5},
            lambda a, i: -abs(i["x_velocity"] - 1.5) - 0.05 * float(np.sum(a**2)),
        ),
        (
            "metarl/HalfCheetahDir-v0",
            {"direction": -1.0},
            lambda a, i: -i["x_velocity"] - 0.05 * float(np.sum(a**2)),
        ),
        # at angle 0 the projected velocity is Ant-v5's forward reward: the base reward
        ("metarl/AntDir-v0", {"direction": 0.0}, lambda a, i: i["base_reward"]),
        (
            "metarl/AntDir-v0",
            {"direction": math.pi / 2},
            lambda a, i: i["base_reward"] - i["x_velocity"] + i["y_velocity"],
        ),
    ],
    ids=["cheetah-vel", "cheetah-dir-back", "ant-dir-x", "ant-dir-y"],
)
def test_locomotion_rewards_follow_the_task(env_id, task, expected):
    env = gymnasium.make(env_id)
    env.reset(seed=0, options={"task": task})
    env.action_space.seed(0)
    for _ in range(5):
        action = env.action_space.sample()
        _, reward, _, _, info = env.step(action)
        assert reward == pytest.approx(expected(action.astype(np.float64), info), abs=1e-9)


# --- Navigation2D: analytic anchors ---------------------------------------------------------


def nav_return(goal: list[float], policy) -> tuple[float, int]:
    env = gymnasium.make(NAV)
    return episode_return(env, {"goal": goal}, lambda obs: policy(obs, np.asarray(goal)))


@pytest.mark.parametrize("goal", [[0.3, -0.4], [-0.5, 0.5], [0.05, 0.02]])
def test_navigation_anchors(goal):
    def still(obs, goal):
        return np.zeros(2, dtype=np.float32)

    still_return, still_steps = nav_return(goal, still)
    assert still_steps == 100  # truncated by the TimeLimit, never at the goal
    assert still_return == pytest.approx(-100 * math.hypot(*goal), rel=1e-6)
    oracle_return, oracle_steps = nav_return(goal, oracle_action)
    assert oracle_steps < 100  # reaches the goal and terminates
    assert oracle_return > still_return


def test_navigation_clips_actions_and_terminates_at_the_goal():
    env = gymnasium.make(NAV)
    env.reset(seed=0, options={"task": {"goal": [0.1, 0.0]}})
    obs, reward, terminated, _, _ = env.step(np.array([5.0, 0.0], dtype=np.float32))
    np.testing.assert_allclose(obs, [0.1, 0.0], atol=1e-7)  # clipped to 0.1 per axis
    assert terminated and reward == pytest.approx(0.0, abs=1e-7)


# --- the task distribution ------------------------------------------------------------------


def test_env_family_distribution():
    dist = make_distribution("navigation2d")
    assert isinstance(dist, EnvFamilyDistribution) and isinstance(dist, RLDistribution)
    assert dist.kind == "rl"
    train = dist.sample(5, np.random.default_rng(0), Split.TRAIN)
    assert train == dist.sample(5, np.random.default_rng(0), Split.TRAIN)
    assert train != dist.sample(5, np.random.default_rng(0), Split.TEST)  # other stream
    assert all(isinstance(t, EnvTask) for t in train)
    assert train[0].to_dict() == {"env_id": NAV, "params": train[0].params}
    env = dist.make_env(train[0])
    assert call(env, "get_task") == train[0].params
    with pytest.raises(UserError, match="unknown environment family"):
        EnvFamilyDistribution("metarl/Nope-v0")


# --- family files: errors name the file and the field ---------------------------------------

GOOD = 'name = "{name}"\nbase = "CartPole-v1"\n[params]\nlength = {{ uniform = [0.3, 0.6] }}\n'


@pytest.mark.parametrize(
    "text,message",
    [
        ("horizon = 3\n" + GOOD.format(name="A"), "unknown key 'horizon'; known keys: name,"),
        ('name = "B"\nbase = "CartPole-v1"\n', "missing [params]"),
        (
            'name = "C"\nbase = "CartPole-v1"\n[params]\nlength = { uniform = [1.0] }\n',
            "params.length.uniform = [1.0]: expected [low, high]",
        ),
        (
            'name = "D"\nbase = "CartPole-v1"\n[params]\nlength = { normal = [0, 1] }\n',
            "params.length: unknown key 'normal'; known keys: uniform, choice, size, scale",
        ),
        ('name = "E"\n[params]\nx = { choice = [1] }\n', 'give base = "<Gymnasium env id>"'),
        ('name = "no spaces"\nbase = "CartPole-v1"\n', "name = 'no spaces'"),
    ],
    ids=["unknown-key", "no-params", "bad-uniform", "unknown-param-key", "no-base", "bad-name"],
)
def test_bad_family_file_names_file_and_field(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad-family.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_family(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_unknown_attribute_lists_the_attributes_that_exist(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        PhysicsFamily("CartPole-v1", {"lenght": {"uniform": [0.3, 0.6]}}, source="my/cartpole.toml")
    message = str(info.value)
    assert "my/cartpole.toml" in message and "params.lenght" in message
    assert "length" in message and "masspole" in message


def test_unknown_base_env_is_a_user_error(tmp_path: Path):
    path = tmp_path / "typo.toml"
    path.write_text(GOOD.format(name="TypoFamily").replace("CartPole-v1", "CartPol-v1"))
    with pytest.raises(ConfigError, match="base = 'CartPol-v1' is not a Gymnasium env id"):
        register_family_file(path)
    assert "metarl/TypoFamily-v0" not in gymnasium.registry


# --- the CLI and import cost ----------------------------------------------------------------


def test_envs_list_shows_every_family():
    result = CliRunner().invoke(app, ["envs", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for fam in registered_families():
        assert fam.env_id in result.stdout and fam.source.name in result.stdout
    assert "U[-0.5, 0.5]^2" in result.stdout


def test_import_metarl_does_not_import_mujoco():
    code = "import sys, metarl; assert 'mujoco' not in sys.modules, 'mujoco imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
