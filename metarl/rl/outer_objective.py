"""What the outer steps that re-evaluate MAML-RL's objective (TRPO's trust region, ProMP's
clipped steps) need of a learner, as one capability checked once, when the step is built."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from metarl.errors import ConfigError
from metarl.protocol import Adaptation
from metarl.rl.maml import MetaObjective
from metarl.rl.policy import Params
from metarl.rl.settings import BatchedSettings


@dataclass(frozen=True)
class OuterObjective:
    """One rank's outer objective, as the meta-gradient left it."""

    objective: MetaObjective
    phi: Params
    """The point it was built at: phi and, for Meta-SGD, the inner rates (`RATE_PREFIX`)."""
    surrogate: Tensor | None
    """This rank's per-task surrogate at phi (computed with the meta-gradient), or None."""


@runtime_checkable
class OuterObjectiveLearner(Protocol):
    """A learner whose meta-gradient leaves MAML-RL's outer objective to re-evaluate."""

    settings: BatchedSettings

    @property
    def model(self) -> torch.nn.Module: ...

    def outer_objective(self, adaptation: Adaptation[Any]) -> OuterObjective:
        """The objective `meta_gradient` built for `adaptation`."""
        ...

    def load_phi(self, phi: Params) -> None:
        """Make `phi` (weights, and Meta-SGD's rates where it holds them) the learner's."""
        ...

    def updating(self) -> AbstractContextManager[None]:
        """Where an outer step runs: the learner's threads, its time counted as updates'."""
        ...

    def seconds(self) -> dict[str, float]:
        """Seconds spent so far by part (physics, policy, updates), as the metrics log them."""
        ...


def objective_learner(learner: object, name: str, what: str) -> OuterObjectiveLearner:
    """`learner` as an `OuterObjectiveLearner`, or a one-line refusal naming the step."""
    if not isinstance(learner, OuterObjectiveLearner):
        raise ConfigError(
            f'train.outer_optimizer = "{name}": {type(learner).__name__} has no {what} '
            '(RL recipes with algorithm = "maml" and [learner] inner = "vpg")'
        )
    return learner


__all__ = ["OuterObjective", "OuterObjectiveLearner", "objective_learner"]
