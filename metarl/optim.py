"""Inner optimizers on stacked parameters: SGD and Adam with a state per task.

Parameters here are dicts of tensors with a leading task axis (`stack`), so one step updates
every task of a meta-batch at once. The supervised inner loop (`metarl.learners.inner_loop`)
and the batched RL updates (`metarl.rl`) both step with `InnerOptimizer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from metarl.config import OptimizerName
from metarl.protocol import Params


def stack(params: Params, n: int) -> Params:
    """`n` independent copies of `params` along a new leading task axis."""
    return {k: v.detach().unsqueeze(0).expand(n, *v.shape).clone() for k, v in params.items()}


@dataclass
class InnerOptimizer:
    """SGD or Adam on stacked parameters, written out so that every task has its own state.

    Adam's state is reset for every task (each call to `init`): a new task starts from phi with
    fresh moments, which is also what evaluation does, unless training hands an `AdamCarry`.
    `rates` (SGD only) replaces the scalar `lr` by one learning rate per parameter entry, keyed
    like the parameters (Meta-SGD's alpha).
    """

    name: OptimizerName
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    rates: Params | None = None

    def init(self, params: Params) -> dict[str, Params]:
        if self.name is OptimizerName.SGD:
            return {}
        return {
            "m": {k: torch.zeros_like(v) for k, v in params.items()},
            "v": {k: torch.zeros_like(v) for k, v in params.items()},
        }

    def step(self, params: Params, grads: Params, state: dict[str, Params], t: int) -> Params:
        """One update; `t` counts from 1 (Adam's bias correction). Written with torch's
        `_foreach` ops (as torch.optim's own foreach implementations are): a handful of
        kernels per step for all the parameter tensors instead of a handful per tensor, which
        matters when a step's whole compute is a few milliseconds."""
        keys = list(params)
        ps, gs = [params[k] for k in keys], [grads[k] for k in keys]
        if self.name is OptimizerName.SGD:
            if self.rates is not None:
                return {k: p - self.rates[k] * g for k, p, g in zip(keys, ps, gs, strict=True)}
            return dict(zip(keys, torch._foreach_add(ps, gs, alpha=-self.lr), strict=True))
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr * (1 - b2**t) ** 0.5 / (1 - b1**t)
        ms = [state["m"][k] for k in keys]
        vs = [state["v"][k] for k in keys]
        torch._foreach_mul_(ms, b1)
        torch._foreach_add_(ms, gs, alpha=1 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1 - b2)
        denom = torch._foreach_sqrt(vs)
        torch._foreach_add_(denom, self.eps * (1 - b2**t) ** 0.5)
        updates = torch._foreach_div(ms, denom)
        return dict(zip(keys, torch._foreach_add(ps, updates, alpha=-step_size), strict=True))


@dataclass
class AdamCarry:
    """The inner Adam's moments and step count carried from task to task in training, as
    supervised-reptile does (one Adam for the whole run, its state never reset). Tasks are
    adapted side by side here, so each meta-batch slot is one chain: the task in slot i of
    iteration k + 1 starts from the moments the task in slot i of iteration k ended with."""

    state: dict[str, Params] = field(default_factory=dict)
    steps: int = 0
    """Adam steps taken so far along each chain (its bias correction continues)."""


__all__ = ["AdamCarry", "InnerOptimizer", "stack"]
