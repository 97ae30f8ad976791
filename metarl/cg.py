"""Conjugate gradient, once for every caller: iMAML's implicit gradient (one system per task,
`metarl.learners.second_order`) and TRPO's natural direction (one system, `metarl.rl.trpo`).

Vectors are parameter dicts; `dot` gives one inner product per system (a `[tasks]` tensor,
or a 0-d one for a single system). A system stops where its residual fell to
`residual_tol` or below and, with `truncate`, where A showed a direction of non-positive
curvature, keeping the iterate it had (truncated CG, as in Newton-CG); the loop ends when
every system stopped. iMAML truncates (its I + H / lambda can be indefinite); TRPO's
Fisher matrix is positive definite in exact arithmetic and its solver, pytorch-maml-rl's,
goes on through a round-off negative p^T A p, as it is reproduced here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from metarl.protocol import Params

Dot = Callable[[Params, Params], Tensor]


def task_dot(a: Params, b: Params) -> Tensor:
    """Per-task inner product of two stacked parameter sets, `[tasks]`."""
    return sum((a[k] * b[k]).flatten(1).sum(1) for k in a)  # type: ignore[return-value]


def _scale(c: Tensor, v: Tensor) -> Tensor:
    """Multiply `v` by one scalar per system (`c`: `[tasks]`, or 0-d)."""
    return c.view(-1, *([1] * (v.dim() - 1))) * v


def truncated_conjugate_gradient(
    apply_a: Callable[[Params], Params],
    b: Params,
    steps: int,
    *,
    dot: Dot = task_dot,
    residual_tol: float = 0.0,
    truncate: bool = True,
) -> tuple[Params, Tensor]:
    """x with A x ~= b (A symmetric, applied by `apply_a`), at most `steps` iterations from
    x = 0, and which systems met a search direction p with p^T A p <= 0 (a boolean each).
    Such an A is not positive definite and CG's iterates stop being a solution method for
    it, so that system keeps the iterate it had; going on along other directions returns an
    arbitrary vector."""
    x = {k: torch.zeros_like(v) for k, v in b.items()}
    r = {k: v.clone() for k, v in b.items()}
    p = {k: v.clone() for k, v in b.items()}
    rs = dot(r, r)
    active = rs > 0
    indefinite = torch.zeros_like(active)
    for _ in range(steps):
        if not bool(active.any()):
            break
        ap = apply_a(p)
        pap = dot(p, ap)
        indefinite |= active & (pap <= 0)
        if truncate:
            active &= pap > 0
            pap = pap.clamp_min(1e-30)  # the stopped systems' (alpha is 0 for them)
        alpha = torch.where(active, rs / pap, torch.zeros_like(rs))
        x = {k: x[k] + _scale(alpha, p[k]) for k in x}
        r = {k: r[k] - _scale(alpha, ap[k]) for k in r}
        rs_new = dot(r, r)
        active &= rs_new > residual_tol
        beta = torch.where(active, rs_new / rs.clamp_min(1e-30), torch.zeros_like(rs))
        p = {k: r[k] + _scale(beta, p[k]) for k in p}
        rs = rs_new
    return x, indefinite


__all__ = ["task_dot", "truncated_conjugate_gradient"]
