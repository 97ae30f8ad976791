"""The PPO inner loop: adapt a policy to one environment task with stable-baselines3's PPO.

One `PPO` object and its vectorized env are built once and reused for every task: a task is
set on the env (through the RL protocol: the env's `set_task`, or `make_env`), phi is copied
into the PPO policy, the Adam state of PPO is replaced by a fresh one, and k PPO updates run
(k = `train.inner_steps`; one update = a rollout of `n_steps` per env, then SB3's own
`PPO.train()`: `n_epochs` over minibatches of `batch_size`). We drive SB3's
`collect_rollouts` / `train` ourselves instead of `learn()` so that each rollout can start
from a seeded reset and be measured.

Randomness comes only from the generator handed to `adapt` (one seed per task is drawn from
it). SB3 draws actions from torch's global generator and shuffles minibatches with
`np.random`; we do not call SB3's `set_random_seed` (which seeds both globally). Instead:
- torch: each task runs inside `torch.random.fork_rng()` seeded with the task's seed, so
  action sampling is a function of the seed and the caller's global torch state is restored;
- numpy: the rollout buffer is `SeededRolloutBuffer`, which shuffles with its own generator;
- env: every rollout starts with `VecEnv.seed(task seed + rollout index)` and a reset.
So the adapted parameters are a pure function of (phi, task, seed): the determinism test
checks this, and a resumed run gets the same weights as an uninterrupted one.

Each rollout starts with fresh episodes (the previous rollout's unfinished episode is
bootstrapped with the value function, as SB3 does at a rollout boundary), so the return of a
rollout measures exactly one policy: "the return after t updates" is the mean undiscounted
return of the episodes of the rollout collected after t updates, as in MAML-RL's protocol.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.vec_env import DummyVecEnv

from metarl.config import Recipe
from metarl.envs.distribution import EnvTask
from metarl.envs.vector import retask
from metarl.learners.rl_core import (
    RLMetaLearnerBase,
    RolloutSchedule,
    RunRequest,
    TasksRun,
    Timers,
    query_metrics,
)
from metarl.protocol import Adaptation, Params, Split
from metarl.rl.settings import PPOSettings


class SeededRolloutBuffer(RolloutBuffer):
    """SB3's rollout buffer with minibatches shuffled by its own generator (`self.rng`)
    instead of the global `np.random`; otherwise `RolloutBuffer.get` unchanged."""

    rng: np.random.Generator = np.random.default_rng(0)

    def get(self, batch_size: int | None = None) -> Generator[RolloutBufferSamples, None, None]:
        assert self.full, ""
        total = self.buffer_size * self.n_envs
        indices = self.rng.permutation(total)
        if not self.generator_ready:
            for name in ("observations", "actions", "values", "log_probs", "advantages", "returns"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True
        if batch_size is None:
            batch_size = total
        for start in range(0, total, batch_size):
            yield self._get_samples(indices[start : start + batch_size])


@dataclass
class TaskRun:
    """What adapting one task produced: the rollout returns and the final parameters."""

    returns: dict[int, float]
    """Updates done before the rollout -> mean episode return of that rollout."""
    params: dict[str, torch.Tensor]


class SB3MetaLearner(RLMetaLearnerBase):
    """Meta-learning over an environment family with SB3's PPO as the inner loop.

    `model` is an SB3 `ActorCriticPolicy` holding phi (all its parameters, `log_std`
    included); the PPO object works on its own copy of the policy, so adapting never touches
    phi. `inner_lr` (`train.inner_lr`) is PPO's learning rate (`eval.inner_lr` in evaluation);
    PPO's own settings are `PPOSettings` (the recipe's `[learner]` table).

    It runs one task after another through SB3's own PPO, so it is the reference the batched
    engine is checked against, not the fast path (`backend = "sb3"`).

    Args:
        recipe: an RL recipe whose row of `metarl.combinations.SUPPORTED` names this
            class; its `[learner]` table is typed by the engine's settings.
        dist: the recipe's task distribution.
        device: where the policy lives.

    Examples:
        Navigation2D on SB3's engine, shrunk to one 20-step rollout per update: two tasks
        adapted by one PPO update each, the rollouts before and after it measured, then
        FOMAML's query gradient at the adapted weights, keyed like phi:

        >>> import numpy as np, torch
        >>> from metarl.config import with_overrides
        >>> from metarl.learners import build_meta_learner
        >>> from metarl.registry import resolve_recipe
        >>> recipe = with_overrides(
        ...     resolve_recipe("navigation2d"),
        ...     "learner",
        ...     backend="sb3",
        ...     n_steps=20,
        ...     batch_size=20,
        ...     n_epochs=1,
        ... )
        >>> learner = build_meta_learner(recipe, torch.device("cpu"))
        >>> type(learner).__name__
        'SB3MetaLearner'
        >>> tasks = learner.dist.sample(2, np.random.default_rng(0))
        >>> run = learner.run(learner.phi(), tasks, seeds=[0, 1], updates=1, measure=(0, 1))
        >>> sorted(run.returns), run.returns[1].shape, run.rollout_steps
        ([0, 1], (2,), 40)
        >>> adaptation = learner.adapt(learner.phi(), tasks, np.random.default_rng(0))
        >>> grads, metrics = learner.query_gradient(adaptation)
        >>> grads.keys() == learner.phi().keys(), sorted(metrics)
        (True, ['query_env_steps', 'query_loss', 'return_after'])
    """

    name = "the PPO learner"

    def __init__(self, recipe: Recipe, dist: Any, device: torch.device) -> None:
        self.recipe, self.dist, self.device = recipe, dist, device
        self.settings = s = PPOSettings.from_recipe(recipe)
        inner_lr = recipe.train.inner_lr
        seed = recipe.train.seed
        self.timers = Timers()
        self._first_task = dist.sample(1, np.random.default_rng(0), Split.TRAIN)[0]
        self.vec_env = DummyVecEnv([self._make_env for _ in range(s.n_envs)])
        # the initialization is a function of train.seed alone, global state left as it was
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.ppo = PPO(
                "MlpPolicy",
                self.vec_env,
                **s.ppo_kwargs(inner_lr, self.vec_env.action_space),
                rollout_buffer_class=SeededRolloutBuffer,
                device=device,
                verbose=0,
            )
        # SB3 would build a logger (and maybe a log folder) in learn(); we log nothing
        self.ppo.set_logger(Logger(folder=None, output_formats=[]))
        # what learn()'s _setup_learn would create: the episode-statistics buffers
        self.ppo.ep_info_buffer = deque(maxlen=10_000)
        self.ppo.ep_success_buffer = deque(maxlen=10_000)
        self.policy: ActorCriticPolicy = self.ppo.policy
        self.model: ActorCriticPolicy = copy.deepcopy(self.policy)
        self.names = [n for n, _ in self.policy.named_parameters()]
        self._callback = CallbackList([])
        self._callback.init_callback(self.ppo)

    def _make_env(self) -> Monitor:
        # Monitor records each episode's return in `info`, where SB3 collects it
        return Monitor(self.dist.make_env(self._first_task))

    def _set_task(self, task: Any) -> None:
        """Set `task` on every env through the RL protocol (`set_task`, or a new env from
        `make_env`), so any RL distribution works, not only metarl's families."""
        for i, env in enumerate(self.vec_env.envs):
            inner = env.env if isinstance(env, Monitor) else env
            new = retask(self.dist, inner, task)
            if new is not inner:
                self.vec_env.envs[i] = Monitor(new)

    # -- one task ---------------------------------------------------------------------------
    def run_task(
        self,
        phi: Params,
        task: EnvTask,
        seed: int,
        updates: int,
        *,
        lr: float,
        measure: Sequence[int] = (0,),
        extra_rollout: bool = False,
    ) -> TaskRun:
        """Copy phi into the PPO policy, run `updates` PPO updates on `task`, and return the
        adapted parameters and the returns of the rollouts whose index is in `measure`.

        With `extra_rollout`, one more rollout is collected after the last update (it is left
        in the rollout buffer, for FOMAML's query gradient) and measured as `updates`.

        Args:
            phi: the parameters to adapt from.
            task: the task.
            seed: the task's seed (torch's generator is forked and seeded with it, so the
                global stream is left as it was).
            updates: PPO updates.
            lr: PPO's learning rate.
            measure: the rollout indices whose return is recorded.
            extra_rollout: collect one more rollout after the last update.

        Returns:
            The adapted parameters and the measured returns.
        """
        ppo, timers = self.ppo, self.timers
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            buffer = ppo.rollout_buffer
            assert isinstance(buffer, SeededRolloutBuffer)
            buffer.rng = np.random.default_rng(seed)
            with torch.no_grad():
                for name, p in self.policy.named_parameters():
                    p.copy_(phi[name])
            ppo.learning_rate = lr
            ppo.lr_schedule = lambda _: lr
            # fresh Adam state per task: no moment estimates leak from the previous task
            make_optimizer: Any = self.policy.optimizer_class
            self.policy.optimizer = make_optimizer(
                self.policy.parameters(), lr=lr, **self.policy.optimizer_kwargs
            )
            self._set_task(task)
            ppo.num_timesteps = 0
            timers.swap += time.perf_counter() - started
            returns: dict[int, float] = {}
            schedule = RolloutSchedule(updates, measure, extra_rollout)
            for t in range(schedule.rollouts):
                returns_t = self._rollout(seed + t)
                if schedule.measured(t):
                    returns[t] = returns_t
                if t < updates:
                    tick = time.perf_counter()
                    ppo.train()
                    timers.update += time.perf_counter() - tick
            params = {n: p.detach().clone() for n, p in self.policy.named_parameters()}
        return TaskRun(returns, params)

    def _rollout(self, seed: int) -> float:
        """One rollout from fresh, seeded episodes into the rollout buffer; its mean return."""
        ppo = self.ppo
        tick = time.perf_counter()
        self.vec_env.seed(seed)
        ppo._last_obs = self.vec_env.reset()  # type: ignore[assignment]
        ppo._last_episode_starts = np.ones((self.vec_env.num_envs,), dtype=bool)
        assert ppo.ep_info_buffer is not None
        ppo.ep_info_buffer.clear()
        self.timers.swap += time.perf_counter() - tick
        tick = time.perf_counter()
        ppo.collect_rollouts(self.vec_env, self._callback, ppo.rollout_buffer, ppo.n_steps)
        self.timers.collect += time.perf_counter() - tick
        self.timers.env_steps += ppo.n_steps * self.vec_env.num_envs
        episodes = [float(info["r"]) for info in ppo.ep_info_buffer]
        if episodes:
            return float(np.mean(episodes))
        # no episode ended inside the rollout: its reward sum per env (a truncated return)
        return float(ppo.rollout_buffer.rewards.sum() / self.vec_env.num_envs)

    def rollouts(self, request: RunRequest) -> TasksRun:
        """One task after another (`run_task`), the adapted weights stacked.

        Args:
            request: the policy, tasks, seeds, updates, step size and measured rollouts.

        Returns:
            The adapted parameters (stacked), the measured returns and the env steps of
            one rollout.
        """
        runs = []
        for task, seed in zip(request.tasks, request.seeds, strict=True):
            run = self.run_task(
                request.phi, task, seed, request.updates, lr=request.lr, measure=request.measure
            )
            runs.append(run)
            for _ in range(request.schedule.rollouts):
                request.rolled_out(1)
        params = {n: torch.stack([r.params[n] for r in runs]) for n in self.names}
        returns = {t: np.array([r.returns[t] for r in runs]) for t in request.measure}
        return TasksRun(params, returns, len(runs) * self.ppo.n_steps * self.vec_env.num_envs)

    def deterministic_act(self, params: Params, index: int) -> Callable[[np.ndarray], np.ndarray]:
        """Task `index`'s adapted weights in a copy of the policy, acting as SB3's
        deterministic `predict` (the Gaussian's mean, clipped to the action space).

        Args:
            params: adapted parameters, stacked `[tasks, ...]` (`TasksRun.params`).
            index: the task whose weights act.

        Returns:
            A function from a batch of observations to actions.
        """
        policy = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, p in policy.named_parameters():
                p.copy_(params[name][index])

        def act(observations: np.ndarray) -> np.ndarray:
            actions, _ = policy.predict(observations, deterministic=True)
            return np.asarray(actions)

        return act

    # -- the MetaLearner interface ----------------------------------------------------------
    def query_gradient(self, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
        """FOMAML, summed over the tasks: at each task's adapted parameters W_i, collect a
        fresh rollout with W_i and take the gradient of PPO's loss on it (one full batch:
        clipped surrogate, at ratio 1 the plain policy gradient of the normalized advantages,
        plus vf_coef * value loss and ent_coef * entropy loss, so the value network gets a
        meta-gradient too).

        Args:
            adaptation: what `adapt` returned (the adapted weights, the tasks and seeds).

        Returns:
            The gradient summed over the tasks, keyed like phi, and the log's metrics
            (`query_loss`, `return_after`, `query_env_steps`).
        """
        tasks, seeds = adaptation.context["tasks"], adaptation.context["seeds"]
        k = self.recipe.train.inner_steps
        total: dict[str, torch.Tensor] = {}
        losses, returns = [], []
        for i, (task, seed) in enumerate(zip(tasks, seeds, strict=True)):
            w = {n: v[i] for n, v in adaptation.params.items()}
            # a rollout seeded past the k adaptation rollouts: fresh episodes, policy W_i
            run = self.run_task(
                w, task, seed + k, 0, lr=self.recipe.train.inner_lr, measure=(), extra_rollout=True
            )
            returns.append(run.returns[0])
            grads, loss = self._surrogate_gradient(seed + k)
            losses.append(loss)
            for n, g in grads.items():
                total[n] = total[n] + g if n in total else g
        env_steps = len(tasks) * self.ppo.n_steps * self.vec_env.num_envs
        return total, query_metrics(np.mean(losses), np.mean(returns), env_steps)

    def _surrogate_gradient(self, seed: int) -> tuple[dict[str, torch.Tensor], float]:
        """PPO's loss on the whole rollout buffer and its gradient w.r.t. the policy."""
        ppo, policy = self.ppo, self.policy
        tick = time.perf_counter()
        policy.set_training_mode(True)
        buffer = ppo.rollout_buffer
        assert isinstance(buffer, SeededRolloutBuffer)
        buffer.rng = np.random.default_rng(seed)
        data = next(buffer.get(batch_size=None))
        actions = data.actions
        if isinstance(ppo.action_space, spaces.Discrete):
            actions = actions.long().flatten()
        values, log_prob, entropy = policy.evaluate_actions(data.observations, actions)
        advantages = data.advantages
        if ppo.normalize_advantage and len(advantages) > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        ratio = torch.exp(log_prob - data.old_log_prob)
        policy_loss = -(advantages * ratio).mean()  # the clip is inactive at ratio 1
        value_loss = torch.nn.functional.mse_loss(data.returns, values.flatten())
        entropy_loss = -torch.mean(entropy) if entropy is not None else torch.mean(log_prob)
        loss = policy_loss + ppo.ent_coef * entropy_loss + ppo.vf_coef * value_loss
        params = [p for _, p in policy.named_parameters()]
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        out = {
            n: (g if g is not None else torch.zeros_like(p)).detach()
            for n, p, g in zip(self.names, params, grads, strict=True)
        }
        self.timers.update += time.perf_counter() - tick
        return out, float(loss.detach())


__all__ = [
    "SB3MetaLearner",
    "SeededRolloutBuffer",
    "TaskRun",
]
