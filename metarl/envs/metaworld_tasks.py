"""Meta-World's own pieces as metarl uses them: the extra's import, its benchmarks, a task as
plain values (`MetaWorldTask`) and the env that runs it (`MetaWorldEnv`).

The distribution (`metarl.envs.metaworld`) and the batched step
(`metarl.envs.metaworld_vector`) both build on this module; it imports neither, so Meta-World's
step can sit between the two. Importing it does not import Meta-World (or MuJoCo).
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, SupportsFloat

import gymnasium
import numpy as np

from metarl.envs.metaworld_compat import patch_for_mujoco
from metarl.envs.metaworld_speed import use_fast_paths
from metarl.errors import ConfigError, UserError

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
        first, so a sub-env holds one Meta-World env however many skills its tasks visit (an
        ML10 training that kept every skill's env in each sub-env ran out of memory:
        docs/changelog.md)."""
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
