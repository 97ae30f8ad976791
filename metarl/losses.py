"""The supervised losses and evaluation metrics, by the names distributions give them.

A `SupervisedDistribution` names its `loss` and `metric`; the inner loop looks them up here,
and validation checks a distribution's names against these tables before training starts.
Each function takes one task's outputs and targets and returns a scalar.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn


def mse_loss(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error (`"mse"`: sine regression's loss and metric).

    Args:
        out: one task's outputs.
        y: its targets, of the same shape.

    Returns:
        The mean over every entry, a scalar.
    """
    return ((out - y) ** 2).mean()


def cross_entropy_loss(out: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of class logits (`"cross_entropy"`: the few-shot classifiers' loss).

    Args:
        out: one task's logits, `[examples, classes]`.
        y: the class indices, `[examples]`.

    Returns:
        The mean over the examples, a scalar.
    """
    return nn.functional.cross_entropy(out, y)


def accuracy(out: Tensor, y: Tensor) -> Tensor:
    """The fraction of examples whose largest logit is the true class (`"accuracy"`).

    Args:
        out: one task's logits, `[examples, classes]`.
        y: the class indices, `[examples]`.

    Returns:
        A scalar in [0, 1].

    Examples:
        >>> import torch
        >>> from metarl.losses import accuracy
        >>> accuracy(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        tensor(0.5000)
    """
    return (out.argmax(-1) == y).float().mean()


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": mse_loss,
    "cross_entropy": cross_entropy_loss,
}
METRICS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": mse_loss, "accuracy": accuracy}

__all__ = ["LOSSES", "METRICS", "accuracy", "cross_entropy_loss", "mse_loss"]
