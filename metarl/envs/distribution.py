"""Environment families as task distributions, so the outer loop samples them like any task.

Tasks are continuous (goals, velocities, masses): a held-out task is a fresh draw, not a
member of a fixed list. The three splits still use different random streams, so the same
generator state gives different train and test tasks, and evaluating with the training seed
does not replay training tasks. (A family with a `choice` of few values, like
HalfCheetahDir's two directions, necessarily shares them across splits.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np

from metarl.envs import family
from metarl.envs.episodes import LOCOMOTION_INFO, locomotion_metrics
from metarl.envs.spec import TaskValue
from metarl.errors import UserError
from metarl.protocol import FirstEpisodes, Split
from metarl.registry import check_env_entry_point

SPLIT_STREAMS = {Split.TRAIN: 0, Split.VAL: 1, Split.TEST: 2}


@dataclass(frozen=True)
class EnvTask:
    """One task of an environment family: the env id and its task parameters."""

    env_id: str
    params: dict[str, TaskValue] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "params": dict(self.params)}


class EnvFamilyDistribution:
    """The tasks of the registered family `env_id` (e.g. `metarl/Navigation2D-v0`).

    Sampling asks one env of the family (built on first use and kept) for `sample_tasks`, so
    the distribution is the one its family file declares.

    Examples:
        >>> import numpy as np
        >>> from metarl import make_distribution
        >>> dist = make_distribution("navigation2d")
        >>> task = dist.sample(2, np.random.default_rng(0))[0]
        >>> task.env_id, sorted(task.params)
        ('metarl/Navigation2D-v0', ['goal'])
        >>> env = dist.make_env(task)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape
        (2,)
    """

    kind = "rl"
    episode_info = LOCOMOTION_INFO
    """Recorded where the family's envs report them (the locomotion families)."""

    def __init__(self, env_id: str) -> None:
        spec = family(env_id)
        if not spec.is_physics:  # imported on first use, as Gymnasium would
            check_env_entry_point(spec.entry_point, str(spec.source))
        self.env_id = spec.env_id
        self._sampler: gymnasium.Env[Any, Any] | None = None

    def sample(self, n: int, rng: np.random.Generator, split: Split = Split.TRAIN) -> list[EnvTask]:
        """Draw `n` tasks of `split` (an independent stream per split) using only `rng`.

        Args:
            n: Tasks to draw.
            rng: The only source of randomness.
            split: Which part of the family.

        Returns:
            The tasks: the env id and the parameters the family varies.
        """
        stream = SPLIT_STREAMS[Split(split)]
        split_rng = np.random.default_rng([int(rng.integers(2**63)), stream])
        if self._sampler is None:
            self._sampler = gymnasium.make(self.env_id)
        tasks = self._sampler.get_wrapper_attr("sample_tasks")(n, split_rng)
        return [EnvTask(self.env_id, t) for t in tasks]

    def make_env(self, task: EnvTask | Mapping[str, Any], **make_kwargs: Any) -> Any:
        """`gymnasium.make(env_id)` with `task` set.

        Args:
            task: An `EnvTask` of this family or its `params` dict.
            **make_kwargs: Passed to `gymnasium.make` (e.g. `render_mode`).

        Returns:
            The env, its task set.

        Raises:
            UserError: A task of another family.
        """
        if isinstance(task, EnvTask):
            if task.env_id != self.env_id:
                raise UserError(f"task of {task.env_id} given to the {self.env_id} distribution")
            params: Mapping[str, Any] = task.params
        else:
            params = task
        env = gymnasium.make(self.env_id, **make_kwargs)
        env.get_wrapper_attr("set_task")(params)
        return env

    def episode_metrics(self, tasks: Sequence[Any], first: FirstEpisodes) -> dict[str, np.ndarray]:
        """The locomotion families' velocity and asked-way metrics (`metarl.envs.episodes`);
        nothing for families whose envs report no velocity."""
        return locomotion_metrics(tasks, first)

    def make_vector_env(self, n_tasks: int, envs_per_task: int) -> Any:
        """The family's native task vector env (`vector_entry_point` in its family file), or
        None when it has none (the learner then steps `make_env` envs in a `SyncVectorEnv`)."""
        spec = family(self.env_id)
        if spec.vector_entry_point is None:
            return None
        from metarl.envs.vector import import_vector_class

        cls = import_vector_class(spec.vector_entry_point, str(spec.source))
        max_steps = gymnasium.spec(self.env_id).max_episode_steps
        return cls(n_tasks, envs_per_task, params=spec.raw_params, max_episode_steps=max_steps)

    def close(self) -> None:
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
