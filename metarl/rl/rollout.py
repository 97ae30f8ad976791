"""Rollouts of every task's policy in one task vector env, as `[tasks, envs, time]` arrays.

A rollout starts from fresh episodes (every sub-env is reset with its own seed) and runs
`n_steps` steps of all `tasks x envs` sub-envs, one batched policy forward per step. What is
stored, and the returns and advantages computed from it, follow SB3's `collect_rollouts` and
`RolloutBuffer` exactly, so the PPO update sees what SB3's would:
- actions are stored as sampled and clipped to the action space only to step the env;
- a sub-env truncated by the time limit (not terminated) gets `gamma * V(final_obs)` added to
  its last reward (SB3's bootstrap of timeouts);
- GAE(lambda) over the time axis, reset where an episode ended, bootstrapped after the last
  step with the value of the last observation, and returns = advantages + values.
The mean undiscounted return of the episodes that finished inside the rollout is measured per
task (a task whose episodes all outlast the rollout reports its reward sum per env).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from metarl.protocol import FirstEpisodes, ReportsEpisodes
from metarl.rl.policy import BatchedPolicy, Params


@dataclass
class Rollout:
    """One rollout of every task; tensors are `[tasks, envs, time, ...]`."""

    obs: Tensor
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    rewards: Tensor
    """As the env gave them."""
    bootstrap: Tensor
    """SB3's timeout bootstrap: `gamma * V(final_obs)` where a sub-env was truncated (not
    terminated), else 0; PPO's GAE adds it to the reward."""
    dones: Tensor
    """The episode ended at this step (terminated or truncated)."""
    last_values: Tensor
    """`[tasks, envs]`: V of the observation after the last step."""
    first_episode: Tensor
    """1 for the steps of each sub-env's first episode, 0 after it (MAML-RL's mask)."""
    episode_returns: np.ndarray
    """`[tasks]`: mean undiscounted return of the episodes that ended in the rollout."""
    first_returns: np.ndarray
    """`[tasks]`: mean undiscounted return of each sub-env's first episode (or its reward sum
    if it outlasts the rollout)."""
    first: FirstEpisodes = field(default_factory=FirstEpisodes)
    """The watched info keys over each sub-env's first episode (`collect`'s `watch`)."""
    advantages: Tensor = field(default_factory=lambda: torch.zeros(0))
    returns: Tensor = field(default_factory=lambda: torch.zeros(0))

    @property
    def env_steps(self) -> int:
        return int(self.rewards.numel())


@dataclass
class RolloutTimers:
    """Seconds spent stepping the envs and running the policy (for the benchmark)."""

    physics: float = 0.0
    policy: float = 0.0


class TimedEnv:
    """A task vector env as a rollout steps it: actions clipped to a Box space's bounds
    (`clip`), and the time counted into `timers`: `reset` and `step` as the physics', from
    `start` to `step` and from `step` to `stop` as the policy's."""

    def __init__(self, env: Any, timers: RolloutTimers) -> None:
        self.env, self.timers = env, timers
        space = env.single_action_space
        self.bounds = (space.low, space.high) if isinstance(space, spaces.Box) else None
        self.tick = time.perf_counter()

    def reset(self, seeds: list[int]) -> np.ndarray:
        """Every sub-env's first observation, sub-env i seeded with `seeds[i]`."""
        tick = time.perf_counter()
        obs, _ = self.env.reset(seed=seeds)
        self.timers.physics += time.perf_counter() - tick
        return obs

    def clip(self, actions: np.ndarray) -> np.ndarray:
        return actions if self.bounds is None else np.clip(actions, *self.bounds)

    def start(self) -> None:
        self.tick = time.perf_counter()

    def step(self, actions: np.ndarray) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """The env's `step(actions)`; the time since `start` (or the last step) was the
        policy's."""
        now = time.perf_counter()
        self.timers.policy += now - self.tick
        result = self.env.step(actions)
        self.tick = time.perf_counter()
        self.timers.physics += self.tick - now
        return result

    def stop(self) -> None:
        self.timers.policy += time.perf_counter() - self.tick


class RolloutNoise:
    """Per-task randomness of one rollout: sub-env reset seeds and the action noise, drawn
    from generators seeded by (task seed, rollout index) alone."""

    def __init__(self, seeds: list[int], index: int) -> None:
        self.rngs = [np.random.default_rng([seed, index]) for seed in seeds]

    def env_seeds(self, envs: int) -> list[int]:
        return [int(s) for rng in self.rngs for s in rng.integers(2**31 - 1, size=envs)]

    def actions(self, policy: BatchedPolicy, shape: tuple[int, ...]) -> Tensor:
        """`[tasks, time, envs, *shape]` noise for the sampler (normal or uniform)."""
        if policy.discrete:
            draws = [rng.uniform(np.finfo(np.float32).tiny, 1.0, size=shape) for rng in self.rngs]
        else:
            draws = [rng.standard_normal(size=shape) for rng in self.rngs]
        return torch.from_numpy(np.stack(draws).astype(np.float32))

    def permutations(self, epochs: int, samples: int) -> Tensor:
        """`[epochs, tasks, samples]`: each task's minibatch order for each epoch (drawn as
        `SeededRolloutBuffer` draws it, one `permutation` per epoch)."""
        orders = [[rng.permutation(samples) for _ in range(epochs)] for rng in self.rngs]
        return torch.from_numpy(np.asarray(orders)).transpose(0, 1).contiguous()


def collect(
    policy: BatchedPolicy,
    params: Params,
    env: Any,
    noise: RolloutNoise,
    n_steps: int,
    gamma: float,
    timers: RolloutTimers | None = None,
    watch: Sequence[str] = (),
) -> Rollout:
    """Reset `env` (a `TaskVectorEnv`) with per-sub-env seeds and roll out `n_steps` steps.
    The info keys in `watch` (the distribution's `episode_info`) are recorded over each
    sub-env's first episode (`Rollout.first`)."""
    timers = timers or RolloutTimers()
    n_tasks, n_envs = env.n_tasks, env.envs_per_task
    action_space = env.single_action_space
    act_shape: tuple[int, ...] = () if policy.discrete else tuple(action_space.shape)
    out_dim = int(action_space.n) if policy.discrete else int(np.prod(action_space.shape))
    device = next(iter(params.values())).device
    draws = noise.actions(policy, (n_steps, n_envs, out_dim)).to(device)
    timed = TimedEnv(env, timers)
    obs_np = timed.reset(noise.env_seeds(n_envs))
    obs_dim = obs_np.shape[-1]
    obs = torch.zeros(n_steps, n_tasks, n_envs, obs_dim, device=device)
    actions = torch.zeros(n_steps, n_tasks, n_envs, *act_shape, device=device)
    log_probs = torch.zeros(n_steps, n_tasks, n_envs, device=device)
    values = torch.zeros(n_steps, n_tasks, n_envs, device=device)
    rewards = torch.zeros(n_steps, n_tasks, n_envs, device=device)
    bootstraps = torch.zeros(n_steps, n_tasks, n_envs, device=device)
    dones = torch.zeros(n_steps, n_tasks, n_envs, dtype=torch.bool, device=device)
    first = torch.zeros(n_steps, n_tasks, n_envs, device=device)
    alive = np.ones(n_tasks * n_envs, dtype=bool)
    running = np.zeros(n_tasks * n_envs)
    first_return = np.zeros(n_tasks * n_envs)
    sums: dict[str, np.ndarray] = {}
    ever: dict[str, np.ndarray] = {}
    first_length = np.zeros(n_tasks * n_envs)
    finished: list[list[float]] = [[] for _ in range(n_tasks)]
    with torch.no_grad():
        current = torch.from_numpy(obs_np).view(n_tasks, n_envs, obs_dim).to(device)
        for t in range(n_steps):
            timed.start()
            out, value = policy.heads(params, current)
            action = policy.sample(params, out, draws[:, t])
            log_prob, _ = policy.log_prob_entropy(params, out, action)
            obs[t], actions[t], log_probs[t], values[t] = current, action, log_prob, value
            step_actions = action.reshape(n_tasks * n_envs, *act_shape).cpu().numpy()
            obs_np, reward, terminated, truncated, infos = timed.step(timed.clip(step_actions))
            done = np.logical_or(terminated, truncated)
            reward_t = torch.as_tensor(reward, dtype=torch.float32, device=device)
            timeout = np.logical_and(truncated, ~np.asarray(terminated))
            if timeout.any():
                final = torch.from_numpy(infos["final_obs"]).to(device)
                final = final.view(n_tasks, n_envs, obs_dim)
                bootstrap = policy.values(params, final).reshape(-1)
                mask = torch.from_numpy(timeout).to(device).view(n_tasks, n_envs)
                bootstraps[t] = torch.where(mask, gamma * bootstrap.view(n_tasks, n_envs), 0.0)
            rewards[t] = reward_t.view(n_tasks, n_envs)
            dones[t] = torch.from_numpy(done).to(device).view(n_tasks, n_envs)
            first[t] = torch.from_numpy(alive.astype(np.float32)).to(device).view(n_tasks, n_envs)
            running += np.asarray(reward, dtype=np.float64)
            first_return += np.where(alive, reward, 0.0)
            first_length += alive
            for key in watch:
                if key in infos:
                    said = np.asarray(infos[key], dtype=np.float64)
                    sums[key] = sums.get(key, 0.0) + np.where(alive, said, 0.0)
                    ever[key] = ever.get(key, False) | (alive & (said > 0))
            for i in np.flatnonzero(done):
                finished[i // n_envs].append(float(running[i]))
                running[i] = 0.0
            alive &= ~done
            current = torch.from_numpy(obs_np).view(n_tasks, n_envs, obs_dim).to(device)
            timed.stop()
        last_values = policy.values(params, current)
    episode_returns = np.array(
        [
            np.mean(f) if f else running[i * n_envs : (i + 1) * n_envs].mean()
            for i, f in enumerate(finished)
        ]
    )

    first_episodes = FirstEpisodes(
        means={
            k: (v / np.maximum(first_length, 1)).reshape(n_tasks, n_envs) for k, v in sums.items()
        },
        ever={k: v.astype(np.float64).reshape(n_tasks, n_envs) for k, v in ever.items()},
    )

    def tet(x: Tensor) -> Tensor:  # [time, tasks, envs, ...] -> [tasks, envs, time, ...]
        return x.transpose(0, 1).transpose(1, 2).contiguous()

    return Rollout(
        obs=tet(obs),
        actions=tet(actions),
        log_probs=tet(log_probs),
        values=tet(values),
        rewards=tet(rewards),
        bootstrap=tet(bootstraps),
        dones=tet(dones),
        last_values=last_values,
        first_episode=tet(first),
        episode_returns=episode_returns,
        first_returns=first_return.reshape(n_tasks, n_envs).mean(1),
        first=first_episodes,
    )


def watched(dist: Any) -> tuple[str, ...]:
    """The info keys `collect` records for `dist` (its `episode_info`; none by default)."""
    return tuple(dist.episode_info) if isinstance(dist, ReportsEpisodes) else ()


def family_metrics(dist: Any, tasks: Sequence[Any], rollout: Rollout) -> dict[str, np.ndarray]:
    """The distribution's own metrics of the rollout's first episodes (`ReportsEpisodes`),
    each `[tasks, envs]`; none for a distribution without the hook."""
    if not isinstance(dist, ReportsEpisodes):
        return {}
    return dist.episode_metrics(tasks, rollout.first)


def logged(metrics: dict[str, np.ndarray], when: str) -> dict[str, float]:
    """Family metrics as the training log has them: `<name>_<when>`, the mean over episodes."""
    return {f"{name}_{when}": float(values.mean()) for name, values in metrics.items()}


def gae(
    rewards: Tensor, values: Tensor, dones: Tensor, last_values: Tensor, gamma: float, lam: float
) -> tuple[Tensor, Tensor]:
    """GAE(lambda) advantages and lambda-returns over the last (time) axis, as SB3's
    `RolloutBuffer.compute_returns_and_advantage`: the step after an episode's last step
    contributes nothing, and the step after the rollout's last is bootstrapped with
    `last_values`."""
    steps = rewards.shape[-1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_values)
    not_done = 1.0 - dones.float()
    for t in reversed(range(steps)):
        next_values = last_values if t == steps - 1 else values[..., t + 1]
        delta = rewards[..., t] + gamma * next_values * not_done[..., t] - values[..., t]
        running = delta + gamma * lam * not_done[..., t] * running
        advantages[..., t] = running
    return advantages, advantages + values


__all__ = [
    "Rollout",
    "RolloutNoise",
    "RolloutTimers",
    "TimedEnv",
    "collect",
    "family_metrics",
    "gae",
    "logged",
    "watched",
]
