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

from metarl.config import Algorithm
from metarl.protocol import Adaptation, MetaLearner, Params


def linear_schedule(start: float, end: float, iteration: int, total: int) -> float:
    """Linear annealing from `start` (iteration 0) to `end` (the last iteration)."""
    frac = iteration / max(total - 1, 1)
    return start + (end - start) * frac


def reptile_delta(phi: Params, adapted: Params) -> Params:
    """Reptile: sum_i (phi - W_i) over the adapted tasks (W_i stacked on axis 0)."""
    return {k: phi[k] * w.shape[0] - w.sum(0) for k, w in adapted.items()}


def fomaml_delta(learner: MetaLearner, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
    """First-order MAML: sum_i grad L_query_i(W_i), the query-loss gradient at each task's
    adapted parameters, treated as a gradient at phi (no second-order terms)."""
    return learner.query_gradient(adaptation)


def meta_delta(
    algorithm: Algorithm, learner: MetaLearner, phi: Params, adaptation: Adaptation
) -> tuple[Params, dict[str, float]]:
    """The per-task sum of `algorithm`'s delta for one rank's adapted tasks, and metrics."""
    if algorithm is Algorithm.REPTILE:
        return reptile_delta(phi, adaptation.params), {}
    if algorithm.second_order or algorithm in (Algorithm.GRADIENTS, Algorithm.RL2):
        return learner.meta_gradient(adaptation)
    return fomaml_delta(learner, adaptation)


__all__ = ["fomaml_delta", "linear_schedule", "meta_delta", "reptile_delta"]
