"""MAML-RL's inner loop: vanilla policy gradient with a linear feature baseline, per task.

The protocol of the MAML paper and pytorch-maml-rl: each task's `n_envs` sub-envs run one
episode each (steps after a sub-env's first episode ended are masked out); the baseline is a
linear regression, fitted per task by regularized least squares, of the discounted
returns-to-go on the features `[obs, obs^2, t, t^2, t^3, 1]` (t = step / 100); the advantage
is return-to-go minus baseline (GAE with lambda = 1, no bootstrap past an episode's end),
normalized over the task's valid steps; the loss is minus the mean over episodes of the
per-episode mean of `log pi(a|s) * advantage`; one step of plain SGD (lr `inner_lr`, 0.1 in
the paper) per update. Only the actor and `log_std` get a gradient; the value head is unused.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metarl.rl.policy import BatchedPolicy, Params, per_task_gradients
from metarl.rl.rollout import Rollout

REG_COEFF = 1e-5
"""pytorch-maml-rl's ridge coefficient, multiplied by 10 (up to 5 times) until the solve is
finite."""


def baseline_features(obs: Tensor, mask: Tensor) -> Tensor:
    """`[tasks, envs, time, 2 * obs_dim + 4]` features; zero where `mask` is 0."""
    steps = obs.shape[2]
    t = (
        (torch.arange(steps, dtype=obs.dtype, device=obs.device) / 100.0)
        .view(1, 1, steps, 1)
        .expand(*obs.shape[:3], 1)
    )
    ones = torch.ones_like(t)
    features = torch.cat([obs, obs**2, t, t**2, t**3, ones], dim=-1)
    return features * mask.unsqueeze(-1)


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Returns-to-go over the time axis of the masked rewards (no bootstrap)."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        running = rewards[..., t] * mask[..., t] + gamma * running
        out[..., t] = running
    return out


def fit_baseline(features: Tensor, returns: Tensor, reg: float = REG_COEFF) -> Tensor:
    """Per-task coefficients `[tasks, n_features]` solving (X^T X + reg I) w = X^T y (in
    float64; masked rows of `features` are zero and drop out)."""
    x = features.reshape(features.shape[0], -1, features.shape[-1]).double()
    y = returns.reshape(returns.shape[0], -1, 1).double()
    xtx, xty = x.transpose(1, 2) @ x, x.transpose(1, 2) @ y
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    for _ in range(5):
        coeffs = torch.linalg.solve(xtx + reg * eye, xty)
        if torch.isfinite(coeffs).all():
            break
        reg *= 10
    return coeffs.squeeze(-1).to(features.dtype)


def vpg_advantages(rollout: Rollout, gamma: float) -> Tensor:
    """Normalized advantages `[tasks, envs, time]` (zero on masked steps)."""
    mask = rollout.first_episode
    returns = discounted_returns(rollout.rewards, mask, gamma)
    features = baseline_features(rollout.obs, mask)
    baseline = features @ fit_baseline(features, returns).unsqueeze(1).unsqueeze(-1)
    advantages = (returns - baseline.squeeze(-1)) * mask
    count = mask.sum((1, 2), keepdim=True)
    mean = advantages.sum((1, 2), keepdim=True) / count
    centered = (advantages - mean) * mask
    std = torch.sqrt((centered**2).sum((1, 2), keepdim=True) / count)
    return centered / (std + 1e-8)


def vpg_loss(policy: BatchedPolicy, params: Params, rollout: Rollout, advantages: Tensor) -> Tensor:
    """Per-task REINFORCE loss `[tasks]`: minus the mean over episodes of each episode's mean
    of log-probability times advantage."""
    tasks, envs, steps = advantages.shape
    obs = rollout.obs.reshape(tasks, envs * steps, -1)
    actions = rollout.actions.reshape(tasks, envs * steps, *rollout.actions.shape[3:])
    out = policy.action_head(params, obs)
    log_prob, _ = policy.log_prob_entropy(params, out, actions)
    mask = rollout.first_episode
    weighted = (log_prob.view(tasks, envs, steps) * advantages * mask).sum(-1)
    per_episode = weighted / mask.sum(-1).clamp(min=1)
    return -per_episode.mean(-1)


def vpg_gradient(
    policy: BatchedPolicy, params: Params, rollout: Rollout, gamma: float
) -> tuple[Params, Tensor]:
    """Per-task gradients of `vpg_loss` (stacked) and the losses."""
    advantages = vpg_advantages(rollout, gamma)
    return per_task_gradients(lambda p: vpg_loss(policy, p, rollout, advantages), params)


__all__ = [
    "baseline_features",
    "discounted_returns",
    "fit_baseline",
    "vpg_advantages",
    "vpg_gradient",
    "vpg_loss",
]
