"""Meta-World ML1/ML10 behind the `[metaworld]` extra.

The missing-extra error runs everywhere (Meta-World is hidden from the import system when it
is installed); everything else needs the extra (`pip install -e ".[test,metaworld]"`) and is
skipped cleanly without it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metarl.cli import app
from metarl.config import with_overrides
from metarl.errors import ConfigError, UserError
from metarl.protocol import Split
from metarl.registry import make_distribution, resolve_recipe
from metarl.run import RunDir
from metarl.tomlio import dumps_toml, read_toml
from metarl.train import MetaTrainer

HAVE_METAWORLD = importlib.util.find_spec("metaworld") is not None
needs_metaworld = pytest.mark.skipif(
    not HAVE_METAWORLD, reason='Meta-World not installed (pip install -e ".[metaworld]")'
)
CPU = torch.device("cpu")


def test_a_metaworld_recipe_without_the_extra_is_one_line_and_exit_2(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "metaworld", None)  # `import metaworld` now fails
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "metaworld-ml1-reach", "--out", str(out), "-q"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "Meta-World (for ML1-reach-v3) is not installed" in lines[0]
    assert 'pip install "metarl-torch[metaworld]"' in lines[0]
    assert not out.exists()


def tiny(recipe_name: str):
    """The catalog recipe at smoke size: 2 iterations of 2 tasks x 1 PPO update of 250 steps."""
    recipe = with_overrides(
        resolve_recipe(recipe_name), "train", meta_iterations=2, meta_batch=2, inner_steps=1
    )
    return with_overrides(recipe, "learner", n_steps=250, batch_size=125, n_epochs=1)


@pytest.fixture(scope="module")
def ml1_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mw") / "reach"
    trainer = MetaTrainer.start(tiny("metaworld-ml1-reach"), out, CPU)
    trainer.fit()
    return out, trainer


@needs_metaworld
def test_tiny_ml1_run_trains_and_evaluates_with_metaworlds_protocol(ml1_run):
    out, trainer = ml1_run
    assert trainer.iteration == 2 and RunDir(out).checkpoint_path.is_file()
    curves = trainer.meta.curves([0, 1], n_tasks=2)
    # Meta-World's evaluator (success, return) and the batched engine's own rollouts' return
    assert set(curves) == {"success", "return", "rollout_return"}
    success = curves["success"].per_task
    assert success.shape == (2, 2) and np.all((success >= 0) & (success <= 1))
    # 3 episodes per goal: a task's success rate is a multiple of 1/3
    assert np.allclose(success * 3, np.round(success * 3))
    assert np.all(np.isfinite(curves["return"].per_task))
    # `metarl eval` reports the headline metric (success) and the return beside it
    result = CliRunner().invoke(app, ["eval", str(out), "--tasks", "1", "--steps", "0", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metric"] == "success" and payload["return"]["metric"] == "return"
    # the CLI's numbers are the library's, on the same held-out task
    alone = trainer.meta.curves([0], n_tasks=1)
    assert payload["n_tasks"] == 1 and payload["steps"] == [0]
    assert payload["mean"] == pytest.approx(alone["success"].mean)
    assert payload["return"]["mean"] == pytest.approx(alone["return"].mean)


@needs_metaworld
def test_versions_are_recorded_and_a_mismatch_refuses_resume_and_eval(ml1_run, tmp_path):
    import metaworld  # noqa: F401
    import mujoco

    out, _ = ml1_run
    versions = read_toml(out / "config.toml")["task"]["versions"]
    assert versions == {
        "metaworld": importlib.metadata.version("metaworld"),
        "mujoco": mujoco.__version__,
        "reward": "v2",
    }
    # the recorded run resumes (a finished run: nothing to do) under the same versions
    assert MetaTrainer.resume(out, CPU).iteration == 2
    # a copy of the run that says it was made under another Meta-World
    other = tmp_path / "other"
    other.mkdir()
    config = read_toml(out / "config.toml")
    config["task"]["versions"]["metaworld"] = "0.0.1"
    (other / "config.toml").write_text(dumps_toml(config))
    (other / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes())
    with pytest.raises(UserError, match=r"metaworld 0\.0\.1.*not be comparable"):
        MetaTrainer.resume(other, CPU)
    result = CliRunner().invoke(app, ["eval", str(other), "--tasks", "1"])
    assert result.exit_code == 2 and "metaworld 0.0.1" in result.output
    # and it cannot be compared with the original as a joint baseline
    result = CliRunner().invoke(
        app, ["eval", str(out), "--tasks", "1", "--init", "joint", "--joint-run", str(other)]
    )
    assert result.exit_code == 2 and "not comparable" in result.output


@needs_metaworld
def test_tasks_are_metaworlds_own_and_drawn_with_metarls_generator():
    import metaworld

    dist = make_distribution("metaworld-ml1-push")
    a = dist.sample(50, np.random.default_rng(7), Split.TEST)
    b = dist.sample(50, np.random.default_rng(7), Split.TEST)
    assert a == b  # a function of the generator: resume and ranks see the same tasks
    assert sorted(t.index for t in a) == list(range(50))  # 50 distinct held-out goals
    bench = metaworld.ML1("push-v3", seed=0)
    for task in a[:3]:
        assert task.resolve() == bench.test_tasks[task.index]  # Meta-World's own Task object
        assert type(task).from_dict(task.to_dict()) == task
    train = dist.sample(3, np.random.default_rng(7), Split.TRAIN)
    assert train[0].resolve() == bench.train_tasks[train[0].index]
    with pytest.raises(ConfigError, match="train and test tasks only"):
        dist.sample(1, np.random.default_rng(0), Split.VAL)


@needs_metaworld
def test_the_evaluator_scores_any_step_success_of_the_adapted_policy():
    """evaluate_policy (Meta-World's evaluator) agrees with stepping the env by hand: an
    episode ends at its first success, its return is summed up to there."""
    dist = make_distribution("metaworld-ml1-reach")
    task = dist.sample(1, np.random.default_rng(0), Split.TEST)[0]
    act = lambda obs: np.tile(np.array([0.5, 0.5, 0.0, 0.0], np.float32), (len(obs), 1))  # noqa: E731
    env = dist.make_env(task)
    obs, _ = env.reset()
    total, success = 0.0, False
    for _ in range(500):
        obs, reward, _, truncated, info = env.step(act(obs[None])[0])
        total += float(reward)
        if info["success"]:
            success = True
            break
    scores = dist.evaluate_policy(task, act)
    assert scores["success"] == float(success)
    assert scores["return"] == pytest.approx(total, rel=1e-6)


@needs_metaworld
def test_ml10_env_switches_skill_with_the_task():
    import metaworld

    dist = make_distribution("metaworld-ml10")
    tasks = dist.sample(250, np.random.default_rng(0), Split.TEST)
    assert {t.skill for t in tasks} == {
        "drawer-open-v3",
        "door-close-v3",
        "shelf-place-v3",
        "sweep-into-v3",
        "lever-pull-v3",
    }
    first = next(t for t in tasks if t.skill == "lever-pull-v3")
    second = next(t for t in tasks if t.skill == "shelf-place-v3")
    env = dist.make_env(first)
    for task in (first, second):
        obs, _ = env.reset(options={"task": task.to_dict()})
        assert obs.shape == (39,)
        assert isinstance(env.unwrapped.skill_env, metaworld.ALL_V3_ENVIRONMENTS[task.skill])
        assert env.unwrapped.get_task() == task.to_dict()
        env.step(env.action_space.sample())
        assert len(env.unwrapped._envs) == 1  # the previous skill's env is closed, not kept
    env.close()


@needs_metaworld
def test_ml10_meta_batches_are_stratified_by_skill_as_metaworlds_vector_envs():
    """Task k is of skill k mod 10 in every meta-batch: a slot's envs keep their skill (the
    unstratified draw rebuilt and kept envs until an ML10 training was killed for memory)."""
    dist = make_distribution("metaworld-ml10")
    skills = list(dict.fromkeys(t.env_name for t in dist.bench.train_tasks))
    assert len(skills) == 10
    batches = [dist.sample(20, np.random.default_rng(seed), Split.TRAIN) for seed in range(3)]
    for batch in batches:
        assert [t.skill for t in batch] == skills * 2
        assert len({t.index for t in batch}) == 20  # distinct goals within a skill
    assert batches[0] != batches[1]  # the goals are still drawn
    held_out = dist.sample(50, np.random.default_rng(0), Split.TEST)
    assert sorted(Counter(t.skill for t in held_out).values()) == [10] * 5


REFERENCE = Path(__file__).parent / "data" / "metaworld_mujoco33.json"


@needs_metaworld
@pytest.mark.filterwarnings("ignore:Constant")  # the experts' own gain warning
@pytest.mark.parametrize("skill", ["reach-v3", "push-v3", "pick-place-v3"])
def test_metaworld_on_this_mujoco_matches_its_pinned_mujoco(skill):
    """Meta-World's scripted experts under the installed MuJoCo (4, through
    metaworld_compat's weld patch) against a replay recorded under MuJoCo 3.3.0, Meta-World's
    pin: the same goals succeed, the first success moves by at most 3 of 500 steps, and the
    observations after reset stay within 2e-3. (Later observations are not compared: where the
    gripper touches the object, MuJoCo 4's last-digit solver differences grow to a few cm by
    step 40 of push and pick-place, and the outcome, not the path, is what success rates read.)"""
    from metarl.envs.metaworld_compat import expert_replay

    reference = json.loads(REFERENCE.read_text())
    assert reference["mujoco"] == "3.3.0"
    expected = reference["skills"][skill]
    got = expert_replay(skill, reference["goals"])
    succeeded = [f >= 0 for f in got["first_success"]]
    assert succeeded == [f >= 0 for f in expected["first_success"]]
    assert sum(succeeded) >= reference["goals"] - 1  # the experts solve the goals
    shift = np.abs(np.array(got["first_success"]) - np.array(expected["first_success"]))
    assert shift.max() <= 3, shift
    gap = np.abs(np.array(got["obs_reset"]) - np.array(expected["obs_reset"])).max()
    assert gap < 2e-3, gap


@needs_metaworld
def test_the_batched_engine_reports_metaworlds_success_with_its_evaluator(tmp_path):
    """Meta-World on the batched engine: training rows carry the success rate of phi's
    episodes (info["success"], any step); evaluation scores each task's policy with
    Meta-World's own evaluator, giving the numbers it gives SB3's deterministic policy."""
    from metarl.learners.rl_core import policy_scorer

    recipe = with_overrides(tiny("metaworld-ml1-reach"), "learner", backend="batched", n_envs=1)
    trainer = MetaTrainer.start(recipe, tmp_path / "run", CPU)
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert all(0.0 <= row["success_before"] <= 1.0 for row in rows)
    meta = trainer.meta
    curves = meta.curves([0], n_tasks=2)
    assert list(curves)[:2] == ["success", "return"] and "rollout_return" in curves
    assert meta.curve([0], n_tasks=2).metric == "success"
    score = policy_scorer(meta.dist)
    tasks, _ = meta.eval_tasks(2)

    def sb3_act(observations):  # the official evaluator's input: SB3's deterministic policy
        actions, _ = meta.model.predict(observations, deterministic=True)
        return actions

    for j, task in enumerate(tasks):
        official = score(task, sb3_act)
        assert curves["success"].per_task[0, j] == official["success"]
        assert curves["return"].per_task[0, j] == pytest.approx(official["return"], rel=1e-6)


def _expert_episode(skill: str, fast: bool, steps: int = 150) -> dict[str, list]:
    """Meta-World's scripted expert on ML1 test goal 1 (it grasps and pushes the object),
    then random actions: observations, rewards, infos, and, at every step, both
    `touching_object` implementations on the same state."""
    import metaworld
    from metaworld import policies

    from metarl.envs.metaworld_compat import EXPERTS, patch_for_mujoco
    from metarl.envs.metaworld_speed import (
        original_touching_object,
        touching_object,
        use_fast_paths,
    )

    patch_for_mujoco(metaworld)
    use_fast_paths(fast)
    try:
        ml1 = metaworld.ML1(skill, seed=0)
        env = ml1.test_classes[skill]()
        env.set_task(ml1.test_tasks[1])
        env._partially_observable = False
        expert = getattr(policies, EXPERTS[skill])()
        obs, _ = env.reset(seed=0)
        rng = np.random.default_rng(0)
        seen: dict[str, list] = {"obs": [obs], "reward": [], "info": [], "touch": []}
        for t in range(steps):
            action = expert.get_action(obs) if t < steps // 2 else rng.uniform(-1, 1, 4)
            obs, reward, _, _, info = env.step(action)
            seen["obs"].append(obs)
            seen["reward"].append(reward)
            seen["info"].append(info)
            object_id = env._get_id_main_object()
            seen["touch"].append(
                (original_touching_object()(env, object_id), touching_object(env, object_id))
            )
        env.close()
        return seen
    finally:
        use_fast_paths(False)


@needs_metaworld
@pytest.mark.filterwarnings("ignore:Constant")  # the experts' own gain warning
@pytest.mark.parametrize("skill", ["push-v3", "pick-place-v3"])
def test_the_fast_paths_step_metaworld_bit_for_bit(skill):
    """metaworld_speed's touching_object and quaternion give Meta-World's own numbers: the
    same observations, rewards and infos at every step (bitwise), through grasps (the
    expert's), and the two touching_object agree on every state, touching or not."""
    slow = _expert_episode(skill, fast=False)
    fast = _expert_episode(skill, fast=True)
    assert np.array_equal(np.array(slow["obs"]), np.array(fast["obs"]))
    assert slow["reward"] == fast["reward"]
    assert slow["info"] == fast["info"]
    assert all(a == b for a, b in fast["touch"])
    touching = sum(a for a, _ in fast["touch"])
    assert 0 < touching < len(fast["touch"])  # both branches exercised


@needs_metaworld
def test_the_fast_quaternion_is_scipys_and_falls_back_off_rotations():
    from scipy.spatial.transform import Rotation

    from metarl.envs.metaworld_speed import FastRotation

    for m in Rotation.random(200, random_state=0).as_matrix():
        assert np.array_equal(
            FastRotation.from_matrix(m).as_quat(), Rotation.from_matrix(m).as_quat()
        )
    skewed = Rotation.random(random_state=1).as_matrix() * 1.001  # not orthogonal: SciPy's SVD
    assert np.array_equal(
        FastRotation.from_matrix(skewed).as_quat(), Rotation.from_matrix(skewed).as_quat()
    )
    with pytest.raises(ValueError, match="determinant"):
        FastRotation.from_matrix(-np.eye(3))
    with pytest.raises(AttributeError):
        FastRotation.from_euler("x", 1.0)  # type: ignore[attr-defined]


@needs_metaworld
def test_every_curve_is_named_by_its_key(ml1_run):
    """The batched engine keeps its rollouts' return beside Meta-World's: under its own name,
    so `metarl eval --json` cannot write one over the other."""
    _, trainer = ml1_run
    curves = trainer.meta.curves([0], n_tasks=1)
    assert {key: curve.metric for key, curve in curves.items()} == {k: k for k in curves}


@needs_metaworld
def test_the_batched_scorer_is_metaworlds_evaluator_on_adapted_policies(ml1_run, monkeypatch):
    """After 1 and 2 updates every task has its own weights: the curves scored together on
    the batched step (`evaluate_policies`) against each task's policy scored alone by
    Meta-World's evaluator (`evaluate_policy`), the same adapted weights (adapting is a
    function of phi, task and seed)."""
    _, trainer = ml1_run
    meta = trainer.meta
    together = meta.curves([1, 2], n_tasks=3)
    assert meta.dist._scorer is None  # the scorer's env, kept across chunks, is released
    monkeypatch.setattr(type(meta.dist), "evaluate_policies", lambda self, tasks, acts: None)
    alone = meta.curves([1, 2], n_tasks=3)
    np.testing.assert_array_equal(together["success"].per_task, alone["success"].per_task)
    np.testing.assert_allclose(together["return"].per_task, alone["return"].per_task, rtol=1e-5)
    # the adapted policies differ by task (an index into one task's weights would not)
    assert len({round(float(r), 3) for r in together["return"].per_task.ravel()}) > 1
