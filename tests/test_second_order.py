"""MAML, Meta-SGD and iMAML meta-gradients against hand computations on tiny models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from metarl.config import OptimizerName
from metarl.learners.inner_loop import InnerOptimizer, SGDLearner
from metarl.learners.second_order import (
    conjugate_gradient,
    implicit_meta_gradient,
    unrolled_meta_gradient,
)
from metarl.protocol import TaskBatch

TASKS, SUPPORT, QUERY, STEPS, LR = 3, 5, 4, 2, 0.1
# The learner returns float32 outputs (`SGDLearner._predict`), so float64 models agree with
# the float64 hand computations to ~1e-8, not to machine precision.


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    phi = {k: v.detach() for k, v in model.named_parameters()}
    g = torch.Generator().manual_seed(1)
    batch = TaskBatch(
        *(
            torch.randn(TASKS, n, 1, generator=g, dtype=torch.float64)
            for n in (SUPPORT, SUPPORT, QUERY, QUERY)
        )
    )
    learner = SGDLearner(model, "mse", InnerOptimizer(OptimizerName.SGD, LR))
    return model, phi, batch, learner


def loss(model, params, x, y):
    return ((functional_call(model, params, (x,)) - y) ** 2).mean()


def unrolled_by_hand(model, phi, batch, rates=None):
    """The per-task loop written out with plain autograd: tasks one after another."""
    leaves = {k: v.clone().requires_grad_() for k, v in phi.items()}
    alpha = {k: v.clone().requires_grad_() for k, v in (rates or {}).items()}
    total = 0.0
    for i in range(TASKS):
        w = dict(leaves)
        for _ in range(STEPS):
            grads = torch.autograd.grad(
                loss(model, w, batch.support_x[i], batch.support_y[i]),
                list(w.values()),
                create_graph=True,
            )
            w = {
                k: p - (alpha[k] if alpha else LR) * g
                for (k, p), g in zip(w.items(), grads, strict=True)
            }
        total = total + loss(model, w, batch.query_x[i], batch.query_y[i])
    inputs = [*leaves.values(), *alpha.values()]
    return total, torch.autograd.grad(total, inputs)


def test_maml_matches_an_explicit_unrolled_loop_and_finite_differences(tiny):
    model, phi, batch, learner = tiny
    result = unrolled_meta_gradient(learner, phi, batch, STEPS, LR)
    _, expected = unrolled_by_hand(model, phi, batch)
    for (k, got), want in zip(result.grads.items(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8, msg=k)
    # the directional derivative along a random direction, by central differences
    direction = {k: torch.randn_like(v) for k, v in phi.items()}
    eps = 1e-6

    def total_at(s):
        shifted = {k: v + s * direction[k] for k, v in phi.items()}
        return unrolled_by_hand(model, shifted, batch)[0].item()

    numeric = (total_at(eps) - total_at(-eps)) / (2 * eps)
    analytic = sum((result.grads[k] * direction[k]).sum() for k in phi).item()
    assert analytic == pytest.approx(numeric, rel=1e-6)
    # it is not the first-order gradient (the second-order terms matter here)
    fo, _ = learner.query_gradients(result.adapted, batch.query_x, batch.query_y)
    assert not torch.allclose(fo["0.weight"].sum(0), result.grads["0.weight"], rtol=1e-3)


def test_task_chunks_do_not_change_the_meta_gradient(tiny):
    _, phi, batch, learner = tiny
    whole = unrolled_meta_gradient(learner, phi, batch, STEPS, LR)
    chunked = unrolled_meta_gradient(learner, phi, batch, STEPS, LR, task_chunk=2)
    for k in phi:
        torch.testing.assert_close(chunked.grads[k], whole.grads[k])
        torch.testing.assert_close(chunked.adapted[k], whole.adapted[k])
    assert chunked.support_losses.shape == (STEPS, TASKS)


def test_metasgd_alpha_gradient_matches_an_explicit_unrolled_loop(tiny):
    model, phi, batch, learner = tiny
    rates = {k: torch.rand_like(v) * 0.2 for k, v in phi.items()}
    result = unrolled_meta_gradient(learner, phi, batch, STEPS, LR, rates=rates)
    _, expected = unrolled_by_hand(model, phi, batch, rates)
    names = [*phi, *(f"rate:{k}" for k in rates)]
    assert list(result.grads) == names
    for k, want in zip(names, expected, strict=True):
        torch.testing.assert_close(result.grads[k], want, rtol=1e-6, atol=1e-8, msg=k)


def test_conjugate_gradient_solves_each_task_exactly():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    a = m @ m.transpose(1, 2) + torch.eye(4, dtype=torch.float64)
    b = {"w": torch.randn(2, 4, generator=g, dtype=torch.float64)}
    x = conjugate_gradient(lambda v: {"w": (a @ v["w"].unsqueeze(-1)).squeeze(-1)}, b, 4)
    torch.testing.assert_close(x["w"], torch.linalg.solve(a, b["w"]))


def test_imaml_is_the_exact_implicit_gradient_on_a_quadratic():
    """Linear regression (a quadratic loss): theta*(phi) has a closed form, so the exact
    meta-gradient d L_query(theta*(phi)) / d phi = (I + H/lambda)^-1 grad L_query(theta*) is
    available through torch.linalg.solve; iMAML with enough inner and CG steps must match."""
    torch.manual_seed(0)
    dim, lam = 3, 2.0
    model = nn.Linear(dim, 1, bias=False).double()
    phi = {"weight": torch.randn(1, dim, dtype=torch.float64)}
    g = torch.Generator().manual_seed(3)
    sx = torch.randn(TASKS, 8, dim, generator=g, dtype=torch.float64)
    qx = torch.randn(TASKS, 6, dim, generator=g, dtype=torch.float64)
    batch = TaskBatch(sx, torch.randn(TASKS, 8, 1, generator=g, dtype=torch.float64), qx,
                      torch.randn(TASKS, 6, 1, generator=g, dtype=torch.float64))  # fmt: skip
    learner = SGDLearner(model, "mse", InnerOptimizer(OptimizerName.SGD, 0.1))
    result = implicit_meta_gradient(learner, phi, batch, steps=400, lam=lam, cg_steps=dim)

    leaf = phi["weight"].clone().requires_grad_()
    total = 0.0
    for i in range(TASKS):
        x, y = batch.support_x[i], batch.support_y[i]
        h = 2 * x.T @ x / x.shape[0]  # Hessian of the mean squared error
        theta = torch.linalg.solve(
            h + lam * torch.eye(dim), 2 * x.T @ y / x.shape[0] + lam * leaf.T
        )
        total = total + ((batch.query_x[i] @ theta - batch.query_y[i]) ** 2).mean()
    (exact,) = torch.autograd.grad(total, [leaf])
    torch.testing.assert_close(result.grads["weight"], exact, rtol=1e-6, atol=1e-9)


def _flat(params, names):
    return torch.cat([params[k].reshape(-1) for k in names])


def test_imaml_matches_finite_differences_of_the_exact_inner_solution_on_a_tanh_mlp(tiny):
    """The ground truth without the implicit function theorem: theta*(phi), the minimizer of
    L_support + (lambda/2)||theta - phi||^2 near phi, solved to machine precision by Newton's
    method in plain autograd, and central finite differences of sum_i L_query_i(theta_i*(phi))
    for every coordinate of phi. A tanh network's support Hessian is indefinite; lambda = 2
    keeps lambda I + H positive definite at every theta_i* (checked), so theta_i* is a strict
    local minimum and the derivative exists. The implicit gradient must be d/dphi of that: a
    wrong sign, lambda scaling, the Hessian at the wrong point or of the wrong loss (the
    proximal term counted twice, the query loss) all fail here."""
    model, phi, batch, _ = tiny
    lam = 2.0
    names = list(phi)
    shapes = [phi[k].shape for k in names]
    sizes = [phi[k].numel() for k in names]

    def unflat(v):
        return {k: t.view(s) for k, t, s in zip(names, v.split(sizes), shapes, strict=True)}

    def mse(v, x, y):
        return ((functional_call(model, unflat(v), (x,)) - y) ** 2).mean()

    learner = SGDLearner(model, "mse", InnerOptimizer(OptimizerName.SGD, 0.1))
    result = implicit_meta_gradient(learner, phi, batch, steps=500, lam=lam, cg_steps=sum(sizes))
    starts = [_flat({k: v[i] for k, v in result.adapted.items()}, names) for i in range(TASKS)]

    def theta_star(phi_v, i, check=False):
        def prox(v):
            proximal = lam / 2 * (v - phi_v).square().sum()
            return mse(v, batch.support_x[i], batch.support_y[i]) + proximal

        theta = starts[i].clone()
        for _ in range(4):  # Newton from a point near the minimizer: quadratic convergence
            theta = theta - torch.linalg.solve(
                torch.func.hessian(prox)(theta), torch.func.grad(prox)(theta)
            )
        if check:
            assert torch.func.grad(prox)(theta).abs().max() < 1e-12
            assert torch.linalg.eigvalsh(torch.func.hessian(prox)(theta))[0] > 0.1  # strict min
        return theta

    def outer(phi_v):
        return sum(
            mse(theta_star(phi_v, i), batch.query_x[i], batch.query_y[i]) for i in range(TASKS)
        )

    phi_v, eps = _flat(phi, names), 1e-6
    for i in range(TASKS):
        theta_star(phi_v, i, check=True)
    numeric = torch.stack(
        [
            (outer(phi_v + eps * e) - outer(phi_v - eps * e)) / (2 * eps)
            for e in torch.eye(len(phi_v), dtype=phi_v.dtype)
        ]
    )
    got = _flat(result.grads, names)
    torch.testing.assert_close(got, numeric, rtol=1e-5, atol=1e-7)
    # the Hessian term matters: the first-order gradient grad L_query(theta*) is far from it
    fo, _ = learner.query_gradients(result.adapted, batch.query_x, batch.query_y)
    first_order = _flat({k: v.sum(0) for k, v in fo.items()}, names)
    assert (first_order - numeric).norm() > 0.1 * numeric.norm()
