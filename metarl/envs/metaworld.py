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

import functools
import importlib.metadata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, SupportsFloat

import gymnasium
import numpy as np

from metarl.envs.metaworld_compat import patch_for_mujoco
from metarl.envs.metaworld_speed import use_fast_paths
from metarl.errors import ConfigError, UserError
from metarl.protocol import Split
from metarl.registry import register_task

BENCHMARKS = ("ML1", "ML10", "ML45")
ML1_SKILLS = ("reach", "push", "pick-place")
"""Skills with a distribution of their own (`metaworld-ml1-<skill>`); `metaworld-ml1` takes
any Meta-World v3 env name as `skill`."""
REWARD_VERSIONS = ("v1", "v2")
MAX_EPISODE_STEPS = 500
"""Meta-World's `max_path_length`: every env truncates itself at this step."""
EVAL_EPISODES = 3
"""Episodes per test goal in Meta-World's meta-learning evaluation."""
INSTALL = (
    'pip install "metarl-torch[metaworld]" (from a checkout: pip install -e ".[metaworld]"; '
    "beside MuJoCo 4: pip install --no-deps metaworld==3.1.1 scipy imageio)"
)

Act = Callable[[np.ndarray], np.ndarray]
"""A deterministic policy: a batch of observations to a batch of actions."""


# -- the extra ---------------------------------------------------------------------------------


def require_metaworld(what: str = "these tasks") -> Any:
    """The `metaworld` module, or a one-line `UserError` naming the extra to install."""
    try:
        import metaworld
    except ImportError as e:
        raise UserError(f"Meta-World ({what}) is not installed ({e}); {INSTALL}") from None
    patch_for_mujoco(metaworld)  # MuJoCo 4's wider weld rows (metaworld_compat.py)
    use_fast_paths()  # its two slowest lines, same numbers (metaworld_speed.py)
    return metaworld


def installed_versions(reward_version: str) -> dict[str, str]:
    """What a Meta-World run's numbers depend on beyond the recipe: Meta-World's version,
    MuJoCo's (the simulator Meta-World pins) and the reward function version."""
    require_metaworld()
    return {
        "metaworld": importlib.metadata.version("metaworld"),
        "mujoco": importlib.metadata.version("mujoco"),
        "reward": reward_version,
    }


def full_skill_name(skill: str) -> str:
    """`reach` -> `reach-v3` (Meta-World's env names carry the version)."""
    return skill if skill.endswith("-v3") else f"{skill}-v3"


@functools.lru_cache(maxsize=8)
def load_benchmark(name: str, skill: str | None, seed: int) -> Any:
    """Meta-World's benchmark object (cached: building one resets each skill's env 50 times
    per split). Its task lists are a function of `seed` alone: Meta-World seeds and restores
    numpy's global generator around the goal draws."""
    mw = require_metaworld()
    if name == "ML1":
        return mw.ML1(skill, seed=seed)
    return mw.ML10(seed=seed) if name == "ML10" else mw.ML45(seed=seed)


# -- tasks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetaWorldTask:
    """One Meta-World task as plain values: entry `index` of the benchmark's `split` task list
    (`train_tasks` or `test_tasks`) of the benchmark built with `seed`; `skill` is the env
    name that entry belongs to (checked when resolved)."""

    benchmark: str
    skill: str
    split: str
    index: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def params(self) -> dict[str, Any]:
        """What `MetaWorldEnv.set_task` takes (the description itself)."""
        return self.to_dict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetaWorldTask:
        keys = {"benchmark", "skill", "split", "index", "seed"}
        if not isinstance(data, Mapping) or set(data) != keys:
            raise ConfigError(
                f"a Meta-World task is a mapping with keys {sorted(keys)}, got {data!r}"
            )
        return cls(
            str(data["benchmark"]),
            str(data["skill"]),
            str(data["split"]),
            int(data["index"]),
            int(data["seed"]),
        )

    def resolve(self) -> Any:
        """Meta-World's own `Task` object for this description."""
        skill = self.skill if self.benchmark == "ML1" else None
        bench = load_benchmark(self.benchmark, skill, self.seed)
        tasks = bench.train_tasks if self.split == "train" else bench.test_tasks
        if not 0 <= self.index < len(tasks):
            raise ConfigError(f"{self}: index out of range (the split has {len(tasks)} tasks)")
        task = tasks[self.index]
        if task.env_name != self.skill:
            raise ConfigError(f"{self}: entry {self.index} is a {task.env_name} task")
        return task


# -- the environment ---------------------------------------------------------------------------


def make_skill_env(skill: str, reward_version: str, render_mode: str | None = None) -> Any:
    """A bare Meta-World env of `skill` (no task set yet: Meta-World refuses to reset it)."""
    mw = require_metaworld()
    try:
        cls = mw.ALL_V3_ENVIRONMENTS[skill]
    except KeyError:
        raise ConfigError(
            f"skill {skill!r} is not a Meta-World v3 env; known: "
            + ", ".join(sorted(mw.ALL_V3_ENVIRONMENTS))
        ) from None
    return cls(reward_function_version=reward_version, render_mode=render_mode)


class MetaWorldEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """Meta-World's env for whichever skill the current task has, with metarl's task API:
    `set_task(description)` and `reset(options={"task": description})`.

    The observation space is the 39-dim box every Meta-World v3 env shares (goal hidden in
    ML benchmarks), unbounded because the bounds differ between skills; the action space is
    Meta-World's [-1, 1]^4. Episodes end by truncation after 500 steps (Meta-World's own).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        benchmark: str = "ML1",
        skill: str = "reach-v3",
        seed: int = 0,
        reward_version: str = "v2",
        render_mode: str | None = None,
    ) -> None:
        self.benchmark_name, self.seed = benchmark, seed
        self.reward_version, self.render_mode = reward_version, render_mode
        self._envs: dict[str, Any] = {}
        self._skill = full_skill_name(skill)
        self._task: MetaWorldTask | None = None
        first = self._env(self._skill)
        self.action_space = first.action_space
        shape = first.observation_space.shape
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, shape, np.float64)

    def _env(self, skill: str) -> Any:
        """The env of `skill`, built when the skill changes; the previous skill's is closed
        first, so a sub-env holds one Meta-World env (~26 MB) however many skills its tasks
        visit: an ML10 training that kept every skill's env in each of its 200 sub-envs grew
        past 23 GB in 5 iterations and was killed for memory."""
        if skill not in self._envs:
            self.close()
            self._envs[skill] = make_skill_env(skill, self.reward_version, self.render_mode)
        return self._envs[skill]

    @property
    def skill_env(self) -> Any:
        """The Meta-World env of the current task's skill."""
        return self._env(self._skill)

    def set_task(self, task: MetaWorldTask | Mapping[str, Any]) -> None:
        """Make `task` current from the next reset on (Meta-World's `set_task` on the env of
        its skill)."""
        desc = task if isinstance(task, MetaWorldTask) else MetaWorldTask.from_dict(task)
        if (desc.benchmark, desc.seed) != (self.benchmark_name, self.seed):
            raise ConfigError(
                f"task of {desc.benchmark} seed {desc.seed} given to an env of "
                f"{self.benchmark_name} seed {self.seed}"
            )
        self._env(desc.skill).set_task(desc.resolve())
        self._skill, self._task = desc.skill, desc

    def get_task(self) -> dict[str, Any] | None:
        return None if self._task is None else self._task.to_dict()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        if self._task is None:
            raise UserError("MetaWorldEnv: set a task (set_task or reset(options=...)) first")
        # Meta-World's reset ignores `seed`: with a task set, the episode start is fixed
        return self.skill_env.reset()

    def step(
        self, action: np.ndarray
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        return self.skill_env.step(action)

    def render(self) -> Any:
        return self.skill_env.render()

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


# -- the distribution --------------------------------------------------------------------------


class MetaWorldDistribution:
    """The train or test tasks of ML1 (one skill) or ML10, as an RL task distribution.

    `versions` is what a run directory recorded (`run_record`); given, it must match what is
    installed, so a run is never resumed or evaluated under another Meta-World, MuJoCo or
    reward function.
    """

    kind = "rl"
    max_eval_subenvs = 160
    """Sub-envs an evaluation may hold at once (`metarl.learners.batched_rl.eval_chunk`):
    each Meta-World env holds ~26 MB, so 64 tasks x 10 episodes were ~17 GB, and an
    evaluation of several runs was killed for memory."""

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
        from these in float32's last digits."""
        from metarl.envs.vector import set_vector_tasks

        env = self.make_vector_env(len(tasks), 1)
        if env is None:
            return None
        n, episodes = len(tasks), self.eval_episodes
        successes, returns = np.zeros(n), np.zeros((n, episodes))
        try:
            set_vector_tasks(env, list(tasks))
            for episode in range(episodes):
                obs, _ = env.reset()
                running, total = np.ones(n, dtype=bool), np.zeros(n)
                for _ in range(MAX_EPISODE_STEPS):
                    actions = np.concatenate([act(obs[i : i + 1]) for i, act in enumerate(acts)])
                    obs, reward, _, _, infos = env.step(actions)
                    total += np.where(running, reward, 0.0)
                    hit = running & (np.asarray(infos["success"]) == 1.0)
                    successes += hit
                    running &= ~hit
                    if not running.any():
                        break
                returns[:, episode] = total
        finally:
            env.close()
        return {"success": successes / episodes, "return": returns.mean(axis=1)}

    def close(self) -> None:
        """Nothing held: the benchmark objects are cached per process."""


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
    "MetaWorldEnv",
    "MetaWorldTask",
    "installed_versions",
    "register_distributions",
    "require_metaworld",
]
