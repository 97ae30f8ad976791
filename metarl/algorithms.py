"""The outer loop's algorithms, each as the paper writes it, and the outer step's schedule
(the steps themselves: `metarl.outer`).

    phi = model.init()
    for iteration:
        tasks   = distribution.sample(meta_batch, rng)
        adapted = learner.adapt(phi, tasks)                      # W_i, stacked on a task axis
        delta   = sum_i reptile_delta(...) or fomaml_delta(...)   # summed over tasks (and ranks)
        phi     = outer_step.step(phi, delta / meta_batch, lr=schedule(iteration))

Reptile (Nichol et al. 2018, Algorithm 2): phi <- phi + epsilon * mean_i (W_i - phi). Its delta
is phi - mean_i W_i, so plain SGD with lr epsilon on it is that interpolation; Adam on it is
the paper's "Adam on phi - W" option. FOMAML (Finn et al. 2017, first order): the delta is the
mean over tasks of the query-loss gradient at W_i. MAML (second order), iMAML (implicit) and
Meta-SGD (MAML with a learned per-parameter inner rate) differentiate the query loss through or
around the inner loop; the learner computes those while adapting (`metarl.learners.
second_order`). All are computed as per-task *sums* here
(`MetaTrainer.step` sums them over ranks, then divides by the meta-batch), so a rank's share
of the meta-batch needs no weighting.
"""

from __future__ import annotations

from typing import Any

from metarl.config import Algorithm
from metarl.protocol import Adaptation, MetaDelta, MetaLearner, Params


def linear_schedule(start: float, end: float, iteration: int, total: int) -> float:
    """Linear annealing from `start` (iteration 0) to `end` (the last iteration).

    Args:
        start: The value at iteration 0.
        end: The value at iteration `total - 1`.
        iteration: The iteration (0-based).
        total: The number of iterations.

    Returns:
        The value at `iteration`.

    Examples:
        >>> from metarl.algorithms import linear_schedule
        >>> [linear_schedule(1.0, 0.0, i, 5) for i in range(5)]
        [1.0, 0.75, 0.5, 0.25, 0.0]
    """
    frac = iteration / max(total - 1, 1)
    return start + (end - start) * frac


def reptile_delta(phi: Params, adapted: Params) -> Params:
    """Reptile: sum_i (phi - W_i) over the adapted tasks (W_i stacked on axis 0).

    Args:
        phi: The initialization, by parameter name.
        adapted: Each task's adapted parameters, stacked on a leading task axis.

    Returns:
        The delta by parameter name: divided by the tasks and scaled by the meta-step, it
        is the outer SGD step (phi <- phi - eps * delta / n moves phi toward the W_i).

    Examples:
        >>> import torch
        >>> from metarl.algorithms import reptile_delta
        >>> phi = {"w": torch.tensor([1.0, 1.0])}
        >>> adapted = {"w": torch.tensor([[2.0, 0.0], [4.0, 1.0]])}
        >>> reptile_delta(phi, adapted)["w"]
        tensor([-4.,  1.])
    """
    return {k: phi[k] * w.shape[0] - w.sum(0) for k, w in adapted.items()}


def fomaml_delta(learner: MetaLearner, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
    """First-order MAML: sum_i grad L_query_i(W_i), the query-loss gradient at each task's
    adapted parameters, treated as a gradient at phi (no second-order terms)."""
    return learner.query_gradient(adaptation)


def meta_delta(
    algorithm: Algorithm, learner: MetaLearner, phi: Params, adaptation: Adaptation
) -> MetaDelta[Any]:
    """The per-task sum of `algorithm`'s delta for one rank's adapted tasks, with metrics and
    (MAML-RL's) the objective it was taken of.

    Args:
        algorithm: The recipe's `train.algorithm`.
        learner: The meta-learner that adapted the tasks.
        phi: The initialization the tasks were adapted from.
        adaptation: What `learner.adapt` returned.

    Returns:
        The delta by parameter name (summed over this rank's tasks), its metrics and objective.
    """
    if algorithm is Algorithm.REPTILE:
        return MetaDelta(reptile_delta(phi, adaptation.params))
    if algorithm.second_order or algorithm in (Algorithm.GRADIENTS, Algorithm.RL2):
        return learner.meta_gradient(adaptation)
    return MetaDelta(*fomaml_delta(learner, adaptation))


__all__ = ["fomaml_delta", "linear_schedule", "meta_delta", "reptile_delta"]
