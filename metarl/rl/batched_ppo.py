"""SB3's PPO update (`PPO.train()`), for every task at once with per-task weights and Adam.

Each task's samples are flattened env-major (`[tasks, envs * time]`, the order of SB3's
`swap_and_flatten`), and every epoch walks them in minibatches of a per-task permutation. Per
minibatch and task, exactly as SB3: advantages normalized over the minibatch, the clipped
surrogate, the value loss (MSE to the lambda-returns, no value clipping), the entropy term,
the gradient's global norm clipped to `max_grad_norm`, and one Adam step (torch's defaults
with eps 1e-5, as SB3's policy builds it). The tasks share no weights, so the gradient of the
sum of the per-task losses w.r.t. the stacked parameters is the stack of per-task gradients;
one backward serves all tasks.

`tests/test_rl_batched.py` checks the parameters against SB3's `PPO.train()` on one task given
the same rollout and minibatch order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from metarl.config import OptimizerName
from metarl.optim import InnerOptimizer
from metarl.rl.policy import BatchedPolicy, Params, per_task_gradients
from metarl.rl.rollout import Rollout

ADAM_EPS = 1e-5
"""SB3's `ActorCriticPolicy` builds its Adam with eps 1e-5 (torch's default is 1e-8)."""


class PPOBatch(NamedTuple):
    """A rollout flattened per task: `[tasks, samples, ...]`, env-major as SB3's buffer."""

    obs: Tensor
    actions: Tensor
    old_log_probs: Tensor
    advantages: Tensor
    returns: Tensor

    @classmethod
    def from_rollout(cls, rollout: Rollout) -> PPOBatch:
        def flat(x: Tensor) -> Tensor:
            return x.reshape(x.shape[0], x.shape[1] * x.shape[2], *x.shape[3:])

        return cls(
            flat(rollout.obs),
            flat(rollout.actions),
            flat(rollout.log_probs),
            flat(rollout.advantages),
            flat(rollout.returns),
        )

    def take(self, index: Tensor) -> PPOBatch:
        """The samples `index` (`[tasks, k]`) of each task."""
        return PPOBatch(*(_gather(x, index) for x in self))


def _gather(x: Tensor, index: Tensor) -> Tensor:
    expanded = index.view(*index.shape, *([1] * (x.dim() - 2))).expand(*index.shape, *x.shape[2:])
    return x.gather(1, expanded)


@dataclass
class PPOLoss:
    """PPO's loss coefficients (SB3's names)."""

    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    normalize_advantage: bool = True

    def __call__(
        self, policy: BatchedPolicy, params: Params, batch: PPOBatch
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-task loss, `[tasks]`, and its parts."""
        out, values = policy.heads(params, batch.obs)
        log_prob, entropy = policy.log_prob_entropy(params, out, batch.actions)
        advantages = batch.advantages
        if self.normalize_advantage and advantages.shape[1] > 1:
            mean = advantages.mean(1, keepdim=True)
            advantages = (advantages - mean) / (advantages.std(1, keepdim=True) + 1e-8)
        ratio = torch.exp(log_prob - batch.old_log_probs)
        clipped = torch.clamp(ratio, 1 - self.clip_range, 1 + self.clip_range)
        policy_loss = -torch.min(advantages * ratio, advantages * clipped).mean(1)
        value_loss = ((batch.returns - values) ** 2).mean(1)
        entropy_loss = -entropy.mean(1)
        loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        return loss, {"policy": policy_loss, "value": value_loss, "entropy": entropy_loss}


def loss_and_grad(
    policy: BatchedPolicy,
    loss_fn: PPOLoss,
    params: Params,
    batch: PPOBatch,
) -> tuple[Params, Tensor]:
    """Per-task gradients (stacked) and losses."""
    return per_task_gradients(lambda p: loss_fn(policy, p, batch)[0], params)


def clip_grad_norm(grads: Params, max_norm: float) -> Tensor:
    """`torch.nn.utils.clip_grad_norm_` per task, in place: each task's gradient, all
    parameters together, scaled to norm at most `max_norm`. Returns the norms, `[tasks]`."""
    keys = list(grads)
    squares = torch.stack([grads[k].flatten(1).pow(2).sum(1) for k in keys]).sum(0)
    norms = squares.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for k in keys:
        grads[k].mul_(coef.view(-1, *([1] * (grads[k].dim() - 1))))
    return norms


@dataclass
class BatchedPPO:
    """The PPO update of `PPO.train()` for stacked parameters (see the module docstring).

    `state` holds each task's Adam moments and step count; a task starts fresh with `init`
    and keeps it across its updates (as the serial learner keeps one optimizer per task)."""

    policy: BatchedPolicy
    loss: PPOLoss
    lr: float
    n_epochs: int = 10
    batch_size: int = 64
    max_grad_norm: float = 0.5

    def __post_init__(self) -> None:
        self.adam = InnerOptimizer(OptimizerName.ADAM, self.lr, eps=ADAM_EPS)

    def init(self, params: Params) -> dict[str, object]:
        return {"adam": self.adam.init(params), "t": 0}

    def update(
        self, params: Params, batch: PPOBatch, permutations: Tensor, state: dict[str, object]
    ) -> tuple[Params, dict[str, float]]:
        """`n_epochs` passes over `batch`; epoch e visits each task's samples in the order
        `permutations[e, task]` (`[epochs, tasks, samples]`), `batch_size` at a time."""
        total = batch.obs.shape[1]
        adam_state = state["adam"]
        assert isinstance(adam_state, dict)
        losses = []
        for epoch in range(self.n_epochs):
            for start in range(0, total, self.batch_size):
                index = permutations[epoch, :, start : start + self.batch_size]
                grads, loss = loss_and_grad(self.policy, self.loss, params, batch.take(index))
                clip_grad_norm(grads, self.max_grad_norm)
                t = int(state["t"]) + 1  # type: ignore[call-overload]
                state["t"] = t
                params = self.adam.step(params, grads, adam_state, t)
                losses.append(loss)
        return params, {"ppo_loss": float(torch.stack(losses).mean())}


__all__ = ["ADAM_EPS", "BatchedPPO", "PPOBatch", "PPOLoss", "clip_grad_norm", "loss_and_grad"]
