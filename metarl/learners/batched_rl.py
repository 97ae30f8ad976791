"""The batched RL meta-learner: every task of a meta-batch rolled out and updated at once.

The RL counterpart of the vmapped supervised loop. A meta-batch of T tasks (a rank's slots
of it) lives in one task vector env of `T x n_envs` sub-envs (`metarl.envs.vector`: the
family's native one, or `make_env` envs in a `SyncVectorEnv` for any RL distribution); the
policy is SB3's `MlpPolicy` with per-task weights (`metarl.rl.policy`), run once per env step
for all sub-envs; the data are `[tasks, envs, time]` arrays (`metarl.rl.rollout`), and the
inner update is applied to all tasks at once:
- `inner = "ppo"`: SB3's PPO update (`metarl.rl.batched_ppo`), k updates of one rollout of
  `n_steps` per env each, fresh Adam per task, as the SB3 backend does one task at a time;
- `inner = "vpg"`: MAML-RL's vanilla policy gradient with a linear feature baseline
  (`metarl.rl.vpg`), k steps of plain SGD with `inner_lr`, one episode per env (set
  `n_envs = 20` and `n_steps` to the episode length for the paper's 20 episodes per task).

Randomness: one seed per meta-batch slot, drawn for every slot from the iteration's generator
and then cut to this rank's slots, so a slot's rollouts do not depend on the rank split;
rollout r of a task draws its sub-env reset seeds, action noise and minibatch order from a
generator seeded by (slot seed, r) alone. The adapted weights are a pure function of phi, the
task and the seed, and the caller's global random state is not touched.

"The return after t updates" is the mean undiscounted return of the episodes of the rollout
collected after t updates (each rollout starts from fresh episodes); with `vpg`, of each
sub-env's one episode.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from metarl.config import OptimizerName, Recipe
from metarl.curves import Curve
from metarl.envs.vector import TaskVectorEnv, make_task_vector_env, set_vector_tasks
from metarl.errors import ConfigError
from metarl.learners.rl_core import (
    RLMetaLearnerBase,
    RolloutSchedule,
    Timers,
    adaptation_metrics,
    initial_policy,
    policy_scorer,
    query_metrics,
    slot_seeds,
    with_env_steps,
)
from metarl.optim import InnerOptimizer, stack
from metarl.protocol import (
    Adaptation,
    BoundsEvalEnvs,
    Params,
    Progress,
    ScoresPoliciesTogether,
)
from metarl.rl.batched_ppo import BatchedPPO, PPOBatch, PPOLoss, loss_and_grad
from metarl.rl.policy import BatchedPolicy
from metarl.rl.rollout import (
    Rollout,
    RolloutNoise,
    collect,
    episode_metrics,
    gae,
    velocity_asked_way,
)
from metarl.rl.settings import BatchedSettings, Inner
from metarl.rl.vpg import vpg_gradient


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread inside the inner loop, then restore the caller's setting.

    The inner loop is thousands of small ops (a 64x64 MLP on a few hundred rows per env
    step); torch's intra-op threads cost more in hand-offs than they save there, many times
    more when other processes share the cores (`scripts/benchmarks/bench_threads.py`
    measures it). More cores are used by running more ranks (torchrun), each on its own
    slots."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


EVAL_CHUNK = 64
"""Held-out tasks adapted together in `curve` (bounds the rollout arrays' memory)."""


def eval_chunk(dist: Any, n_envs: int) -> int:
    """Held-out tasks adapted together: `EVAL_CHUNK`, fewer where the distribution's envs are
    heavy (its `max_eval_subenvs`, e.g. Meta-World's), at least one."""
    if not isinstance(dist, BoundsEvalEnvs):
        return EVAL_CHUNK
    return max(1, min(EVAL_CHUNK, dist.max_eval_subenvs // n_envs))


@dataclass
class TasksRun:
    """What adapting a batch of tasks produced."""

    params: Params
    """Stacked adapted parameters."""
    returns: dict[int, np.ndarray]
    """Updates done before a rollout -> its per-task mean return `[tasks]`."""
    last: Rollout | None = None
    """The extra rollout after the last update (FOMAML's query rollout), if asked for."""
    successes: dict[int, np.ndarray] = field(default_factory=dict)
    """Like `returns`, for envs that report `info["success"]` (Meta-World): each task's
    fraction of first episodes with a success, `[tasks]` (`Rollout.first_successes`)."""
    velocities: dict[int, np.ndarray] = field(default_factory=dict)
    """Like `returns`, for envs that report `x_velocity`: each episode's mean velocity,
    `[tasks, envs, axes]`, x (`Rollout.first_velocities`) and, on a plane (AntDir), y."""


class BatchedRLMetaLearner(RLMetaLearnerBase):
    """Meta-learning over an RL task distribution with the whole meta-batch batched.

    `model` is an SB3 `ActorCriticPolicy` holding phi (on `device`: the policy, rollout
    arrays and updates live there; the envs step in NumPy, so each env step copies the
    observations in and the actions out). Adaptation never changes its parameters."""

    name = "the batched RL learner"
    inner_rates: Params | None = None
    """Meta-SGD's learned per-parameter inner learning rates (`metarl.learners.maml_rl`):
    where set, the VPG inner steps take them instead of the recipe's `inner_lr`."""

    judges_inner_steps: ClassVar[bool] = False
    """Whether the outer objective can judge each inner step's policy (`[learner]
    outer_every_step`: second-order MAML-RL's learner); the first-order learners refuse it."""

    def __init__(self, recipe: Recipe, dist: Any, device: torch.device) -> None:
        self.recipe, self.dist, self.device = recipe, dist, device
        self.settings = s = BatchedSettings.from_recipe(recipe)
        if s.outer_every_step and not self.judges_inner_steps:
            raise ConfigError(
                "learner.outer_every_step = true: only second-order MAML-RL judges each inner "
                f'step\'s policy (train.algorithm = "maml" or "metasgd", not '
                f'"{recipe.train.algorithm.value}")'
            )
        self.model = initial_policy(dist, s, recipe.train.seed, device)
        self.policy = BatchedPolicy(self.model)
        self.names = self.policy.names
        self.timers = Timers()
        self._envs: dict[int, TaskVectorEnv] = {}

    # -- envs ---------------------------------------------------------------------------
    def _env(self, tasks: Sequence[Any]) -> TaskVectorEnv:
        """A vector env for `len(tasks)` task slots holding `tasks` (kept per size)."""
        env = self._envs.get(len(tasks))
        if env is None:
            env = make_task_vector_env(self.dist, tasks, self.settings.n_envs)
            self._envs[len(tasks)] = env
        else:
            set_vector_tasks(env, tasks)
        return env

    # -- adapting a batch of tasks --------------------------------------------------------
    def run(
        self,
        phi: Params,
        tasks: Sequence[Any],
        seeds: Sequence[int],
        updates: int,
        *,
        measure: Sequence[int] = (0,),
        lr: float | None = None,
        extra_rollout: bool = False,
        on_rollout: Callable[[], None] | None = None,
    ) -> TasksRun:
        """Adapt phi to every task with `updates` inner updates; measure the returns of the
        rollouts in `measure` (rollout t = after t updates). With `extra_rollout`, one more
        rollout is collected after the last update and kept (FOMAML's query rollout).
        `on_rollout()` is called after each rollout (an evaluation's progress)."""
        with one_torch_thread():
            return self._run(phi, tasks, seeds, updates, measure, lr, extra_rollout, on_rollout)

    def _run(
        self,
        phi: Params,
        tasks: Sequence[Any],
        seeds: Sequence[int],
        updates: int,
        measure: Sequence[int],
        lr: float | None,
        extra_rollout: bool,
        on_rollout: Callable[[], None] | None = None,
    ) -> TasksRun:
        s = self.settings
        lr = self.recipe.train.inner_lr if lr is None else lr
        env = self._env(tasks)
        params = stack(phi, len(tasks))
        seeds = list(seeds)
        returns: dict[int, np.ndarray] = {}
        velocities: dict[int, np.ndarray] = {}
        successes: dict[int, np.ndarray] = {}
        inner = self._inner(lr)
        state = inner.init(params)
        schedule = RolloutSchedule(updates, measure, extra_rollout)
        last = None
        for t in range(schedule.rollouts):
            noise = RolloutNoise(seeds, t)
            rollout = collect(
                self.policy, params, env, noise, s.n_steps, s.gamma, self.timers.rollout
            )
            self.timers.env_steps += rollout.env_steps
            if on_rollout is not None:
                on_rollout()
            if schedule.measured(t):
                returns[t] = self._returns(rollout)
                if rollout.first_velocities is not None:
                    axes = (rollout.first_velocities, rollout.first_y_velocities)
                    velocities[t] = np.stack([v for v in axes if v is not None], axis=-1)
                if rollout.first_successes is not None:
                    successes[t] = rollout.first_successes.mean(1)
            if t < updates:
                tick = time.perf_counter()
                params = inner.update(params, rollout, noise, state)
                self.timers.update += time.perf_counter() - tick
            elif extra_rollout:
                last = rollout
        return TasksRun(params, returns, last, successes, velocities)

    def _returns(self, rollout: Rollout) -> np.ndarray:
        if self.settings.inner is Inner.VPG:
            return rollout.first_returns
        return rollout.episode_returns

    def _inner(self, lr: float) -> _PPOInner | _VPGInner:
        s = self.settings
        if s.inner is Inner.VPG:
            return _VPGInner(self.policy, lr, s.gamma, self.inner_rates)
        ppo = BatchedPPO(
            self.policy,
            self._ppo_loss(),
            lr,
            n_epochs=s.n_epochs,
            batch_size=s.batch_size,
            max_grad_norm=s.max_grad_norm,
        )
        return _PPOInner(ppo, s.gamma, s.gae_lambda)

    def _ppo_loss(self) -> PPOLoss:
        s = self.settings
        return PPOLoss(s.clip_range, s.ent_coef, s.vf_coef, s.normalize_advantage)

    # -- the MetaLearner interface ----------------------------------------------------------
    def adapt(
        self,
        phi: Params,
        tasks: Sequence[Any],
        rng: np.random.Generator,
        slots: slice = slice(None),
    ) -> Adaptation:
        k = self.recipe.train.inner_steps
        seeds = slot_seeds(rng, len(tasks), k, slots)
        tasks = list(tasks)[slots]
        run = self.run(phi, tasks, seeds, k)
        s = self.settings
        metrics = adaptation_metrics(run.returns[0].mean(), len(tasks) * k * s.n_steps * s.n_envs)
        if 0 in run.successes:  # Meta-World: the fraction of phi's episodes that succeed
            metrics["success_before"] = float(run.successes[0].mean())  # (as episode_metrics)
        return Adaptation(run.params, {"tasks": tasks, "seeds": seeds}, metrics)

    def query_gradient(self, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
        """FOMAML: at each task's adapted weights W_i, a fresh rollout (rollout index k of
        its seed) and the gradient of the inner algorithm's loss on it at W_i: PPO's loss on
        the whole rollout (at ratio 1 the clipped surrogate is the policy gradient of the
        normalized advantages; plus the value and entropy terms), or the VPG loss."""
        with one_torch_thread():
            return self._query_gradient(adaptation)

    def _query_gradient(self, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
        tasks, seeds = adaptation.context["tasks"], adaptation.context["seeds"]
        k = self.recipe.train.inner_steps
        env = self._env(tasks)
        noise = RolloutNoise(seeds, k)
        s = self.settings
        params = adaptation.params
        rollout = collect(self.policy, params, env, noise, s.n_steps, s.gamma, self.timers.rollout)
        self.timers.env_steps += rollout.env_steps
        tick = time.perf_counter()
        if s.inner is Inner.VPG:
            grads, losses = vpg_gradient(self.policy, params, rollout, s.gamma)
        else:
            batch = _PPOInner.batch(rollout, s.gamma, s.gae_lambda)
            grads, losses = loss_and_grad(self.policy, self._ppo_loss(), params, batch)
        self.timers.update += time.perf_counter() - tick
        total = {n: g.sum(0) for n, g in grads.items()}
        metrics = query_metrics(losses.mean(), self._returns(rollout).mean(), rollout.env_steps)
        metrics.update(episode_metrics(rollout, tasks, "after"))
        return total, metrics

    def curves(
        self, steps: list[int], n_tasks: int, progress: Progress | None = None
    ) -> dict[str, Curve]:
        """Mean return over held-out tasks after each number of inner updates in `steps`,
        adapting from `model` with eval.inner_lr (default: train.inner_lr), `eval_chunk`
        tasks at a time (the envs built for them are closed at the end: an evaluation of
        several runs holds one set at a time). Locomotion envs (those reporting
        `x_velocity`) add the tasks' mean per-episode forward velocity and, for families
        with a `direction` (HalfCheetahDir's +-1, AntDir's angle), the mean velocity along it
        (`velocity_asked_way`) and the fraction of each task's episodes whose mean velocity
        goes that way (`runs_asked_way`): "runs the asked way"
        measured, not read off the sign of a return that includes control costs.
        `progress(done, n_tasks)` hears each rollout, as the fraction of the tasks' work done
        (the benchmark's own scoring, where there is one, counts as much again)."""
        kept = set(self._envs)  # the training's envs stay; the evaluation's are released
        try:
            return self._curves(steps, n_tasks, progress)
        finally:
            for size in set(self._envs) - kept:
                self._envs.pop(size).close()

    def _curves(
        self, steps: list[int], n_tasks: int, progress: Progress | None
    ) -> dict[str, Curve]:
        wanted = sorted(set(steps))
        phi = self.phi()
        tasks, seeds = self.eval_tasks(n_tasks)
        chunk = eval_chunk(self.dist, self.settings.n_envs)
        values = np.zeros((len(wanted), n_tasks))
        velocity: np.ndarray | None = None  # [steps, tasks, envs, axes]
        scoring = policy_scorer(self.dist) is not None
        share = 0.5 if scoring else 1.0  # of the progress bar taken by the rollouts
        done = 0.0
        for start in range(0, n_tasks, chunk):
            part = slice(start, start + chunk)
            size = len(tasks[part])

            def tick(size: int = size) -> None:
                nonlocal done
                done += share * size / (max(wanted) + 1)
                if progress is not None:
                    progress(done, n_tasks)

            run = self.run(
                phi,
                tasks[part],
                seeds[part],
                max(wanted),
                measure=wanted,
                lr=self.recipe.eval_inner_lr,
                on_rollout=tick,
            )
            for row, t in enumerate(wanted):
                values[row, part] = run.returns[t]
                if t in run.velocities:
                    if velocity is None:
                        velocity = np.zeros((len(wanted), n_tasks, *run.velocities[t].shape[1:]))
                    velocity[row, part] = run.velocities[t]
        curves = {"return": Curve.from_values("return", wanted, values)}

        def scored_tick(finished: int) -> None:  # tasks scored at one step count
            if progress is not None:
                progress(done + (1 - share) * finished / len(wanted), n_tasks)

        scored = self._scored_curves(phi, tasks, seeds, wanted, chunk, scored_tick)
        if scored:  # the benchmark's own protocol (Meta-World): its metrics lead
            rollouts = dataclasses.replace(curves["return"], metric="rollout_return")
            curves = {**scored, "rollout_return": rollouts}
        if velocity is not None:
            curves["forward_velocity"] = Curve.from_values(
                "forward_velocity", wanted, velocity[..., 0].mean(-1)
            )
            y = velocity[..., 1] if velocity.shape[-1] > 1 else None
            along = velocity_asked_way(velocity[..., 0], tasks, y)
            if along is not None:
                curves["velocity_asked_way"] = Curve.from_values(
                    "velocity_asked_way", wanted, along.mean(-1)
                )
                curves["runs_asked_way"] = Curve.from_values(
                    "runs_asked_way", wanted, (along > 0).mean(-1)
                )
        # each inner update follows one rollout of n_envs x n_steps env steps per task
        return with_env_steps(curves, self.settings.n_envs * self.settings.n_steps)

    def _scored_curves(
        self,
        phi: Params,
        tasks: list[Any],
        seeds: list[int],
        wanted: list[int],
        chunk: int,
        tick: Callable[[int], None] | None = None,
    ) -> dict[str, Curve]:
        """The distribution's own score (`policy_scorer`: Meta-World's evaluator, success
        rate and return) of each task's policy after each t in `wanted` updates (`chunk`
        tasks adapted at a time, as the rollouts of `curves` were), acting
        deterministically (the Gaussian's mean, clipped to the action space), as the SB3
        engine scores its policies: the same protocol, so both engines' numbers compare.
        Adapting is a function of (phi, task, seed), so each t replays the same updates.
        Empty where the distribution has no score of its own."""
        score = policy_scorer(self.dist)
        if score is None:
            return {}
        # the same score of a chunk's tasks together where the distribution has it
        # (Meta-World's batched step); None from it means: one task at a time
        many = (
            self.dist.evaluate_policies if isinstance(self.dist, ScoresPoliciesTogether) else None
        )
        values: dict[str, np.ndarray] = {}
        finished = 0
        for row, t in enumerate(wanted):
            for start in range(0, len(tasks), chunk):
                part = slice(start, start + chunk)
                run = self.run(
                    phi, tasks[part], seeds[part], t, measure=(), lr=self.recipe.eval_inner_lr
                )
                acts = [self._deterministic_act(run.params, i) for i in range(len(tasks[part]))]
                together = many(tasks[part], acts) if many is not None else None
                for offset, task in enumerate(tasks[part]):
                    scores = (
                        {k: v[offset] for k, v in together.items()}
                        if together is not None
                        else score(task, acts[offset])
                    )
                    for name, value in scores.items():
                        table = values.setdefault(name, np.zeros((len(wanted), len(tasks))))
                        table[row, start + offset] = value
                    finished += 1
                    if tick is not None:
                        tick(finished)
        return {name: Curve.from_values(name, wanted, v) for name, v in values.items()}

    def _deterministic_act(self, params: Params, index: int) -> Callable[[np.ndarray], np.ndarray]:
        """Task `index`'s policy in `params` as a deterministic act(observations)."""
        mine = {name: value[index : index + 1] for name, value in params.items()}
        space: Any = self.model.action_space
        device = next(iter(mine.values())).device

        def act(observations: np.ndarray) -> np.ndarray:
            obs = torch.as_tensor(observations, dtype=torch.float32, device=device)
            with torch.no_grad():
                out = self.policy.action_head(mine, obs.unsqueeze(0))
            if self.policy.discrete:
                return out[0].argmax(-1).cpu().numpy()
            return np.clip(out[0].cpu().numpy(), space.low, space.high)

        return act

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


class _PPOInner:
    """k PPO updates per task: per-task Adam state kept across a task's updates."""

    def __init__(self, ppo: BatchedPPO, gamma: float, gae_lambda: float) -> None:
        self.ppo, self.gamma, self.gae_lambda = ppo, gamma, gae_lambda

    def init(self, params: Params) -> dict[str, object]:
        return self.ppo.init(params)

    @staticmethod
    def batch(rollout: Rollout, gamma: float, gae_lambda: float) -> PPOBatch:
        rollout.advantages, rollout.returns = gae(
            rollout.rewards + rollout.bootstrap,
            rollout.values,
            rollout.dones,
            rollout.last_values,
            gamma,
            gae_lambda,
        )
        return PPOBatch.from_rollout(rollout)

    def update(
        self, params: Params, rollout: Rollout, noise: RolloutNoise, state: dict[str, object]
    ) -> Params:
        batch = self.batch(rollout, self.gamma, self.gae_lambda)
        permutations = noise.permutations(self.ppo.n_epochs, batch.obs.shape[1])
        permutations = permutations.to(batch.obs.device)
        params, _ = self.ppo.update(params, batch, permutations, state)
        return params


class _VPGInner:
    """k steps of plain SGD on MAML-RL's policy-gradient loss."""

    def __init__(
        self, policy: BatchedPolicy, lr: float, gamma: float, rates: Params | None = None
    ) -> None:
        self.policy, self.gamma = policy, gamma
        self.sgd = InnerOptimizer(OptimizerName.SGD, lr, rates=rates)

    def init(self, params: Params) -> dict[str, object]:
        return {}

    def update(
        self, params: Params, rollout: Rollout, noise: RolloutNoise, state: dict[str, object]
    ) -> Params:
        grads, _ = vpg_gradient(self.policy, params, rollout, self.gamma)
        return self.sgd.step(params, grads, {}, 1)


__all__ = ["BatchedRLMetaLearner", "TasksRun"]
