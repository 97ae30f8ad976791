"""Meta-gradients that look through the inner loop: MAML, Meta-SGD and iMAML, for all tasks at once.

All three work on the `InnerLoop`'s vmapped per-task loss (`task_losses`), so a meta-batch is
one batched computation, and return the *sum over tasks* of the per-task meta-gradients (the
trainer sums over ranks and divides by the meta-batch, as for Reptile and FOMAML).

- MAML (Finn et al. 2017): W_i(phi) is `steps` SGD steps from phi on task i's support set; the
  meta-gradient is d L_query_i(W_i(phi)) / d phi, obtained by keeping the inner steps'
  graph (`create_graph=True`) and differentiating the query loss back to phi. Because the tasks
  share no weights, one backward of the summed query losses to the (unstacked) phi gives the
  sum of the per-task meta-gradients.
- Meta-SGD (Li et al. 2017): the same unrolled loop with W <- W - alpha * grad, alpha a tensor
  of each parameter's shape, differentiated with respect to phi and alpha.
- iMAML (Rajeswaran et al. 2019): the inner loop minimizes L_support(theta) + (lambda/2)
  ||theta - phi||^2 without keeping a graph; the meta-gradient is (I + H/lambda)^-1 g, with
  H the support loss's Hessian and g the query-loss gradient at theta, solved per task by
  conjugate gradient on Hessian-vector products (double backward through the vmapped loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from metarl.cg import task_dot, truncated_conjugate_gradient
from metarl.learners.inner_loop import InnerLoop, stack
from metarl.protocol import Params, TaskBatch


@dataclass
class MetaGradient:
    """A meta-batch's summed meta-gradient and what the inner loop reached."""

    grads: Params
    """Sum over tasks of d L_query_i / d (each meta-parameter)."""
    adapted: Params
    """W_i (detached), stacked on the task axis."""
    support_losses: Tensor
    """Support loss before each inner step, `[steps, tasks]`."""
    query_losses: Tensor
    """Query loss at W_i, `[tasks]`."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Diagnostics logged with the iteration's metrics (iMAML: `imaml_residual`,
    `imaml_indefinite`, see `implicit_meta_gradient`)."""


def _chunks(batch: TaskBatch, size: int) -> list[TaskBatch]:
    n = batch.num_tasks
    size = n if size < 1 else size
    return [batch.take(slice(i, i + size)) for i in range(0, n, size)]


def unroll(
    learner: InnerLoop,
    phi: Params,
    x: Tensor,
    y: Tensor,
    steps: int,
    lr: float,
    rates: Params | None = None,
    first_order: bool = False,
) -> tuple[Params, list[Tensor]]:
    """`steps` SGD steps from phi on every task's support set `x, y` at once (W <- W - lr *
    grad, or W <- W - alpha * grad with Meta-SGD's `rates`), keeping the graph back to phi
    and the rates: the adapted parameters (stacked) and each step's detached support losses.

    Second order (default), each step's gradient is itself differentiated
    (`create_graph=True`), so d W / d phi holds the Hessian terms MAML needs; `first_order`
    detaches the steps' gradients, so d W / d phi is the identity and a query loss
    differentiated back to phi gives first-order MAML's gradient. Call it with grad mode on.

    Args:
        learner: the inner loop whose vmapped per-task loss is stepped.
        phi: the meta-parameters, the model's shapes (requiring grad).
        x, y: the support sets, `[tasks, examples, ...]`.
        steps: SGD steps.
        lr: the step size (ignored where `rates` is given).
        rates: Meta-SGD's alpha, keyed like phi.
        first_order: drop the Hessian terms.

    Returns:
        W_i stacked, still attached to phi (and `rates`), and the support loss before each
        step, `[tasks]` each.
    """
    n = x.shape[0]
    params = {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in phi.items()}
    losses = []
    for bx, by in learner.minibatches(x, y, steps):
        loss = learner.task_losses(params, bx, by)
        losses.append(loss.detach())
        grads = torch.autograd.grad(loss.sum(), list(params.values()), create_graph=not first_order)
        # one fused op for the scalar rate (as `InnerOptimizer`'s SGD step): the stacked
        # weights are the largest tensors here, and a separate lr * g is one more pass
        params = {
            k: p - rates[k] * g if rates else torch.add(p, g, alpha=-lr)
            for (k, p), g in zip(params.items(), grads, strict=True)
        }
    return params, losses


def unrolled_meta_gradient(
    learner: InnerLoop,
    phi: Params,
    batch: TaskBatch,
    steps: int,
    lr: float,
    rates: Params | None = None,
    task_chunk: int = 0,
) -> MetaGradient:
    """MAML's meta-gradient (Meta-SGD's when `rates`, the per-parameter alpha keyed like phi,
    is given: then `grads` also holds d/d alpha under the keys `rate:<name>`).

    `task_chunk` tasks are differentiated at a time (0 = all), which bounds the graph kept in
    memory to that many tasks; the sums are accumulated, so the result does not depend on it.

    Args:
        learner: the inner loop (its loss and minibatching; the steps are plain SGD).
        phi: the meta-parameters, requiring grad.
        batch: the tasks' support and query sets.
        steps: inner steps.
        lr: the inner step size.
        rates: Meta-SGD's learned per-parameter rates, keyed like phi.
        task_chunk: tasks differentiated at a time (0: all at once).

    Returns:
        The summed meta-gradient, W_i (detached), the support losses `[steps, tasks]` and
        the query losses `[tasks]`.

    Examples:
        MAML's meta-gradient of three tasks of the sine recipe's network, the same (up to
        float32 rounding) whether the graph holds all of them or one at a time:

        >>> import numpy as np, torch
        >>> from metarl.learners import build_meta_learner
        >>> from metarl.learners.second_order import unrolled_meta_gradient
        >>> from metarl.registry import resolve_recipe
        >>> learner = build_meta_learner(resolve_recipe("sine"), torch.device("cpu"))
        >>> tasks = learner.dist.sample(3, np.random.default_rng(0))
        >>> batch = learner.dist.episodes(tasks, np.random.default_rng(1), support=10, query=10)
        >>> loop, phi = learner.learner, dict(learner.model.named_parameters())
        >>> whole = unrolled_meta_gradient(loop, phi, batch, steps=2, lr=0.02)
        >>> each = unrolled_meta_gradient(loop, phi, batch, steps=2, lr=0.02, task_chunk=1)
        >>> whole.support_losses.shape, whole.query_losses.shape
        (torch.Size([2, 3]), torch.Size([3]))
        >>> all(torch.allclose(whole.grads[k], each.grads[k], atol=1e-5) for k in phi)
        True
    """
    leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
    rate_leaves = {k: v.detach().requires_grad_() for k, v in (rates or {}).items()}
    inputs = [*leaves.values(), *rate_leaves.values()]
    names = [*leaves, *(f"rate:{k}" for k in rate_leaves)]
    total = [torch.zeros_like(v) for v in inputs]
    adapted_parts: list[Params] = []
    support: list[Tensor] = []
    query: list[Tensor] = []
    for part in _chunks(batch, task_chunk):
        n = part.num_tasks
        with torch.enable_grad():
            params, losses = unroll(
                learner, leaves, part.support_x, part.support_y, steps, lr, rate_leaves or None
            )
            q = learner.task_losses(params, part.query_x, part.query_y)
            for acc, g in zip(total, torch.autograd.grad(q.sum(), inputs), strict=True):
                acc += g
        adapted_parts.append({k: v.detach() for k, v in params.items()})
        support.append(torch.stack(losses) if losses else torch.zeros(0, n))
        query.append(q.detach())
    return MetaGradient(
        dict(zip(names, total, strict=True)),
        {k: torch.cat([a[k] for a in adapted_parts]) for k in phi},
        torch.cat(support, dim=1),
        torch.cat(query),
    )


def implicit_meta_gradient(
    learner: InnerLoop,
    phi: Params,
    batch: TaskBatch,
    steps: int,
    lam: float,
    cg_steps: int,
) -> MetaGradient:
    """iMAML's meta-gradient: the proximal inner loop with the learner's optimizer, then
    (I + H/lambda)^-1 grad L_query(theta) per task by `cg_steps` of conjugate gradient,
    summed over tasks. H is the Hessian of the support loss alone (the proximal term's
    Hessian, lambda I, is the I), at theta.

    That is d L_query(theta*(phi)) / d phi only where its assumptions hold, and the result
    says how far they do, in `metrics` (means over the tasks):

    - `imaml_residual`: ||grad L_support(theta) + lambda (theta - phi)|| divided by
      ||grad L_support(theta)|| + ||lambda (theta - phi)||: 0 where theta is a stationary
      point of the proximal problem, 1 where the inner loop did nothing (theta = phi). The
      inner loop must drive it towards 0 (enough steps at a rate that converges).
    - `imaml_indefinite`: the fraction of tasks where CG met a direction of non-positive
      curvature of I + H/lambda (`truncated_conjugate_gradient`): H has eigenvalues below
      -lambda, the proximal problem has no minimizer near phi, and the implicit gradient is
      not the derivative of the inner loop's result. A larger lambda fixes it (the
      reason tasks/sine-imaml.toml gives for its lambda).

    Args:
        learner: the inner loop; its optimizer steps the proximal problem.
        phi: the meta-parameters.
        batch: the tasks' support and query sets.
        steps: inner steps.
        lam: the proximal strength lambda.
        cg_steps: conjugate-gradient iterations per task.

    Returns:
        The summed implicit meta-gradient, theta (stacked), the support and query losses,
        and the two diagnostics above in `metrics`.
    """
    params = stack(phi, batch.num_tasks)
    state = learner.optimizer.init(params)
    losses = []
    for t, (bx, by) in enumerate(learner.minibatches(batch.support_x, batch.support_y, steps), 1):
        grads, loss = learner.loss_and_grad(params, bx, by)
        losses.append(loss)
        grads = {k: g + lam * (params[k] - phi[k]) for k, g in grads.items()}
        params = learner.optimizer.step(params, grads, state, t)
    g, query_losses = learner.loss_and_grad(params, batch.query_x, batch.query_y)
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        loss = learner.task_losses(leaves, batch.support_x, batch.support_y).sum()
        first = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)

        def apply_a(v: Params) -> Params:
            hv = torch.autograd.grad(
                first, list(leaves.values()), list(v.values()), retain_graph=True
            )
            return {k: v[k] + h / lam for k, h in zip(v, hv, strict=True)}

        x, indefinite = truncated_conjugate_gradient(apply_a, g, cg_steps)
    support_grad = {k: f.detach() for k, f in zip(params, first, strict=True)}
    proximal = {k: lam * (params[k] - phi[k]) for k in params}
    stationarity = {k: support_grad[k] + proximal[k] for k in params}
    scale = task_dot(support_grad, support_grad).sqrt() + task_dot(proximal, proximal).sqrt()
    residual = task_dot(stationarity, stationarity).sqrt() / scale.clamp_min(1e-30)
    return MetaGradient(
        {k: v.sum(0) for k, v in x.items()},
        params,
        torch.stack(losses) if losses else torch.zeros(0, batch.num_tasks),
        query_losses,
        {
            "imaml_residual": float(residual.mean()),
            "imaml_indefinite": float(indefinite.float().mean()),
        },
    )


__all__ = [
    "MetaGradient",
    "implicit_meta_gradient",
    "unroll",
    "unrolled_meta_gradient",
]
