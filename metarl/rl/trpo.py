"""TRPO as MAML-RL's outer step: a trust region on the KL between the post-update policies.

pytorch-maml-rl's `MAMLTRPO.step` (maml_rl/metalearners/maml_trpo.py), with its settings for
the MAML paper's experiments: maximize the mean over tasks of the importance-weighted
post-update advantage subject to the mean KL between the policies that sampled the post-update
episodes and the re-adapted ones staying under `max_kl`:

1. g = grad of the mean surrogate loss at phi (the second-order meta-gradient);
2. x ~= F^-1 g by `cg_iters` of conjugate gradient, F v the Hessian-vector product of the
   mean KL at phi (double backprop through the adaptation) plus `cg_damping * v`, optionally
   on a fraction of each task's episodes (`fisher_fraction`, rllab's `subsample_factor`);
3. the full step s = x / sqrt(x.F x / (2 max_kl)); backtracking line search from phi - s,
   shrinking by `ls_backtrack_ratio` up to `ls_max_steps` times, re-adapting at each candidate
   on the same pre-update samples (no new env steps), accepting the first candidate whose
   surrogate loss is below the old one and whose KL is below `max_kl`; none: phi unchanged.

Under torch.distributed every rank holds the objective of its own tasks: the gradient (summed
before this step), each Fisher-vector product and each line-search pair (surrogate, KL) are
summed over ranks by `reduce` and divided by the meta-batch, so every rank takes the same step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from metarl.cg import truncated_conjugate_gradient
from metarl.config import Recipe
from metarl.protocol import MetaStep
from metarl.rl.fisher import FisherMethod
from metarl.rl.maml import OuterLosses
from metarl.rl.outer_objective import (
    OuterObjective,
    OuterObjectiveLearner,
    handed_objective,
    objective_learner,
)
from metarl.rl.policy import Params

Reduce = Callable[[Params], Params]


class TrustRegionObjective(Protocol):
    """What the trust-region step evaluates of an outer objective (`metarl.rl.maml.
    MetaObjective` is one): Fisher-vector products at phi and the losses at a candidate."""

    def kl_hessian(
        self, phi: Params, fraction: float = 1.0, method: FisherMethod = "hvp"
    ) -> Callable[[Params], Params]: ...

    def losses(self, phi: Params, *, create_graph: bool = True) -> OuterLosses: ...


@dataclass(frozen=True)
class TRPOSettings:
    """pytorch-maml-rl's settings for the MAML paper's experiments (its configs and
    REFERENCE.md)."""

    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    ls_backtrack_ratio: float = 0.8
    ls_max_steps: int = 15
    fisher_fraction: float = 1.0
    """The fraction of each task's episodes in the Fisher-vector products (rllab's
    `subsample_factor`; 1.0, all of them, is MAML-RL's)."""
    fisher_method: FisherMethod = "hvp"
    """How each Fisher-vector product is computed (`MetaObjective.kl_hessian`): three
    Hessian-vector products ("hvp") or forward mode and the KL's closed-form Hessian ("jvp");
    the same product up to float32 rounding (tests/test_fisher_jvp.py)."""


def flat_dot(a: Params, b: Params) -> Tensor:
    """The inner product of two parameter dicts as one flat vector's, in `a`'s key order
    (pytorch-maml-rl's flat parameter vector, so the sums round as its do)."""
    return torch.cat([v.reshape(-1) for v in a.values()]) @ torch.cat([b[k].reshape(-1) for k in a])


def trust_region_step(
    phi: Params,
    objective: TrustRegionObjective,
    gradient: Params,
    reduce: Reduce,
    meta_batch: int,
    settings: TRPOSettings = TRPOSettings(),
    surrogate_at_phi: Tensor | None = None,
) -> tuple[Params, dict[str, float]]:
    """The new phi and metrics. `gradient` is the gradient of the mean (over the whole
    meta-batch) surrogate loss at `phi`, already summed over ranks; `objective` holds this
    rank's tasks; `reduce` sums a dict of tensors over ranks (identity for one process).
    `surrogate_at_phi`, this rank's per-task surrogate at phi where the caller computed it
    with the gradient, spares the line search's reference evaluation.

    The natural direction x ~= F^-1 g is `cg_iters` of conjugate gradient (`metarl.cg`), as
    pytorch-maml-rl's `conjugate_gradient`: stopping where the residual's squared norm falls
    to 1e-10, not truncated; every vector is a dict keyed like phi, its inner products
    `flat_dot`'s."""
    s = settings

    def mean_over_batch(values: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: v / meta_batch for k, v in reduce(values).items()}

    kl_hessian = objective.kl_hessian(phi, s.fisher_fraction, s.fisher_method)

    def fisher_vector(v: Params) -> Params:
        total = mean_over_batch({k: x.detach() for k, x in kl_hessian(v).items()})
        return {k: total[k] + s.cg_damping * v[k] for k in phi}

    g = {k: gradient[k].detach() for k in phi}
    direction, _ = truncated_conjugate_gradient(
        fisher_vector, g, s.cg_iters, dot=flat_dot, residual_tol=1e-10, truncate=False
    )
    shs = 0.5 * flat_dot(direction, fisher_vector(direction))
    scale = torch.sqrt(s.max_kl / shs.clamp_min(1e-30))
    step = {k: d * scale for k, d in direction.items()}
    if surrogate_at_phi is None:
        with torch.no_grad():
            surrogate_at_phi = objective.losses(phi, create_graph=False).surrogate
    before = mean_over_batch({"surrogate": surrogate_at_phi.detach().sum()})["surrogate"].item()
    metrics = {"trpo_loss_before": before, "trpo_shs": float(shs)}
    fraction = 1.0
    for tried in range(1, s.ls_max_steps + 1):
        candidate = {k: phi[k].detach() - fraction * step[k] for k in phi}
        with torch.no_grad():
            losses = objective.losses(candidate, create_graph=False)
        both = mean_over_batch({"v": torch.stack([losses.surrogate.sum(), losses.kl.sum()])})
        loss, kl_value = both["v"].tolist()
        if math.isfinite(loss) and loss < before and kl_value < s.max_kl:
            metrics.update(
                trpo_loss_after=loss,
                trpo_kl=kl_value,
                trpo_step_fraction=fraction,
                trpo_line_search_steps=float(tried),
            )
            return candidate, metrics
        fraction *= s.ls_backtrack_ratio
    metrics.update(
        trpo_loss_after=before,
        trpo_kl=0.0,
        trpo_step_fraction=0.0,
        trpo_line_search_steps=float(s.ls_max_steps),
    )
    return dict(phi), metrics


class TRPOStep:
    """`outer_optimizer = "trpo"`: `trust_region_step` on the outer objective the
    meta-gradient was taken of (`MetaStep.objective`); the new phi (and Meta-SGD's rates)
    become the learner's. It holds no state: its checkpoint entry is an optimizer state dict
    without any, so every run's checkpoint has one layout."""

    def __init__(self, learner: OuterObjectiveLearner, settings: TRPOSettings) -> None:
        self.learner = learner
        self.settings = settings

    @classmethod
    def from_recipe(cls, recipe: Recipe, learner: object) -> TRPOStep:
        found = objective_learner(learner, "trpo", "trust-region step")
        return cls(found, TRPOSettings(fisher_fraction=found.settings.trpo_fisher_fraction))

    def step(self, meta: MetaStep[OuterObjective]) -> dict[str, float]:
        outer = handed_objective(meta, "trpo")
        with self.learner.updating():
            phi, metrics = trust_region_step(
                outer.phi,
                outer.objective,
                meta.gradient,
                meta.reduce,
                meta.meta_batch,
                self.settings,
                surrogate_at_phi=outer.surrogate,
            )
            self.learner.load_phi(phi)
        return {**metrics, **self.learner.seconds()}

    def state_dict(self) -> dict[str, Any]:
        count = sum(1 for _ in self.learner.model.parameters())
        return {"state": {}, "param_groups": [{"params": list(range(count))}]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


__all__ = ["TRPOSettings", "TRPOStep", "TrustRegionObjective", "flat_dot", "trust_region_step"]
