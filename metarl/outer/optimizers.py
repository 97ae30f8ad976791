"""SGD and Adam as outer steps: torch's optimizer on the meta-batch's mean delta, its
learning rate set to the iteration's `meta_step`. SGD without momentum is Reptile's
interpolation phi <- phi - epsilon * delta; Adam on the delta is the Reptile paper's
alternative."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from metarl.config import Recipe
from metarl.protocol import MetaLearner, MetaStep, Params


def apply_delta(
    optimizer: torch.optim.Optimizer, delta: Params, names: list[str], lr: float
) -> None:
    """Set each parameter's gradient to `delta` and take one optimizer step of size `lr`."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    params = optimizer.param_groups[0]["params"]
    for name, p in zip(names, params, strict=True):
        p.grad = delta[name].to(p.dtype).clone()
    optimizer.step()


class OptimizerStep:
    """One step of a torch optimizer (`optimizer_class`, default settings) on the model's
    parameters, the meta-gradient as their gradient."""

    optimizer_class: ClassVar[Callable[..., torch.optim.Optimizer]]

    def __init__(self, model: torch.nn.Module, lr: float) -> None:
        self.names = [n for n, _ in model.named_parameters()]
        self.optimizer = self.optimizer_class(list(model.parameters()), lr=lr)

    @classmethod
    def from_recipe(cls, recipe: Recipe, learner: MetaLearner[Any]) -> OptimizerStep:
        return cls(learner.model, recipe.train.meta_step)

    def step(self, meta: MetaStep) -> dict[str, float]:
        apply_delta(self.optimizer, meta.gradient, self.names, meta.lr)
        return {}

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


class SGDStep(OptimizerStep):
    optimizer_class = torch.optim.SGD


class AdamStep(OptimizerStep):
    optimizer_class = torch.optim.Adam


__all__ = ["AdamStep", "OptimizerStep", "SGDStep", "apply_delta"]
