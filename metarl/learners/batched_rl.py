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

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from metarl.combinations import Inner
from metarl.config import OptimizerName, Recipe
from metarl.envs.vector import TaskVectorEnv, make_task_vector_env, set_vector_tasks
from metarl.learners.rl_core import (
    RLMetaLearnerBase,
    RunRequest,
    TasksRun,
    Timers,
    eval_chunk,
    initial_policy,
    query_metrics,
)
from metarl.optim import InnerOptimizer, stack
from metarl.protocol import Adaptation, Params
from metarl.rl.batched_ppo import BatchedPPO, PPOBatch, PPOLoss, loss_and_grad
from metarl.rl.policy import BatchedPolicy
from metarl.rl.rollout import (
    Rollout,
    RolloutNoise,
    collect,
    family_metrics,
    gae,
    logged,
    watched,
)
from metarl.rl.settings import BatchedSettings
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


class BatchedRLMetaLearner(RLMetaLearnerBase):
    """Meta-learning over an RL task distribution with the whole meta-batch batched.

    `model` is an SB3 `ActorCriticPolicy` holding phi (on `device`: the policy, rollout
    arrays and updates live there; the envs step in NumPy, so each env step copies the
    observations in and the actions out). Adaptation never changes its parameters.

    Stepping every task of a meta-batch in one vector env and updating all tasks' weights
    in one batched call is what makes it the default: the per-task Python loop of the SB3
    engine is its reference, not its speed.

    Args:
        recipe: an RL recipe whose row of `metarl.combinations.SUPPORTED` names this
            class; its `[learner]` table is typed by the engine's settings.
        dist: the recipe's task distribution.
        device: where the policy, the rollout arrays and the updates lives.

    Build it with `from_recipe` (or `build_meta_learner`); the class example of
    `metarl.learners.rl_core.RLMetaLearnerBase` runs one on Navigation2D.
    """

    name = "the batched RL learner"
    inner_rates: Params | None = None
    """Meta-SGD's learned per-parameter inner learning rates (`metarl.learners.maml_rl`):
    where set, the VPG inner steps take them instead of the recipe's `inner_lr`."""

    def __init__(self, recipe: Recipe, dist: Any, device: torch.device) -> None:
        self.recipe, self.dist, self.device = recipe, dist, device
        self.settings = s = BatchedSettings.from_recipe(recipe)
        self.model = initial_policy(dist, s, recipe.train.seed, device)
        self.policy = BatchedPolicy(self.model)
        self.names = self.policy.names
        self.timers = Timers()
        self._envs: dict[int, TaskVectorEnv] = {}
        self._watch = watched(dist)

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
    def rollouts(self, request: RunRequest) -> TasksRun:
        """Every task's rollouts at once: one task vector env, the inner update applied to
        all tasks' weights together.

        Args:
            request: the policy, tasks, seeds, updates, step size and measured rollouts.

        Returns:
            The adapted parameters (stacked), the measured returns and the env steps of
            one rollout.
        """
        with one_torch_thread():
            return self._rollouts(request)

    def _rollouts(self, request: RunRequest) -> TasksRun:
        s, tasks = self.settings, request.tasks
        env = self._env(tasks)
        params = stack(request.phi, len(tasks))
        run = TasksRun(params, {}, len(tasks) * s.n_steps * s.n_envs)
        inner = self._inner(request.lr)
        state = inner.init(params)
        schedule = request.schedule
        for t in range(schedule.rollouts):
            noise = RolloutNoise(request.seeds, t)
            rollout = self._collect(params, env, noise)
            request.rolled_out(len(tasks))
            if schedule.measured(t):
                run.returns[t] = self._returns(rollout)
                run.episodes[t] = family_metrics(self.dist, tasks, rollout)
            if t < request.updates:
                tick = time.perf_counter()
                params = inner.update(params, rollout, noise, state)
                self.timers.update += time.perf_counter() - tick
        run.params = params
        return run

    def _collect(self, params: Params, env: TaskVectorEnv, noise: RolloutNoise) -> Rollout:
        """One rollout of every task (stacked `params`), the distribution's info watched."""
        s = self.settings
        rollout = collect(
            self.policy, params, env, noise, s.n_steps, s.gamma, self.timers.rollout, self._watch
        )
        self.timers.env_steps += rollout.env_steps
        return rollout

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
    def query_gradient(self, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
        """FOMAML: at each task's adapted weights W_i, a fresh rollout (rollout index k of
        its seed) and the gradient of the inner algorithm's loss on it at W_i: PPO's loss on
        the whole rollout (at ratio 1 the clipped surrogate is the policy gradient of the
        normalized advantages; plus the value and entropy terms), or the VPG loss.

        Args:
            adaptation: what `adapt` returned (the adapted weights, the tasks and seeds).

        Returns:
            The gradient summed over the tasks, keyed like phi, and the log's metrics
            (`query_loss`, `return_after`, `query_env_steps`, the family's `*_after`).
        """
        with one_torch_thread():
            return self._query_gradient(adaptation)

    def _query_gradient(self, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
        tasks, seeds = adaptation.context["tasks"], adaptation.context["seeds"]
        k = self.recipe.train.inner_steps
        env = self._env(tasks)
        noise = RolloutNoise(seeds, k)
        s = self.settings
        params = adaptation.params
        rollout = self._collect(params, env, noise)
        tick = time.perf_counter()
        if s.inner is Inner.VPG:
            grads, losses = vpg_gradient(self.policy, params, rollout, s.gamma)
        else:
            batch = _PPOInner.batch(rollout, s.gamma, s.gae_lambda)
            grads, losses = loss_and_grad(self.policy, self._ppo_loss(), params, batch)
        self.timers.update += time.perf_counter() - tick
        total = {n: g.sum(0) for n, g in grads.items()}
        metrics = query_metrics(losses.mean(), self._returns(rollout).mean(), rollout.env_steps)
        metrics.update(logged(family_metrics(self.dist, tasks, rollout), "after"))
        return total, metrics

    def eval_chunk(self) -> int:
        return eval_chunk(self.dist, self.settings.n_envs)

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """The training's envs stay; those built for the evaluation are closed at the end (an
        evaluation of several runs holds one set at a time)."""
        kept = set(self._envs)
        try:
            yield
        finally:
            for size in set(self._envs) - kept:
                self._envs.pop(size).close()

    def deterministic_act(self, params: Params, index: int) -> Callable[[np.ndarray], np.ndarray]:
        """Task `index`'s policy in `params` as a deterministic act(observations): the
        Gaussian's mean clipped to the action space (the most likely action, if discrete).

        Args:
            params: adapted parameters, stacked `[tasks, ...]` (`TasksRun.params`).
            index: the task whose weights act.

        Returns:
            A function from a batch of observations to actions.
        """
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


__all__ = ["BatchedRLMetaLearner", "one_torch_thread"]
