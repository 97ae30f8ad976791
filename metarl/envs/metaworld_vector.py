"""Meta-World's step for a whole meta-batch at once: physics through `mujoco.batch`, the
observation, reward and infos in NumPy (`metarl.envs.metaworld_rewards`).

Meta-World's own step is mostly Python per env (docs/results.md, "Stepping Meta-World"). Here
every sub-env is one row of a `mujoco.batch.Batch`, and one step is, for all rows together:

1. Meta-World's `set_xyz_action`: the mocap moves by `clip(a[:3], -1, 1) * action_scale`
   (in the action's dtype, as Meta-World computes it), clipped to the skill's mocap box, its
   quaternion set to (1, 0, 1, 0); the two finger controls are `a[3], -a[3]`;
2. `frame_skip` calls to `mj_step`, then the position stage at the new state, as one
   `Batch.step(nstep=frame_skip, stage=mjSTAGE_POS)` on a C thread pool. Meta-World's step
   ends with a whole `mj_forward`, but what it adds to the position stage (velocities,
   forces, the constraint solver) is read neither by the observation and rewards nor by the
   next step (`mj_step` recomputes it, and the solver's warm start is saved by `mj_step`
   alone), so the trajectories are the same and the batch skips it;
3. the observation (hand, gripper opening, objects, the previous frame, the goal or zeros),
   clipped to the skill's observation box, and the skill's V2 `evaluate_state`.

Each task slot keeps one Meta-World env of its skill with its task set: its MjModel (where
the task moved the goal site or objects) is the model its rows simulate (`Batch.set_models`),
and its reset state is where every episode of the slot starts. Meta-World's reset is
deterministic once a task is set (the task's random vector is frozen), so the slot's reset is
done once by Meta-World and restored from a snapshot of the whole integration state (qpos,
qvel, warm start, controls, mocap) after that.

Contacts are not among the batch's outputs; Meta-World reads them only for the
`grasp_success` info of skills with an object, and only matters where the gripper is open and
the object lifted, so only those rows get an `mj_forward` on a scratch MjData.

`tests/test_metaworld_vector.py` steps this and Meta-World's own env from the same reset with
the same random and scripted-expert actions over whole episodes and compares observations,
rewards and every info value. Skills without a batched step (`metaworld_skills.SKILLS`) and
the V1 rewards use `ProtocolVectorEnv` over Meta-World's own envs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

from metarl.envs.metaworld_rewards import Frame, Skill, norm
from metarl.envs.vector import Seeds, TaskVectorEnv, sub_env_seeds
from metarl.envs.vector_mujoco import default_threads
from metarl.errors import ConfigError

OBS_OBJECTS = 14
"""Meta-World's `_obs_obj_max_len`: object positions and quaternions, zero padded."""
MOCAP_QUAT = np.array([1.0, 0.0, 1.0, 0.0])


class MetaWorldVector(TaskVectorEnv):
    """One Meta-World skill's tasks over `n_tasks * envs_per_task` batched sub-envs (the task
    vector env contract of `metarl.envs.vector`). `dist` is the `MetaWorldDistribution`;
    `skill` its batched skill."""

    def __init__(
        self,
        dist: Any,
        skill: Skill,
        n_tasks: int,
        envs_per_task: int,
        max_episode_steps: int = 500,
        threads: int | None = None,
    ) -> None:
        import mujoco
        from mujoco.batch import Batch

        from metarl.envs.metaworld_tasks import make_skill_env

        self._init_layout(n_tasks, envs_per_task)
        self.dist, self.skill = dist, skill
        self.max_episode_steps = max_episode_steps
        self._make_env = lambda: make_skill_env(skill.name, dist.reward_version)
        base = self._make_env()
        self.model = base.model
        self.frame_skip = int(base.frame_skip)
        self.action_scale = float(base.action_scale)
        self._mocap_low = np.asarray(base.mocap_low, dtype=np.float64)
        self._mocap_high = np.asarray(base.mocap_high, dtype=np.float64)
        self._slot_envs: list[Any] = [None] * n_tasks
        self._tasks: list[Any] = [None] * n_tasks
        self._base = base
        observation = gymnasium.spaces.Box(-np.inf, np.inf, (39,), np.float64)
        self._init_spaces(observation, base.action_space)

        self._batch = Batch(
            self.model, self.num_envs, nthread=default_threads() if threads is None else threads
        )
        self._state = self._batch.state
        self._mocap_pos = self._batch.bind("mocap_pos")
        self._mocap_quat = self._batch.bind("mocap_quat")
        self._ctrl = self._batch.bind("ctrl")
        self._outputs = [
            self._batch.bind(name)
            for name in ("xpos", "xquat", "xmat", "site_xpos", "geom_xpos", "geom_xmat")
        ]
        self._qpos, self._qvel = self._batch.bind("qpos"), self._batch.bind("qvel")
        self._stage = mujoco.mjtStage.mjSTAGE_POS.value
        self._scratch = mujoco.MjData(self.model)
        self._ids = self._name_ids(skill)
        nstate = self._state.shape[1]
        self._snapshots = np.zeros((n_tasks, nstate))
        self._first_obs = np.zeros((n_tasks, 39))
        self._obs_low = np.zeros((n_tasks, 39))
        self._obs_high = np.zeros((n_tasks, 39))
        self._goal_in_obs = np.zeros((n_tasks, 3))
        self._consts: dict[str, np.ndarray] = {}
        self._prev = np.zeros((self.num_envs, 18))
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._slot = np.arange(self.num_envs) // envs_per_task
        self._models: list[Any] = [self.model] * self.num_envs

    def _name_ids(self, skill: Skill) -> dict[str, int]:
        import mujoco

        ids: dict[str, int] = {}
        kinds = {
            "body": (mujoco.mjtObj.mjOBJ_BODY, ("hand", "rightclaw", "leftclaw", *skill.bodies)),
            "site": (mujoco.mjtObj.mjOBJ_SITE, skill.sites),
            "geom": (mujoco.mjtObj.mjOBJ_GEOM, ("leftpad_geom", "rightpad_geom", *skill.geoms)),
        }
        for kind, (obj, names) in kinds.items():
            for name in names:
                ids[f"{kind}:{name}"] = _id(self.model, obj, name)
        for name in skill.joints:
            joint = _id(self.model, mujoco.mjtObj.mjOBJ_JOINT, name)
            ids[f"joint:{name}"] = int(self.model.jnt_qposadr[joint])
        return ids

    # --- tasks ----------------------------------------------------------------------------

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        """One Meta-World task description per slot (`MetaWorldTask` or its dict); a slot's
        Meta-World env resets once with it, and its rows restart from that reset."""
        from metarl.envs.metaworld_tasks import MetaWorldTask

        self._check_task_count(tasks)
        for slot, task in enumerate(tasks):
            desc = task if isinstance(task, MetaWorldTask) else MetaWorldTask.from_dict(task)
            if desc.skill != self.skill.name:
                raise ConfigError(
                    f"task of skill {desc.skill!r} given to the batched {self.skill.name} env"
                )
            if desc == self._tasks[slot]:
                continue
            self._capture(slot, desc)
            self._tasks[slot] = desc
        self._batch.set_models(self._models)
        # what each row reads every step, gathered from its slot once per change of tasks
        rows = self._slot
        self._row_consts = {k: v[rows] for k, v in self._consts.items()}
        self._row_goal = self._goal_in_obs[rows]
        self._row_low, self._row_high = self._obs_low[rows], self._obs_high[rows]

    def _capture(self, slot: int, desc: Any) -> None:
        """Reset the slot's Meta-World env on `desc` and keep what its episodes start from."""
        import mujoco

        env = self._slot_envs[slot]
        if env is None:
            env = self._base if slot == 0 else self._make_env()
            self._slot_envs[slot] = env
        env.set_task(desc.resolve())
        obs, _ = env.reset()
        state = np.zeros(self._snapshots.shape[1])
        spec = self._state_spec()
        mujoco.mj_getState(env.model, env.data, state, spec)
        self._snapshots[slot] = state
        self._first_obs[slot] = obs
        space = env.sawyer_observation_space
        self._obs_low[slot], self._obs_high[slot] = space.low, space.high
        goal = np.asarray(env._get_pos_goal(), dtype=np.float64)
        self._goal_in_obs[slot] = np.zeros_like(goal) if env._partially_observable else goal
        for name in self.skill.consts:
            value = np.asarray(getattr(env, name), dtype=np.float64)
            if name not in self._consts:
                self._consts[name] = np.zeros((self.n_tasks, *value.shape))
            self._consts[name][slot] = value
        rows = slice(slot * self.envs_per_task, (slot + 1) * self.envs_per_task)
        self._models[rows] = [env.model] * self.envs_per_task

    def _state_spec(self) -> int:
        """The state components a batch row holds (its `nstate` columns)."""
        import mujoco

        spec = int(mujoco.mjtState.mjSTATE_INTEGRATION)
        if mujoco.mj_stateSize(self.model, spec) != self._state.shape[1]:
            raise RuntimeError("mujoco.batch's state rows are not mjSTATE_INTEGRATION")
        return spec

    # --- episodes -------------------------------------------------------------------------

    def _restart(self, ids: np.ndarray) -> None:
        slots = self._slot[ids]
        self._state[ids] = self._snapshots[slots]
        self._prev[ids] = self._first_obs[slots, :18]
        self._elapsed[ids] = 0

    def reset(
        self, *, seed: Seeds = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        sub_env_seeds(seed, self.num_envs)  # checked; Meta-World's reset ignores seeds
        if any(t is None for t in self._tasks):
            return np.zeros((self.num_envs, 39), np.float32), {}
        self._restart(np.arange(self.num_envs))
        return self._first_obs[self._slot].astype(np.float32), {}

    def step_float64(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """One step of every sub-env without the autoreset: Meta-World's float64 observation,
        rewards, truncation and infos (what the equivalence test compares)."""
        a = np.asarray(actions)
        if a.shape != (self.num_envs, 4):
            raise ValueError(f"actions of shape {a.shape}: expected ({self.num_envs}, 4)")
        delta = np.clip(a[:, :3], -1, 1) * self.action_scale
        mocap = self._mocap_pos[:, 0] + delta
        self._mocap_pos[:, 0] = np.clip(mocap, self._mocap_low, self._mocap_high)
        self._mocap_quat[:, 0] = MOCAP_QUAT
        self._ctrl[:, 0] = a[:, 3]
        self._ctrl[:, 1] = -a[:, 3]
        self._batch.step(nstep=self.frame_skip, stage=self._stage)
        self._elapsed += 1

        xpos, xquat, xmat, site_xpos, geom_xpos, geom_xmat = self._outputs
        frame = Frame(
            xpos,
            xquat,
            xmat,
            site_xpos,
            geom_xpos,
            geom_xmat,
            self._qpos,
            self._qvel,
            self._row_consts,
            self._ids,
            self._touching,
            self._elapsed,
        )
        hand = frame.body("hand")
        apart = np.clip(norm(frame.body("rightclaw") - frame.body("leftclaw")) / 0.1, 0.0, 1.0)
        objects = self.skill.objects(frame)
        current = np.zeros((self.num_envs, 18))
        current[:, :3], current[:, 3] = hand, apart
        current[:, 4 : 4 + objects.shape[1]] = objects
        obs = np.concatenate([current, self._prev, self._row_goal], axis=1)
        self._prev = current
        obs = np.clip(obs, self._row_low, self._row_high)
        reward, info = self.skill.evaluate_state(frame, obs, a)
        truncated = self._elapsed >= self.max_episode_steps
        return obs, reward, truncated, info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        obs, reward, truncated, info = self.step_float64(actions)
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = dict(info)
        out = obs.astype(np.float32)
        if truncated.any():
            ids = np.flatnonzero(truncated)
            final = np.zeros_like(out)
            final[ids] = out[ids]
            infos["final_obs"], infos["_final_obs"] = final, truncated.copy()
            self._restart(ids)
            out[ids] = self._first_obs[self._slot[ids]]
        return out, np.asarray(reward, dtype=np.float64), terminated, truncated, infos

    def _touching(self, rows: np.ndarray, geom: str) -> np.ndarray:
        """Meta-World's `touching_object(geom)` on the rows of `rows` (bool mask): each such
        row's state in a scratch MjData, `mj_forward` for its contacts, then the contact
        test of `metarl.envs.metaworld_speed` (Meta-World's, on MuJoCo's arrays)."""
        import mujoco

        from metarl.envs.metaworld_speed import contact_force_test

        out = np.zeros(self.num_envs, dtype=bool)
        ids = self._ids
        rows = (
            rows
            & self._within_reach(geom, "leftpad_geom")
            & self._within_reach(geom, "rightpad_geom")
        )
        for i in np.flatnonzero(rows):
            model = self._models[i]
            self._batch.get_data(int(i), self._scratch)
            mujoco.mj_forward(model, self._scratch)
            out[i] = contact_force_test(
                self._scratch,
                ids[f"geom:{geom}"],
                ids["geom:leftpad_geom"],
                ids["geom:rightpad_geom"],
            )
        return out

    def _within_reach(self, geom: str, pad: str) -> np.ndarray:
        """Rows where geoms `geom` and `pad` may be in contact: MuJoCo's collision test skips
        a pair whose frames are farther apart than their bounding spheres' radii (`geom_rbound`)
        plus the pair's margin (the larger `geom_margin`, here bounded by their sum), so such
        a row has no contact of the pair and `touching` is False there without a forward."""
        a, b = self._ids[f"geom:{geom}"], self._ids[f"geom:{pad}"]
        model = self.model
        if model.geom_rbound[a] <= 0 or model.geom_rbound[b] <= 0:  # planes: no sphere test
            return np.ones(self.num_envs, dtype=bool)
        reach = model.geom_rbound[a] + model.geom_rbound[b]
        reach += model.geom_margin[a] + model.geom_margin[b]
        xpos = self._outputs[4]
        return norm(xpos[:, a] - xpos[:, b]) <= reach * (1 + 1e-6) + 1e-9

    def close_extras(self, **kwargs: Any) -> None:
        for env in self._slot_envs:
            if env is not None and env is not self._base:
                env.close()
        self._base.close()


def _id(model: Any, obj: Any, name: str) -> int:
    import mujoco

    found = int(mujoco.mj_name2id(model, obj, name))
    if found < 0:
        raise KeyError(f"the model has no {obj.name} named {name!r}")
    return found


def make_metaworld_vector(dist: Any, n_tasks: int, envs_per_task: int) -> TaskVectorEnv | None:
    """The batched env for `dist`: one skill's `MetaWorldVector` (ML1), the per-skill groups
    of `MetaWorldMixedVector` (ML10, where any of its skills has a batched step), or None
    where nothing would be batched (V1 rewards, skills not in `metaworld_skills.SKILLS`)."""
    from metarl.envs.metaworld_skills import SKILLS, skill

    if dist.reward_version != "v2":
        return None
    if dist.skill is None:
        skills = {t.env_name for t in (*dist.bench.train_tasks, *dist.bench.test_tasks)}
        if not skills & set(SKILLS):
            return None
        return MetaWorldMixedVector(dist, n_tasks, envs_per_task)
    found = skill(dist.skill)
    if found is None:
        return None
    return MetaWorldVector(dist, found, n_tasks, envs_per_task)


class MetaWorldMixedVector(TaskVectorEnv):
    """ML10's meta-batches, whose task slots hold several skills: one group per skill, each
    a `MetaWorldVector` (a skill with a batched step) or a `ProtocolVectorEnv` over Meta-World's
    own envs (any other), stepped one after the other and laid out as one task vector env.
    The groups are rebuilt only when the slots' skills change (ML10's stratified draw keeps a
    slot's skill from one meta-batch to the next)."""

    def __init__(self, dist: Any, n_tasks: int, envs_per_task: int) -> None:
        from metarl.envs.metaworld_tasks import MetaWorldEnv

        self._init_layout(n_tasks, envs_per_task)
        self.dist = dist
        probe = MetaWorldEnv(dist.benchmark_name, dist.bench.train_tasks[0].env_name, dist.seed)
        self._init_spaces(probe.observation_space, probe.action_space)
        probe.close()
        self._layout: tuple[str, ...] = ()
        self._groups: list[tuple[TaskVectorEnv, np.ndarray, list[int]]] = []

    def set_tasks(self, tasks: Sequence[Any]) -> None:
        from metarl.envs.metaworld_skills import skill
        from metarl.envs.metaworld_tasks import MetaWorldTask
        from metarl.envs.vector import ProtocolVectorEnv

        self._check_task_count(tasks)
        descs = [t if isinstance(t, MetaWorldTask) else MetaWorldTask.from_dict(t) for t in tasks]
        layout = tuple(d.skill for d in descs)
        if layout != self._layout:
            self.close_extras()
            self._groups = []
            for name in dict.fromkeys(layout):
                slots = [k for k, s in enumerate(layout) if s == name]
                rows = np.concatenate(
                    [np.arange(k * self.envs_per_task, (k + 1) * self.envs_per_task) for k in slots]
                )
                batched = skill(name) if self.dist.reward_version == "v2" else None
                group: TaskVectorEnv
                if batched is None:
                    group = ProtocolVectorEnv(
                        self.dist, [descs[k] for k in slots], self.envs_per_task
                    )
                else:
                    group = MetaWorldVector(self.dist, batched, len(slots), self.envs_per_task)
                self._groups.append((group, rows, slots))
            self._layout = layout
        for group, _, slots in self._groups:
            group.set_tasks([descs[k] for k in slots])

    def reset(
        self, *, seed: Seeds = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        seeds = sub_env_seeds(seed, self.num_envs)
        obs = np.zeros((self.num_envs, 39), np.float32)
        for group, rows, _ in self._groups:
            group_seeds = None if seed is None else [seeds[i] for i in rows]
            obs[rows], _ = group.reset(seed=group_seeds)  # type: ignore[arg-type]
        return obs, {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        n = self.num_envs
        obs = np.zeros((n, 39), np.float32)
        rewards = np.zeros(n)
        terminated, truncated = np.zeros(n, bool), np.zeros(n, bool)
        infos: dict[str, Any] = {}
        for group, rows, _ in self._groups:
            o, r, te, tr, info = group.step(np.asarray(actions)[rows])
            obs[rows], rewards[rows], terminated[rows], truncated[rows] = o, r, te, tr
            for key, value in info.items():
                if key.startswith("_") or key == "final_obs":
                    continue
                values = np.asarray(value)
                if values.dtype.kind not in "biuf":
                    continue
                infos.setdefault(key, np.zeros(n))[rows] = values
            if "final_obs" in info:
                final = infos.setdefault("final_obs", np.zeros((n, 39), np.float32))
                mask = infos.setdefault("_final_obs", np.zeros(n, bool))
                final[rows], mask[rows] = info["final_obs"], info["_final_obs"]
        return obs, rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        for group, _, _ in self._groups:
            group.close()
