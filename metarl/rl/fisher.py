"""The pieces of TRPO's Fisher-vector product that forward-mode AD computes
(`MetaObjective.kl_hessian(..., method="jvp")`).

TRPO's metric is the Hessian of the mean KL between the re-adapted policies and the ones that
sampled, at phi_old: `J^T M J`, J the Jacobian of the policies' distribution parameters (the
Gaussian's mean and scale on every post-update state, or the categorical's logits) with
respect to phi through the inner steps, and M the KL's Hessian in those parameters, which is
known in closed form. The `"hvp"` method gets `J^T M J v` from three Hessian-vector products
(reverse over reverse): one through each inner step forward, one of the KL, one through each
step back. The `"jvp"` method pushes v forward instead: through each inner step by a
Jacobian-vector product of the inner gradient (forward over reverse, `torch.func.jvp` of
`torch.func.grad`), through the network by a Jacobian-vector product of the distribution
parameters, applies M analytically (`kl_hessian_in_parameters`), and pulls the result back
by one vector-Jacobian product of the network and the reverse chain of the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent, Normal

Params = dict[str, Tensor]

FisherMethod = Literal["hvp", "jvp"]
FISHER_METHODS: tuple[FisherMethod, ...] = ("hvp", "jvp")
"""How `MetaObjective.kl_hessian` computes its product: three Hessian-vector products per
judged policy ("hvp"), or forward mode and the closed-form KL Hessian ("jvp")."""


def distribution_parameters(dist: Distribution) -> tuple[Tensor, ...]:
    """The parameters M is written in: (mean, scale) of a diagonal Gaussian (`Independent`
    over a `Normal`), (logits,) of a categorical; anything else is refused by name."""
    if isinstance(dist, Independent) and isinstance(dist.base_dist, Normal):
        return dist.base_dist.loc, dist.base_dist.scale
    if isinstance(dist, Categorical):
        return (dist.logits,)
    raise TypeError(
        f"the forward-mode Fisher product takes a diagonal Gaussian or a categorical policy, "
        f"not {type(dist).__name__}"
    )


def kl_hessian_in_parameters(
    at: tuple[Tensor, ...], old: tuple[Tensor, ...], tangent: tuple[Tensor, ...]
) -> tuple[Tensor, ...]:
    """M t, M the Hessian of KL(p_at || p_old) per state with respect to `at`'s parameters,
    exact at any `at` (not only at `at == old`, where the gradient vanishes): the "hvp"
    method differentiates the KL where the re-adapted policies stand, which equal the old
    ones only up to rounding.

    Gaussian, per action dimension (KL = log(s_q / s) + (s^2 + (m - m_q)^2) / (2 s_q^2) - 1/2):
    d2/dm2 = 1 / s_q^2, d2/ds2 = 1 / s^2 + 1 / s_q^2, no cross term. Categorical in the
    logits z, with p = softmax(z), d = log p - log q and e = d - KL(p || q):
    H_kl = delta_kl p_k (1 + e_k) - p_k p_l (1 + e_k + e_l), diag(p) - p p^T where p = q."""
    if len(at) == 2:
        (_, scale), (_, scale_old), (d_mean, d_scale) = at, old, tangent
        inv_old = scale_old.pow(-2)
        return d_mean * inv_old, d_scale * (scale.pow(-2) + inv_old)
    (logits,), (logits_old,), (d_logits,) = at, old, tangent
    log_p = torch.log_softmax(logits, -1)
    p = log_p.exp()
    d = log_p - torch.log_softmax(logits_old, -1)
    e = d - (p * d).sum(-1, keepdim=True)
    one_e = 1 + e
    pv = (p * d_logits).sum(-1, keepdim=True)
    pev = (p * e * d_logits).sum(-1, keepdim=True)
    return (p * one_e * d_logits - p * one_e * pv - p * pev,)


def inner_step_jvp(inner_loss: Callable[[Params], Tensor], at: Params, tangent: Params) -> Params:
    """H w, H the Hessian of the summed per-task `inner_loss` at `at` (the stacked, detached
    theta_j'): the Jacobian-vector product of its gradient, forward over reverse."""
    result: Params = torch.func.jvp(torch.func.grad(inner_loss), (at,), (tangent,))[1]
    return result


def output_jvp(
    outputs: Callable[[Params], tuple[Tensor, ...]], at: Params, tangent: Params
) -> tuple[Tensor, ...]:
    """The distribution parameters' tangent along `tangent`, forward mode."""
    result: tuple[Tensor, ...] = torch.func.jvp(outputs, (at,), (tangent,))[1]
    return result


@dataclass(frozen=True)
class OutputHead:
    """One judged policy's part of the "jvp" product: its distribution parameters on the
    post-update states as a graph of `point` (the stacked theta_j' leaves), the sampling
    policies' parameters, and each state's weight in the episode-mean KL."""

    point: Params
    outputs: tuple[Tensor, ...]
    old: tuple[Tensor, ...]
    weight: Tensor
    """`[tasks, envs, time, 1]`: mask / (the episode's steps) / envs, times the judged
    policies' share (1 / their number)."""
    obs: Tensor

    @classmethod
    def of(
        cls,
        dist: Distribution,
        old: Distribution,
        obs: Tensor,
        mask: Tensor,
        point: Params,
        share: float,
    ) -> OutputHead:
        weight = mask / mask.sum(-1, keepdim=True).clamp(min=1) / mask.shape[-2] * share
        olds = tuple(x.detach() for x in distribution_parameters(old))
        return cls(point, distribution_parameters(dist), olds, weight.unsqueeze(-1), obs)

    def gauss_newton(
        self, policy_fn: Callable[[Params, Tensor], Distribution], w: Params
    ) -> Params:
        """J^T M J w for this policy, J = d (distribution parameters) / d theta_j'."""
        primal = {k: v.detach() for k, v in self.point.items()}
        tangent = output_jvp(lambda p: distribution_parameters(policy_fn(p, self.obs)), primal, w)
        at = tuple(x.detach() for x in self.outputs)
        m = kl_hessian_in_parameters(at, self.old, tangent)
        grads = torch.autograd.grad(
            self.outputs,
            list(self.point.values()),
            grad_outputs=tuple(self.weight * x for x in m),
            retain_graph=True,
            allow_unused=True,
        )
        return {
            k: torch.zeros_like(v) if g is None else g
            for (k, v), g in zip(self.point.items(), grads, strict=True)
        }


__all__ = [
    "FISHER_METHODS",
    "FisherMethod",
    "OutputHead",
    "distribution_parameters",
    "inner_step_jvp",
    "kl_hessian_in_parameters",
    "output_jvp",
]
