"""Many HalfCheetah tasks in one process: a `gymnasium.vector.VectorEnv` over `mujoco.batch`.

`n_tasks * envs_per_task` cheetahs step together; sub-env `task * envs_per_task + e` runs task
slot `task`. The task parameters of these families (a goal velocity, a direction) change only
the reward, never the physics, so every sub-env simulates the same MjModel. Stepping goes
through `mujoco.batch.Batch` (MuJoCo >= 4.0): each sub-env is one row of a state array
(mjSTATE_INTEGRATION: qpos, qvel, warm start, ...) that the batch loads, steps `frame_skip`
times and saves back on a C thread pool, with no per-env Python. Of the ways of stepping
many models that `scripts/benchmarks/bench_mujoco_step.py` measures (Gymnasium's `SyncVectorEnv`, a
Python loop over `MjData`, `mujoco.rollout`, `mujoco.batch`), it and `mujoco.rollout` cost the
least CPU per step (about a third of `SyncVectorEnv`'s); the batch keeps the state in place
between calls (rollout copies it in and out) and carries the solver's warm start, so its
trajectories are bit-identical to Gymnasium's (rollout's FULLPHYSICS state drops the warm start).

AntDir (`AntDirVector`) reads two derived fields that the batch does not keep by default: the
torso's `xpos` (Ant-v5 measures its velocity from it) and `cfrc_ext` (its observation and
contact cost), which Gymnasium computes with `mj_rnePostConstraint` after `mj_step`. Ant-v5
integrates with RK4, so both come from the last Runge-Kutta stage's forward pass, not from any
state of the trajectory (a sensor that triggers the computation inside the step gives other
values). The ant batch is therefore persistent (one MjData per sub-env, its derived fields
those of its last step, as Gymnasium's MjData's are) and runs `mj_rnePostConstraint` on each
sub-env's data after the step: one Python call per sub-env, about a tenth of the CPU a step costs,
bit-identical to Gymnasium.

Transitions, rewards and reset noise are those of the single family env
(`metarl.envs.locomotion`, wrapping Gymnasium's `HalfCheetah-v5` or `Ant-v5`), which
`tests/test_vector_mujoco.py` checks step by step: the same MjModel (built by Gymnasium from
its XML), `x_velocity = (x_after - x_before) / dt`, observation `qpos[1:], qvel` (the ant's:
`qpos[2:], qvel, clip(cfrc_ext[1:], -1, 1)`), and the reset
noise `qpos + U(-0.1, 0.1)`, `qvel + 0.1 N(0, 1)` drawn in Gymnasium's order from a generator
per sub-env, seeded as Gymnasium seeds one (`reset(seed=s)`: sub-env `i` starts where
`HalfCheetah-v5` reset with seed `s + i` starts). Observations are float32 (Gymnasium's are
float64), as a policy consumes them.

Episodes end by truncation after `max_episode_steps` (HalfCheetah never terminates; the ant
terminates when unhealthy, as Ant-v5 does); a finished sub-env starts its next episode
within the same `step` (Gymnasium's SAME_STEP autoreset), and `infos["final_obs"]` (masked
by `infos["_final_obs"]`) holds the last observation of the episode that ended.

MuJoCo is imported when an env is built, never at `import metarl`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium
import numpy as np
from gymnasium.utils import seeding

from metarl.envs.locomotion import (
    CTRL_COST,
    AntDir,
    HalfCheetahDir,
    HalfCheetahVel,
    Locomotion,
)
from metarl.envs.spec import TaskValue, check_task, parse_params, sample_params
from metarl.envs.vector import Seeds, TaskVectorEnv, sub_env_seeds
from metarl.envs.wrapper import make_base
from metarl.errors import ConfigError

if TYPE_CHECKING:
    from mujoco.batch import Batch


def default_threads() -> int:
    """Threads of the physics pool unless `threads` is given: the cores this process may run
    on (its CPU affinity, which a container or `taskset` narrows; else the machine's count),
    and no more than torch's thread count, so `metarl train --threads N` (which sets torch's)
    is one knob for the cores a run takes: two runs at `--threads 1` on two cores had each
    run its physics on both."""
    import torch

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS, Windows)
        cores = os.cpu_count() or 1
    return max(1, min(cores, torch.get_num_threads()))


class MujocoTaskVectorEnv(TaskVectorEnv):
    """`n_tasks` task slots x `envs_per_task` sub-envs of one MuJoCo family, stepped at once.

    Subclasses name the single-env family (`family`: its parameters, default task, name and
    registered horizon) and vectorize its reward in `task_reward`.

    Args:
        n_tasks: task slots; `set_tasks` gives each one a task.
        envs_per_task: sub-envs per slot; `num_envs = n_tasks * envs_per_task`, row-major.
        params: the task-parameter distributions, as the single env takes them (default: the
            registered family's).
        max_episode_steps: truncation horizon (default: the registered family's, 200).
        threads: threads of the physics pool (default `default_threads()`).
    """

    family: ClassVar[type[Locomotion]]
    persistent: ClassVar[bool] = False
    """Whether the batch keeps one MjData per sub-env, for families that read derived fields
    (positions of bodies, contact forces) as Gymnasium leaves them after `mj_step`."""

    def __init__(
        self,
        n_tasks: int,
        envs_per_task: int,
        params: Mapping[str, Any] | None = None,
        max_episode_steps: int | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        name = self.family.family_name
        try:
            from mujoco.batch import Batch
        except ImportError:
            raise ConfigError(
                f"{type(self).__name__} steps through mujoco.batch (MuJoCo >= 4.0): "
                'pip install "mujoco>=4.0"'
            ) from None
        for label, value in (("n_tasks", n_tasks), ("envs_per_task", envs_per_task)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: {label} = {value!r}: expected a positive integer")
        registered = gymnasium.spec(name)
        horizon = registered.max_episode_steps if max_episode_steps is None else max_episode_steps
        if not isinstance(horizon, int) or isinstance(horizon, bool) or horizon < 1:
            raise ConfigError(
                f"{name}: max_episode_steps = {horizon!r}: expected a positive integer"
            )
        threads = default_threads() if threads is None else threads
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"{name}: threads = {threads!r}: expected a positive integer")

        self.n_tasks, self.envs_per_task = n_tasks, envs_per_task
        self.num_envs = n_tasks * envs_per_task
        self.max_episode_steps = horizon
        self.threads = threads
        default_params = registered.kwargs.get("params", self.family.default_params)
        self.params = parse_params(default_params if params is None else params, name)

        # The physics of the single env: Gymnasium builds the model from its own XML.
        base: Any = make_base(self.family.default_base)
        self.model = base.model
        self.frame_skip = int(base.frame_skip)
        self.dt = float(base.dt)
        self._noise = float(base._reset_noise_scale)
        self._init_qpos = np.array(base.init_qpos)
        self._init_qvel = np.array(base.init_qvel)
        obs_dim = int(base.observation_space.shape[0])
        self._read_base(base)
        base.close()

        observation = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self._init_spaces(observation, base.action_space)

        self._batch: Batch = Batch(
            self.model, self.num_envs, nthread=threads, persistent=self.persistent
        )
        self._qpos = self._batch.bind("qpos")
        self._qvel = self._batch.bind("qvel")
        self._ctrl = self._batch.bind("ctrl")
        self._bind_derived()
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = True
        self._tasks: list[dict[str, TaskValue]] = []
        self.set_tasks([self.family.default_task] * n_tasks)

    # --- tasks ----------------------------------------------------------------------------

    def set_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> None:
        """Give task slot `k` the task `tasks[k]`, from the next step on (episodes running
        keep their state; `reset` to start afresh). Each task is checked as the single env's
        `set_task` checks it."""
        name = self.family.family_name
        if isinstance(tasks, Mapping) or len(tasks) != self.n_tasks:
            raise ConfigError(
                f"{name}: set_tasks needs one task per slot ({self.n_tasks}), got {tasks!r}"
            )
        clean = [check_task(self.params, task, name) for task in tasks]
        self._tasks = clean
        self._task_arrays = {
            key: np.asarray([task[key] for task in clean], dtype=np.float64) for key in self.params
        }

    def get_tasks(self) -> list[dict[str, TaskValue]]:
        """A copy of every slot's task."""
        return [
            {k: (list(v) if isinstance(v, list) else v) for k, v in t.items()} for t in self._tasks
        ]

    def sample_tasks(self, n: int, rng: np.random.Generator) -> list[dict[str, TaskValue]]:
        """`n` tasks from this env's parameter distributions, drawn with `rng` only."""
        return sample_params(self.params, n, rng)

    def task_column(self, key: str) -> np.ndarray:
        """Parameter `key` of every sub-env's task, `[num_envs]` (or `[num_envs, size]`)."""
        return np.repeat(self._task_arrays[key], self.envs_per_task, axis=0)

    def task_reward(self, velocity: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """The family's reward of every sub-env, `[num_envs]` float64, from the velocity of
        the family's position over the step (`[num_envs, 1]` along x, or `[num_envs, 2]`)."""
        raise NotImplementedError

    # --- what a family reads of the physics (the cheetah's: qpos only) --------------------

    def _read_base(self, base: Any) -> None:
        """Copy the settings the family reads from the built Gymnasium env (its weights)."""

    def _bind_derived(self) -> None:
        """Bind the batch's derived fields the family reads."""

    def _position(self) -> np.ndarray:
        """The position whose change over a step is the family's velocity, `[num_envs, k]`
        (a copy): the cheetah's root x, `qpos[:, :1]`, as HalfCheetah-v5 measures it."""
        return self._qpos[:, :1].copy()

    def _after_step(self) -> None:
        """Compute what the family reads after the physics steps (nothing for the cheetah)."""

    def _terminated(self) -> np.ndarray:
        """Which sub-envs' episodes end now (the cheetah's never do)."""
        return np.zeros(self.num_envs, dtype=bool)

    def _after_reset(self, ids: np.ndarray) -> None:
        """Finish the reset of sub-envs `ids` after their new state is written."""

    # --- state ----------------------------------------------------------------------------

    @property
    def qpos(self) -> np.ndarray:
        """Every sub-env's joint positions, `[num_envs, nq]`: a live, writable view (where the
        family reads derived fields, the ant's, they follow a write from the next step on)."""
        return self._qpos

    @property
    def qvel(self) -> np.ndarray:
        """Every sub-env's joint velocities, `[num_envs, nv]`: a live, writable view."""
        return self._qvel

    def _observe(self, ids: np.ndarray | slice = slice(None)) -> np.ndarray:
        return np.concatenate([self._qpos[ids, 1:], self._qvel[ids]], axis=1, dtype=np.float32)

    def _reset_envs(self, ids: np.ndarray) -> None:
        """Gymnasium's `reset_model` for sub-envs `ids`: `mj_resetData`, then the initial
        state plus noise drawn from each sub-env's own generator in Gymnasium's order."""
        import mujoco

        self._batch.reset(ids, stage=mujoco.mjtStage.mjSTAGE_NONE.value)
        nq, nv, scale = self.model.nq, self.model.nv, self._noise
        for i in ids:
            rng = self._rngs[i]
            self._qpos[i] = self._init_qpos + rng.uniform(low=-scale, high=scale, size=nq)
            self._qvel[i] = self._init_qvel + scale * rng.standard_normal(nv)
        self._elapsed[ids] = 0
        self._after_reset(ids)

    # --- the VectorEnv API ----------------------------------------------------------------

    def reset(
        self, *, seed: Seeds = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a fresh episode in every sub-env. A seed gives sub-env `i` Gymnasium's
        generator for its seed (`s + i`, or the list's `i`-th), from which it draws this
        episode's noise and its later autoresets', as a Gymnasium env reset with that seed
        does; without, the generators carry on. `options={"tasks": [...]}` calls `set_tasks`
        first, as the single env's `options={"task": ...}` sets its task."""
        unknown = sorted(set(options or {}) - {"tasks"})
        if unknown:
            raise ConfigError(f"reset options {unknown}: the only option is 'tasks'")
        if options and "tasks" in options:
            self.set_tasks(options["tasks"])
        for i, sub_seed in enumerate(sub_env_seeds(seed, self.num_envs)):
            if sub_seed is not None:
                self._rngs[i] = seeding.np_random(sub_seed)[0]
        all_ids = np.arange(self.num_envs)
        self._reset_envs(all_ids)
        self._needs_reset = False
        return self._observe(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One control step (`frame_skip` physics steps) of every sub-env."""
        if self._needs_reset:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != self.action_space.shape:
            raise ValueError(
                f"actions have shape {actions.shape}: expected {self.action_space.shape}"
            )
        before = self._position()
        self._ctrl[:] = actions
        self._batch.step(nstep=self.frame_skip)
        self._after_step()
        velocity = (self._position() - before) / self.dt
        rewards = self.task_reward(velocity, actions)
        obs = self._observe()
        self._elapsed += 1
        terminated = self._terminated()
        truncated = self._elapsed >= self.max_episode_steps
        every = np.ones(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {"x_velocity": velocity[:, 0], "_x_velocity": every}
        if velocity.shape[1] > 1:
            infos |= {"y_velocity": velocity[:, 1], "_y_velocity": every}
        done = terminated | truncated
        if done.any():
            ids = np.flatnonzero(done)
            infos["final_obs"] = np.where(done[:, None], obs, 0.0).astype(np.float32)
            infos["_final_obs"] = done
            self._reset_envs(ids)
            obs[ids] = self._observe(ids)
        return obs, rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        del self._batch

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n_tasks={self.n_tasks}, envs_per_task={self.envs_per_task},"
            f" threads={self.threads})"
        )


def _control_cost(actions: np.ndarray) -> np.ndarray:
    return CTRL_COST * np.sum(np.square(actions), axis=1)


class HalfCheetahVelVector(MujocoTaskVectorEnv):
    """`metarl/HalfCheetahVel-v0` vectorized: reward -|v_x - goal| - 0.05 |a|^2."""

    family = HalfCheetahVel

    def task_reward(self, velocity: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return -np.abs(velocity[:, 0] - self.task_column("velocity")) - _control_cost(actions)


class HalfCheetahDirVector(MujocoTaskVectorEnv):
    """`metarl/HalfCheetahDir-v0` vectorized: reward d * v_x - 0.05 |a|^2."""

    family = HalfCheetahDir

    def task_reward(self, velocity: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return self.task_column("direction") * velocity[:, 0] - _control_cost(actions)


class AntDirVector(MujocoTaskVectorEnv):
    """`metarl/AntDir-v0` vectorized: Ant-v5's reward with its forward term replaced by the
    torso's velocity projected on the task's direction theta, its healthy reward, control and
    contact costs and its termination when unhealthy kept (weights read from the built env)."""

    family = AntDir
    persistent = True

    def _read_base(self, base: Any) -> None:
        self._ctrl_weight = float(base._ctrl_cost_weight)
        self._contact_weight = float(base._contact_cost_weight)
        self._contact_low, self._contact_high = (float(v) for v in base._contact_force_range)
        self._healthy_reward = float(base._healthy_reward)
        self._healthy_low, self._healthy_high = (float(v) for v in base._healthy_z_range)
        self._terminate_unhealthy = bool(base._terminate_when_unhealthy)
        self._main_body = int(base._main_body)

    def _bind_derived(self) -> None:
        import mujoco

        self._xpos = self._batch.bind("xpos")
        self._scratch = mujoco.MjData(self.model)
        # computed once per step, read by the observation, the reward and the termination:
        # the clipped contact forces (zero after a reset) and which sub-envs are healthy
        self._contact = np.zeros((self.num_envs, self.model.nbody, 6))
        self._healthy = np.ones(self.num_envs, dtype=bool)

    def _position(self) -> np.ndarray:
        return self._xpos[:, self._main_body, :2].copy()

    def _after_step(self) -> None:
        # Gymnasium's `mj_rnePostConstraint` after `mj_step`, on each sub-env's kept MjData
        import mujoco

        data, model, contact = self._scratch, self.model, self._contact
        for i in range(self.num_envs):
            self._batch.get_data(i, data)
            mujoco.mj_rnePostConstraint(model, data)
            contact[i] = data.cfrc_ext
        np.clip(contact, self._contact_low, self._contact_high, out=contact)
        finite = np.isfinite(self._qpos).all(axis=1) & np.isfinite(self._qvel).all(axis=1)
        height = self._qpos[:, 2]
        self._healthy = finite & (height >= self._healthy_low) & (height <= self._healthy_high)

    def _terminated(self) -> np.ndarray:
        if not self._terminate_unhealthy:
            return super()._terminated()
        return ~self._healthy

    def _after_reset(self, ids: np.ndarray) -> None:
        # Gymnasium's reset: mj_resetData zeroes the contact forces, set_state runs mj_forward
        self._batch.forward(ids)
        self._contact[ids] = 0.0

    def _observe(self, ids: np.ndarray | slice = slice(None)) -> np.ndarray:
        forces = self._contact[ids, 1:]
        forces = forces.reshape(forces.shape[0], -1)
        return np.concatenate(
            [self._qpos[ids, 2:], self._qvel[ids], forces], axis=1, dtype=np.float32
        )

    def task_reward(self, velocity: np.ndarray, actions: np.ndarray) -> np.ndarray:
        theta = self.task_column("direction")
        projected = np.cos(theta) * velocity[:, 0] + np.sin(theta) * velocity[:, 1]
        healthy = self._healthy_reward * self._healthy
        control = self._ctrl_weight * np.sum(np.square(actions), axis=1)
        contact = self._contact_weight * np.sum(np.square(self._contact), axis=(1, 2))
        return projected + healthy - control - contact
