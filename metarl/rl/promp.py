"""ProMP's outer step (Rothfuss et al. 2019): several Adam steps per batch on a clipped objective.

As the authors' code (`meta_policy_search/meta_algos/pro_mp.py`, its class defaults) does it:
on one batch of pre- and post-update episodes, `steps` full-batch Adam steps (the trainer's
outer Adam, lr `train.meta_step`; ProMP uses 1e-3) on the mean over tasks of

    -min(r A', clip(r, 1 - clip_eps, 1 + clip_eps) A') + kl_coeff * KL(pi_phi_old || pi_phi)

(`MetaObjective.promp_losses`: r the ratio of the re-adapted post-update policy to the
sampling one, the KL on the pre-update states), re-adapting at every step on the same
pre-update episodes. After the steps, the inner KL's coefficient is halved when the KL is
below target / 1.5 and doubled above target * 1.5, never below `min_inner_kl_coeff` (metarl's
floor, not ProMP's: see `ProMPSettings`). At phi_old the clipped term's gradient is
the surrogate's (r = 1) and the KL's is zero, so the first step is the meta-gradient the
trainer already summed over ranks; each later step's gradient is summed over ranks by
`reduce`, so every rank takes the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from metarl.config import Recipe
from metarl.outer.optimizers import apply_delta
from metarl.protocol import MetaStep
from metarl.rl.outer_objective import (
    OuterObjective,
    OuterObjectiveLearner,
    handed_objective,
    objective_learner,
)
from metarl.rl.policy import Params


class ClippedObjective(Protocol):
    """What ProMP's steps evaluate of an outer objective (`metarl.rl.maml.MetaObjective` is
    one): the clipped surrogate and the inner KL per task at some phi."""

    def promp_losses(
        self, phi: Params, clip_eps: float, *, create_graph: bool = True
    ) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class ProMPSettings:
    """ProMP's class defaults (`ProMP.__init__`), and a floor under its KL coefficient."""

    steps: int = 5
    clip_eps: float = 0.2
    target_inner_kl: float = 0.01
    init_inner_kl_coeff: float = 1e-2
    min_inner_kl_coeff: float = 1e-12
    """ProMP's code halves the coefficient without bound while the inner KL stays under
    target / 1.5; far enough down, the penalty's backward pass runs through float32's
    subnormal range, which is slow (docs/changelog.md has the HalfCheetahDir run where it
    happened). At 1e-12 the penalty already weighs nothing beside the surrogate, and its
    products stay far above the subnormals (float32's smallest normal is about 1e-38)."""


def promp_step(
    model: torch.nn.Module,
    objective: ClippedObjective,
    gradient: Params,
    reduce: Callable[[Params], Params],
    meta_batch: int,
    optimizer: torch.optim.Optimizer,
    lr: float,
    kl_coeff: float,
    settings: ProMPSettings = ProMPSettings(),
    surrogate_at_phi: Tensor | None = None,
) -> tuple[float, dict[str, float]]:
    """Take ProMP's steps on `model`'s parameters (those `optimizer` holds, in
    `named_parameters` order); returns the next KL coefficient and metrics.

    `surrogate_at_phi`, where the caller has it (this rank's per-task surrogate at phi_old,
    from the meta-gradient), is the objective before the steps: at phi_old the ratios are 1,
    nothing is clipped and the inner KL is 0, so it is not evaluated again."""
    s = settings
    kl_coeff = max(kl_coeff, s.min_inner_kl_coeff)  # also a coefficient saved before the floor
    names = [n for n, _ in model.named_parameters()]

    def losses(create_graph: bool) -> tuple[Params, Tensor]:
        """The local losses' sums at the model's phi and, with `create_graph`, their
        gradient; summed over ranks and divided by the meta-batch."""
        leaves = {n: p.detach().requires_grad_() for n, p in model.named_parameters()}
        with torch.enable_grad():
            surrogate, inner_kl = objective.promp_losses(
                leaves, s.clip_eps, create_graph=create_graph
            )
            values = torch.stack([surrogate.sum(), inner_kl.sum()])
            grads: Params = {}
            if create_graph:
                total = values[0] + kl_coeff * values[1]
                found = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
                grads = {
                    n: torch.zeros_like(leaves[n]) if g is None else g
                    for n, g in zip(names, found, strict=True)
                }
        return reduced_mean({**grads, "__values__": values.detach()})

    def reduced_mean(local: Params) -> tuple[Params, Tensor]:
        mean = {k: v / meta_batch for k, v in reduce(local).items()}
        return {n: v for n, v in mean.items() if n != "__values__"}, mean["__values__"]

    if surrogate_at_phi is None:
        _, before = losses(create_graph=False)
    else:
        local = surrogate_at_phi.detach().sum()
        _, before = reduced_mean({"__values__": torch.stack([local, torch.zeros_like(local)])})
    apply_delta(optimizer, gradient, names, lr)  # at phi_old: the trainer's meta-gradient
    for _ in range(s.steps - 1):
        grads, _ = losses(create_graph=True)
        apply_delta(optimizer, grads, names, lr)
    _, after = losses(create_graph=False)
    inner_kl = float(after[1])
    if inner_kl < s.target_inner_kl / 1.5:
        next_coeff = max(kl_coeff / 2, s.min_inner_kl_coeff)
    elif inner_kl > s.target_inner_kl * 1.5:
        next_coeff = kl_coeff * 2
    else:
        next_coeff = kl_coeff
    return next_coeff, {
        "promp_loss_before": float(before[0]),
        "promp_loss_after": float(after[0]),
        "promp_inner_kl": inner_kl,
        "promp_kl_coeff": kl_coeff,
    }


class ProMPStep:
    """`outer_optimizer = "promp"`: `promp_step` on the outer objective the meta-gradient was
    taken of (`MetaStep.objective`), stepping the learner's model with an Adam of its own
    (lr `train.meta_step`), which it checkpoints with the inner KL's coefficient."""

    def __init__(
        self, learner: OuterObjectiveLearner, lr: float, settings: ProMPSettings = ProMPSettings()
    ) -> None:
        self.learner = learner
        self.settings = settings
        self.optimizer = torch.optim.Adam(learner.model.parameters(), lr=lr)
        self.kl_coeff = settings.init_inner_kl_coeff

    @classmethod
    def from_recipe(cls, recipe: Recipe, learner: object) -> ProMPStep:
        return cls(objective_learner(learner, "promp", "ProMP step"), recipe.train.meta_step)

    def step(self, meta: MetaStep[OuterObjective]) -> dict[str, float]:
        outer = handed_objective(meta, "promp")
        with self.learner.updating():
            self.kl_coeff, metrics = promp_step(
                self.learner.model,
                outer.objective,
                meta.gradient,
                meta.reduce,
                meta.meta_batch,
                self.optimizer,
                meta.lr,
                self.kl_coeff,
                self.settings,
                surrogate_at_phi=outer.surrogate,
            )
        return {**metrics, **self.learner.seconds()}

    def state_dict(self) -> dict[str, Any]:
        coeff = torch.tensor(self.kl_coeff, dtype=torch.float64)
        return {**self.optimizer.state_dict(), "promp_kl_coeff": coeff}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        adam = {k: v for k, v in state.items() if k != "promp_kl_coeff"}
        self.optimizer.load_state_dict(adam)
        if "promp_kl_coeff" in state:
            self.kl_coeff = float(state["promp_kl_coeff"])


__all__ = ["ClippedObjective", "ProMPSettings", "ProMPStep", "promp_step"]
