"""The supervised losses and evaluation metrics, by the names distributions give them.

A `SupervisedDistribution` names its `loss` and `metric`; the inner loop looks them up here,
and validation checks a distribution's names against these tables before training starts.
Each function takes one task's outputs and targets and returns a scalar.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


def mse_loss(out: Tensor, y: Tensor) -> Tensor:
    return ((out - y) ** 2).mean()


def cross_entropy_loss(out: Tensor, y: Tensor) -> Tensor:
    return nn.functional.cross_entropy(out, y)


def accuracy(out: Tensor, y: Tensor) -> Tensor:
    return (out.argmax(-1) == y).float().mean()


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse_loss,
    "cross_entropy": cross_entropy_loss,
}
METRICS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse_loss, "accuracy": accuracy}

__all__ = ["LOSSES", "METRICS", "accuracy", "cross_entropy_loss", "mse_loss"]
