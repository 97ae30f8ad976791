"""Meta-World v3 (ML1, ML10, ML45) as metarl task distributions, behind the `[metaworld]` extra.

Meta-World fixes each benchmark's tasks: `metaworld.ML1("reach-v3", seed=s)` holds 50
training and 50 test goals of one skill, `metaworld.ML10(seed=s)` 50 goals of each of 10
training and 5 test skills, `metaworld.ML45(seed=s)` of 45 training and 5 test skills. A
metarl task is a pointer into those lists, `MetaWorldTask(benchmark, skill, split, index,
seed)`: plain values that rebuild Meta-World's own `Task` object (`resolve`), so runs log,
resume and split across ranks as for every other family. Which tasks a meta-batch holds
is drawn with metarl's generator, never Meta-World's.

`make_env(task)` builds the Meta-World env class of the task's skill and calls its
`set_task(task object)`; the env is `MetaWorldEnv`, whose `set_task` takes metarl's task
description, so one env (one per vectorized copy) serves every task of the benchmark (ML10
switches the MuJoCo model when the skill changes).

Evaluation follows Meta-World's protocol with Meta-World's code: the adapted policy, acting
deterministically, runs `metaworld.evaluation.evaluation` (3 episodes per test goal, an
episode succeeds if `info["success"]` is set at any step) on a one-env vector env of the
task (`evaluate_policy`).

Importing this module does not import Meta-World (or MuJoCo): `import metarl` registers the
distributions by name, and building one without the extra installed is a `UserError` that
says how to install it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.episodes import SUCCESS_INFO, success_metrics
from metarl.envs.metaworld_tasks import (
    BENCHMARKS,
    EVAL_EPISODES,
    MAX_EPISODE_STEPS,
    ML1_SKILLS,
    REWARD_VERSIONS,
    Act,
    MetaWorldEnv,
    MetaWorldTask,
    full_skill_name,
    installed_versions,
    load_benchmark,
    make_skill_env,
    require_metaworld,
)
from metarl.errors import ConfigError, UserError
from metarl.protocol import FirstEpisodes, Split
from metarl.registry import register_task

# -- the distribution --------------------------------------------------------------------------


class MetaWorldDistribution:
    """The train or test tasks of ML1 (one skill) or ML10, as an RL task distribution.

    `versions` is what a run directory recorded (`run_record`); given, it must match what is
    installed, so a run is never resumed or evaluated under another Meta-World, MuJoCo or
    reward function.
    """

    kind = "rl"
    max_eval_subenvs = 160
    """Sub-envs an evaluation may hold at once (`metarl.learners.rl_core.eval_chunk`):
    each Meta-World env holds a simulator of its own, so a whole evaluation's envs at once
    ran out of memory (docs/changelog.md)."""
    episode_info = SUCCESS_INFO
    """Training logs the success rate of its rollouts' first episodes (`success_metrics`)."""

    def __init__(
        self,
        benchmark: str = "ML1",
        skill: str | None = None,
        seed: int = 0,
        reward_version: str = "v2",
        eval_episodes: int = EVAL_EPISODES,
        versions: Mapping[str, str] | None = None,
    ) -> None:
        if benchmark not in BENCHMARKS:
            raise ConfigError(f"task.benchmark = {benchmark!r}: expected one of {BENCHMARKS}")
        if benchmark == "ML1" and skill is None:
            raise ConfigError('an ML1 task needs skill = "<Meta-World env>", e.g. "reach-v3"')
        if benchmark != "ML1" and skill is not None:
            raise ConfigError(
                f"task.skill = {skill!r}: {benchmark}'s skills are fixed by Meta-World"
            )
        if reward_version not in REWARD_VERSIONS:
            raise ConfigError(
                f"task.reward_version = {reward_version!r}: expected one of {REWARD_VERSIONS}"
            )
        if eval_episodes < 1:
            raise ConfigError(f"task.eval_episodes = {eval_episodes}: must be >= 1")
        self.name = f"{benchmark}-{skill}" if skill else benchmark
        require_metaworld(f"for {self.name}")
        self.benchmark_name, self.seed = benchmark, seed
        self.skill = full_skill_name(skill) if skill else None
        self.reward_version, self.eval_episodes = reward_version, eval_episodes
        current = installed_versions(reward_version)
        if versions is not None and dict(versions) != current:
            raise UserError(
                f"this run was made with {_show(versions)} but {_show(current)} is installed; "
                "its numbers would not be comparable: install the recorded versions "
                "(or start a new run)"
            )
        if self.skill is not None:
            make_skill_env(self.skill, reward_version).close()  # an unknown skill fails now
        self.bench = load_benchmark(benchmark, self.skill, seed)
        first = self.bench.train_tasks[0].env_name  # the env a fresh MetaWorldEnv builds
        self.env_id = register_env(self.name, first, seed, reward_version)
        self._scorer: Any = None
        self._scorer_tasks: list[Any] = []

    def run_record(self) -> dict[str, Any]:
        """Task options a run directory records and checks when it is reopened."""
        return {"versions": installed_versions(self.reward_version)}

    def _tasks(self, split: Split) -> list[Any]:
        if split is Split.VAL:
            raise ConfigError(
                "Meta-World has train and test tasks only; use eval.split = 'test' or 'train'"
            )
        return list(self.bench.train_tasks if split is Split.TRAIN else self.bench.test_tasks)

    def sample(
        self, n: int, rng: np.random.Generator, split: Split = Split.TRAIN
    ) -> list[MetaWorldTask]:
        """`n` tasks of `split` drawn with `rng`: distinct while `n` fits the list (50 goals
        per skill), with replacement beyond.

        With several skills (ML10) the draw is stratified as Meta-World's own vector envs
        are (`meta_batch_size // classes` envs per skill): task `k` is of skill `k mod S`, in
        the benchmark's order, its goal drawn among that skill's. A task slot so keeps its
        skill from one meta-batch to the next (its envs are not rebuilt), and every skill is
        in every meta-batch of a multiple of S tasks."""
        split = Split(split)
        tasks = self._tasks(split)
        by_skill: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            by_skill.setdefault(task.env_name, []).append(i)
        if len(by_skill) == 1:
            picks = [int(i) for i in rng.choice(len(tasks), size=n, replace=n > len(tasks))]
        else:
            groups = list(by_skill.values())
            drawn = [
                rng.choice(ids, size=count, replace=count > len(ids))
                for ids, count in zip(groups, np.bincount(np.arange(n) % len(groups)), strict=False)
            ]
            picks = [int(drawn[k % len(groups)][k // len(groups)]) for k in range(n)]
        return [
            MetaWorldTask(self.benchmark_name, tasks[i].env_name, split.value, i, self.seed)
            for i in picks
        ]

    def make_env(self, task: MetaWorldTask | Mapping[str, Any], **make_kwargs: Any) -> Any:
        """`gymnasium.make` of the benchmark's env with `task` set."""
        env = gymnasium.make(self.env_id, **make_kwargs)
        env.get_wrapper_attr("set_task")(task)
        return env

    def make_vector_env(self, n_tasks: int, envs_per_task: int) -> Any:
        """The batched Meta-World step (`metarl.envs.metaworld_vector`) for an ML1 skill it
        translates, with the V2 rewards; None otherwise (the learner then steps Meta-World's
        own envs)."""
        from metarl.envs.metaworld_vector import make_metaworld_vector

        return make_metaworld_vector(self, n_tasks, envs_per_task)

    def episode_metrics(self, tasks: Sequence[Any], first: FirstEpisodes) -> dict[str, np.ndarray]:
        """Whether each first episode succeeded at some step (`metarl.envs.episodes`)."""
        return success_metrics(tasks, first)

    def evaluate_policy(self, task: MetaWorldTask, act: Act) -> dict[str, float]:
        """Meta-World's evaluation of a deterministic policy on one task: success rate and
        mean return over `eval_episodes` episodes (`metaworld.evaluation.evaluation`, which
        ends an episode at its first success)."""
        from gymnasium.wrappers import RecordEpisodeStatistics, TimeLimit
        from metaworld.evaluation import evaluation
        from metaworld.wrappers import AutoTerminateOnSuccessWrapper

        def make() -> gymnasium.Env[Any, Any]:
            env = make_skill_env(task.skill, self.reward_version)
            env.set_task(task.resolve())
            wrapped = AutoTerminateOnSuccessWrapper(TimeLimit(env, MAX_EPISODE_STEPS))
            return RecordEpisodeStatistics(wrapped)

        envs = gymnasium.vector.SyncVectorEnv(
            [make], autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP
        )
        try:
            success, mean_return, _, _ = evaluation(_Agent(act), envs, self.eval_episodes)
        finally:
            envs.close()
        return {"success": success, "return": mean_return}

    def evaluate_policies(
        self, tasks: Sequence[MetaWorldTask], acts: Sequence[Act]
    ) -> dict[str, np.ndarray] | None:
        """`evaluate_policy` of many tasks at once, on the batched Meta-World step (None where
        the tasks have none: then each task goes through `evaluate_policy`).

        The same protocol as Meta-World's evaluator: `eval_episodes` episodes per task, each
        ending at its first success (counted, with the return up to and including that step)
        or after 500 steps; task `i`'s policy `acts[i]` sees its own observations one at a
        time, as in Meta-World's one-env vector env, so the success rates are the evaluator's
        exactly (`tests/test_metaworld_vector.py`). The returns are summed in float64;
        Meta-World's `RecordEpisodeStatistics` turns its sum into float32 at the first float32
        reward (NumPy's promotion of a positive float32 gripper action), so its returns differ
        from these in float32's last digits.

        The batched env is built once and kept for the next call (an evaluation scores each
        chunk of tasks after each number of updates): a call with fewer tasks than it has
        slots leaves the other slots on their last tasks (no reset of a Meta-World env for
        them, no regrouping of ML10's skills) and steps them with zero actions, unread; one
        with more rebuilds it. `release_scorer` (or `close`) frees it."""
        from metarl.envs.vector import set_vector_tasks

        n, episodes = len(tasks), self.eval_episodes
        env = self._scorer_env(n)
        if env is None:
            return None
        slots = self._scorer_tasks
        slots[:n] = list(tasks)
        idle = np.zeros((1, 4), np.float32)
        policies = [*acts, *(lambda obs: idle for _ in slots[n:])]
        successes, returns = np.zeros(n), np.zeros((n, episodes))
        set_vector_tasks(env, slots)
        for episode in range(episodes):
            obs, _ = env.reset()
            running, total = np.zeros(len(slots), dtype=bool), np.zeros(n)
            running[:n] = True
            for _ in range(MAX_EPISODE_STEPS):
                actions = np.concatenate([act(obs[i : i + 1]) for i, act in enumerate(policies)])
                obs, reward, _, _, infos = env.step(actions)
                total += np.where(running[:n], reward[:n], 0.0)
                hit = running & (np.asarray(infos["success"]) == 1.0)
                successes += hit[:n]
                running &= ~hit
                if not running.any():
                    break
            returns[:, episode] = total
        return {"success": successes / episodes, "return": returns.mean(axis=1)}

    def _scorer_env(self, n: int) -> Any:
        """The kept batched env of `evaluate_policies`, rebuilt only to hold more than `n`
        task slots (None: these tasks have no batched step)."""
        if self._scorer is not None and len(self._scorer_tasks) >= n:
            return self._scorer
        self.release_scorer()
        env = self.make_vector_env(n, 1)
        if env is not None:
            self._scorer, self._scorer_tasks = env, [None] * n
        return env

    def release_scorer(self) -> None:
        """Close the batched env `evaluate_policies` keeps (the next call builds one)."""
        if self._scorer is not None:
            self._scorer.close()
        self._scorer, self._scorer_tasks = None, []

    def close(self) -> None:
        """Release the scorer's env; the benchmark objects are cached per process."""
        self.release_scorer()


class _Agent:
    """metaworld.evaluation's `Agent`: a memoryless deterministic policy."""

    def __init__(self, act: Act) -> None:
        self.act = act

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        return self.act(observations)

    def reset(self, env_mask: np.ndarray) -> None:
        """An MLP policy has no state to reset."""


def _show(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))


def register_env(name: str, skill: str, seed: int, reward_version: str) -> str:
    """The Gymnasium id of one benchmark's `MetaWorldEnv` (registered on first use), e.g.
    `metarl/MetaWorld-ML1-reach-v3-seed0-rewardv2-v0`; `skill` is the one a fresh env holds."""
    benchmark_name = name.split("-")[0]
    env_id = f"metarl/MetaWorld-{name}-seed{seed}-reward{reward_version}-v0"
    if env_id not in gymnasium.registry:
        gymnasium.register(
            id=env_id,
            entry_point="metarl.envs.metaworld:MetaWorldEnv",
            max_episode_steps=MAX_EPISODE_STEPS,
            kwargs={
                "benchmark": benchmark_name,
                "skill": skill,
                "seed": seed,
                "reward_version": reward_version,
            },
        )
    return env_id


def register_distributions() -> None:
    """`metaworld-ml1-<skill>`, `metaworld-ml1` (any skill), `metaworld-ml10` and
    `metaworld-ml45`."""
    entry = "metarl.envs.metaworld:MetaWorldDistribution"
    for skill in ML1_SKILLS:
        register_task(
            f"metaworld-ml1-{skill}",
            entry,
            kwargs={"benchmark": "ML1", "skill": f"{skill}-v3"},
            description=f"Meta-World ML1 {skill}: 50 train / 50 test goals (extra [metaworld])",
        )
    register_task(
        "metaworld-ml1",
        entry,
        kwargs={"benchmark": "ML1"},
        description="Meta-World ML1 of any skill (skill = ...) (extra [metaworld])",
    )
    register_task(
        "metaworld-ml10",
        entry,
        kwargs={"benchmark": "ML10"},
        description="Meta-World ML10: 10 train / 5 test skills (extra [metaworld])",
    )
    register_task(
        "metaworld-ml45",
        entry,
        kwargs={"benchmark": "ML45"},
        description="Meta-World ML45: 45 train / 5 test skills (extra [metaworld])",
    )


__all__ = [
    "MetaWorldDistribution",
    "full_skill_name",
    "make_skill_env",
    "MetaWorldEnv",
    "MetaWorldTask",
    "installed_versions",
    "register_distributions",
    "require_metaworld",
]
