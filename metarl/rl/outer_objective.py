"""What the outer steps that re-evaluate MAML-RL's objective (TRPO's trust region, ProMP's
clipped steps) are handed with the meta-gradient (`OuterObjective`, in `MetaStep.objective`),
and what they need of the learner whose phi they move, as one capability checked once, when
the step is built."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from metarl.errors import ConfigError
from metarl.protocol import MetaStep
from metarl.rl.maml import MetaObjective
from metarl.rl.policy import Params
from metarl.rl.settings import BatchedSettings


@dataclass(frozen=True)
class OuterObjective:
    """One rank's outer objective, as the meta-gradient was taken of it."""

    objective: MetaObjective
    phi: Params
    """The point it was built at: phi and, for Meta-SGD, the inner rates (`RATE_PREFIX`)."""
    surrogate: Tensor
    """This rank's per-task surrogate at phi, computed with the meta-gradient (the line
    search's reference and ProMP's objective before its steps)."""


@runtime_checkable
class OuterObjectiveLearner(Protocol):
    """A learner whose meta-gradient hands on MAML-RL's outer objective
    (`MetaDelta.objective`), and whose phi an outer step that re-evaluates it can move."""

    settings: BatchedSettings

    @property
    def model(self) -> torch.nn.Module: ...

    def load_phi(self, phi: Params) -> None:
        """Make `phi` (weights, and Meta-SGD's rates where it holds them) the learner's."""
        ...

    def updating(self) -> AbstractContextManager[None]:
        """Where an outer step runs: the learner's threads, its time counted as updates'."""
        ...

    def seconds(self) -> dict[str, float]:
        """Seconds spent so far by part (physics, policy, updates), as the metrics log them."""
        ...


def handed_objective(meta: MetaStep[OuterObjective], name: str) -> OuterObjective:
    """The outer objective the meta-gradient handed on with `meta`; an objective learner
    (`objective_learner`, checked when the step was built) always hands one."""
    if meta.objective is None:
        raise RuntimeError(f"{name}: the meta-gradient came without its objective")
    return meta.objective


def objective_learner(learner: object, name: str, what: str) -> OuterObjectiveLearner:
    """`learner` as an `OuterObjectiveLearner`, or a one-line refusal naming the step."""
    if not isinstance(learner, OuterObjectiveLearner):
        raise ConfigError(
            f'train.outer_optimizer = "{name}": {type(learner).__name__} has no {what} '
            '(RL recipes with algorithm = "maml" and [learner] inner = "vpg")'
        )
    return learner


__all__ = ["OuterObjective", "OuterObjectiveLearner", "handed_objective", "objective_learner"]
