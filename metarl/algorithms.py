"""The outer loop's two ingredients: the meta-gradient and the annealed outer step.

    phi = model.init()
    for iteration:
        tasks   = distribution.sample(meta_batch, rng)
        adapted = learner.adapt(phi, tasks, steps)                 # W_i, stacked
        delta   = meta_gradient(algorithm, phi, adapted, ...)      # mean over tasks
        phi     = outer_optimizer.step(phi, delta, lr=schedule(iteration))

Reptile's delta is phi - mean_i W_i (summed per rank, then over ranks: `metarl.distributed`);
with plain SGD and lr epsilon the outer step is Reptile's interpolation
phi + epsilon (mean W - phi). FOMAML's delta is the mean query-loss gradient
at W_i. Either delta can be handed to Adam instead (the paper's "Adam on phi - W" option).
"""

from __future__ import annotations

import torch

from metarl.config import Algorithm, OptimizerName
from metarl.learner import Params


def linear_schedule(start: float, end: float, iteration: int, total: int) -> float:
    """Linear annealing from `start` (iteration 0) to `end` (the last iteration)."""
    frac = iteration / max(total - 1, 1)
    return start + (end - start) * frac


def reptile_delta_sum(phi: Params, adapted: Params) -> Params:
    """sum_i (phi - W_i) over the adapted tasks (stacked on axis 0). Divided by the meta-batch
    size -- after summing over ranks -- it is Reptile's phi - mean_i W_i, minus the average
    direction the tasks moved in."""
    return {k: phi[k] * w.shape[0] - w.sum(0) for k, w in adapted.items()}


def outer_optimizer(
    name: OptimizerName, params: list[torch.nn.Parameter], lr: float
) -> torch.optim.Optimizer:
    """SGD without momentum is Reptile's interpolation; Adam (default betas) is the paper's
    alternative. Either way the learning rate follows the meta-step schedule."""
    if name is OptimizerName.SGD:
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


def apply_delta(
    optimizer: torch.optim.Optimizer, delta: Params, names: list[str], lr: float
) -> None:
    """Set each parameter's gradient to `delta` and take one outer step with step size `lr`."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    params = optimizer.param_groups[0]["params"]
    for name, p in zip(names, params, strict=True):
        p.grad = delta[name].to(p.dtype).clone()
    optimizer.step()


__all__ = [
    "Algorithm",
    "apply_delta",
    "linear_schedule",
    "outer_optimizer",
    "reptile_delta_sum",
]
