"""metarl's algorithms inside your own training loop: adapt any `nn.Module` to a batch of
tasks, and get MAML's, Meta-SGD's or Reptile's meta-gradient for your own optimizer.

What learn2learn's `MAML(model).clone().adapt(loss)` gives one task at a time, these
functions give for a whole meta-batch at once: every task's parameters carry a leading task
axis, the model runs through `torch.func.functional_call` under `torch.func.vmap`, and one
backward of the summed per-task losses yields every task's gradient. They are thin wrappers
over the functions `metarl train` itself runs (`metarl.learners.inner_loop.InnerLoop`,
`metarl.learners.second_order.unroll` and `unrolled_meta_gradient`,
`metarl.algorithms.reptile_delta`), so they give the numbers metarl's learners give
(`tests/test_functional.py`).

Data comes stacked on a task axis: `support_x` is `[tasks, support, *features]`,
`support_y` is `[tasks, support, ...]`, and a `TaskBatch(support_x, support_y, query_x,
query_y)` adds the query set. A loss is any function of *one task's* outputs and targets that
returns a scalar (`torch.nn.functional.cross_entropy`, `mse_loss`, ...), or the name of one
of metarl's (`"mse"`, `"cross_entropy"`).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> import metarl.functional as mf
    >>> model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    >>> opt = torch.optim.Adam(model.parameters(), 1e-3)
    >>> x, y = torch.randn(4, 20, 1), torch.randn(4, 20, 1)  # 4 tasks of 10 + 10 points
    >>> batch = mf.TaskBatch(x[:, :10], y[:, :10], x[:, 10:], y[:, 10:])
    >>> result = mf.maml(model, batch, loss="mse", steps=1, lr=0.01)
    >>> result.apply_to(model)  # the mean meta-gradient into each parameter's .grad
    >>> opt.step()
    >>> result.query_losses.shape
    torch.Size([4])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metarl.algorithms import reptile_delta
from metarl.config import OptimizerName
from metarl.errors import UserError
from metarl.learners.inner_loop import InnerLoop
from metarl.learners.second_order import unroll, unrolled_meta_gradient
from metarl.losses import LOSSES
from metarl.optim import InnerOptimizer
from metarl.protocol import Params, TaskBatch

Loss = Callable[[Tensor, Tensor], Tensor]
"""One task's loss: (outputs, targets) -> a scalar."""


class ArgumentError(UserError, ValueError):
    """A bad argument: the message names the value and what would be accepted."""


@dataclass
class MetaGradients:
    """A meta-batch's meta-gradient, ready for the user's optimizer, and what adapting did.

    The gradients are *means* over the tasks (learn2learn's example divides its summed
    gradients by the meta-batch size the same way), keyed like `parameters(model)`.
    """

    grads: Params
    """Mean over the tasks of each parameter's meta-gradient (Reptile: phi - mean_i W_i)."""
    rate_grads: Params
    """Meta-SGD: mean over the tasks of d L_query / d alpha, keyed like `grads`; else empty."""
    adapted: Params
    """W_i, each task's adapted parameters (detached), stacked on the task axis."""
    support_losses: Tensor
    """Support loss before each inner step, `[steps, tasks]`."""
    query_losses: Tensor | None
    """Query loss at W_i, `[tasks]` (None for Reptile, which uses no query set)."""

    def apply_to(
        self, model: nn.Module, rates: dict[str, Tensor] | None = None, *, accumulate: bool = False
    ) -> None:
        """Write the meta-gradient into `.grad` of `model`'s parameters (and of Meta-SGD's
        `rates`), replacing what is there, or adding to it with `accumulate=True`; then
        `optimizer.step()` takes the outer step.

        Args:
            model: the model the meta-gradient was taken for (its parameters' names).
            rates: Meta-SGD's learned rates (`learned_rates`): required for `meta_sgd`'s
                result, which carries their gradients too.
            accumulate: add to the `.grad` already there (gradient accumulation over
                several meta-batches) instead of replacing it.

        Raises:
            ArgumentError: Meta-SGD gradients without the `rates` to write them into.
        """
        targets = dict(_trainable(model))
        pairs = [(targets[k], g) for k, g in self.grads.items()]
        if self.rate_grads:
            if rates is None:
                raise ArgumentError("rates = None: these are Meta-SGD gradients; pass the rates")
            pairs += [(rates[k], g) for k, g in self.rate_grads.items()]
        for p, g in pairs:
            g = g.detach().to(p.dtype)
            if accumulate and p.grad is not None:
                p.grad.add_(g)
            else:
                p.grad = g.clone()


# -- building blocks -------------------------------------------------------------------------
def parameters(model: nn.Module) -> Params:
    """phi: the model's trainable parameters by name (the live tensors, not copies).

    Args:
        model: any `nn.Module`.

    Returns:
        `{name: parameter}` for the parameters that require grad, as
        `model.named_parameters()` names them.

    Examples:
        >>> from torch import nn
        >>> import metarl.functional as mf
        >>> sorted(mf.parameters(nn.Linear(3, 2)))
        ['bias', 'weight']
    """
    return dict(_trainable(model))


def learned_rates(model: nn.Module, init: float) -> dict[str, nn.Parameter]:
    """Meta-SGD's alpha: one learned inner learning rate per parameter entry, all `init`,
    keyed like `parameters(model)`. Hand them to your optimizer with the model's parameters
    (`[*model.parameters(), *rates.values()]`) and to `meta_sgd`.

    Args:
        model: the model whose parameters get a rate each.
        init: every rate's initial value (> 0; Meta-SGD starts alpha at the inner lr).

    Returns:
        `{name: alpha}`, each of its parameter's shape.

    Raises:
        ArgumentError: `init` not a finite number > 0, or BatchNorm with running statistics.

    Examples:
        >>> from torch import nn
        >>> import metarl.functional as mf
        >>> rates = mf.learned_rates(nn.Linear(3, 2), init=0.01)
        >>> rates["weight"].shape, rates["weight"].requires_grad
        (torch.Size([2, 3]), True)
    """
    _check_positive("init", init)
    _check_model(model)
    return {k: nn.Parameter(torch.full_like(p.detach(), init)) for k, p in _trainable(model)}


def adapt(
    model: nn.Module,
    support_x: Tensor,
    support_y: Tensor,
    *,
    loss: Loss | str,
    steps: int,
    lr: float | None = None,
    rates: dict[str, Tensor] | None = None,
    first_order: bool = False,
    inner_batch: int = 0,
    params: Params | None = None,
) -> Params:
    """`steps` SGD steps from the model's parameters on each task's support set, all tasks
    at once: the adapted parameters W_i, stacked on a task axis (learn2learn's
    `clone()` then `adapt()` per task, for the whole meta-batch).

    The result stays differentiable with respect to the model's parameters (and `rates`):
    a query loss on it (`task_losses`) backpropagated into `.grad` gives second-order MAML's
    gradient, or first-order MAML's with `first_order=True` (the steps' gradients are then
    treated as constants). Under `torch.no_grad()` no graph is kept (evaluation).

    Args:
        model: any `nn.Module`; BatchNorm must keep no running statistics in training mode
            (`track_running_stats=False`), since tasks adapted side by side cannot share them.
        support_x, support_y: `[tasks, support, ...]`.
        loss: one task's loss, `(outputs, targets) -> scalar`, or "mse" / "cross_entropy".
        steps: inner SGD steps (>= 1).
        lr: the inner learning rate (> 0); not used when `rates` are given.
        rates: Meta-SGD's per-entry learning rates (`learned_rates`), replacing `lr`.
        first_order: drop the second-order terms (first-order MAML).
        inner_batch: support examples per step, cycling through the support set (0 = all).
        params: start from these parameters instead of the model's (keyed like them).

    Returns:
        Each task's adapted parameters, `{name: [tasks, *shape]}`.

    Raises:
        ArgumentError: a bad argument (steps < 1, lr not > 0, an unknown loss name,
            support sets of mismatched sizes, BatchNorm with running statistics), named
            in one line before anything runs.

    Examples:
        Second-order MAML by hand: adapt 4 tasks by one step, then the query loss at the
        adapted weights, backpropagated through the step into the model's `.grad`:

        >>> import torch
        >>> from torch import nn
        >>> import metarl.functional as mf
        >>> model = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
        >>> sx, sy, qx, qy = (torch.randn(4, 10, 1) for _ in range(4))
        >>> adapted = mf.adapt(model, sx, sy, loss="mse", steps=1, lr=0.01)
        >>> adapted["0.weight"].shape  # one copy of the weights per task
        torch.Size([4, 16, 1])
        >>> mf.predict(model, adapted, qx).shape
        torch.Size([4, 10, 1])
        >>> mf.task_losses(model, adapted, qx, qy, loss="mse").mean().backward()
        >>> model[0].weight.grad.shape
        torch.Size([16, 1])
    """
    loop, phi = _prepare(model, loss, steps, lr, rates, inner_batch, params)
    support_x, support_y = _check_pair("support", support_x, support_y)
    lr = 0.0 if lr is None else lr  # the rates step instead
    if not torch.is_grad_enabled():
        return loop.adapt(phi, _support_only(support_x, support_y), steps)
    # a tensor that needs no grad (a detached `params`) still gets a graph to its copy, so
    # the inner steps can be differentiated; the result then depends on it as on a constant
    phi = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in phi.items()}
    with torch.enable_grad():
        adapted, _ = unroll(loop, phi, support_x, support_y, steps, lr, rates, first_order)
    return adapted


def predict(model: nn.Module, params: Params, x: Tensor) -> Tensor:
    """Each task's model on its own inputs: `x` is `[tasks, examples, ...]`, `params` is
    stacked (`adapt`'s result); the outputs are `[tasks, examples, ...]`, differentiable.

    Args:
        model: the model `params` belong to.
        params: each task's parameters, `{name: [tasks, *shape]}`.
        x: each task's inputs, `[tasks, examples, *features]`.

    Returns:
        Each task's outputs at its own parameters, `[tasks, examples, ...]`.
    """
    loop = InnerLoop(model, "mse", InnerOptimizer(OptimizerName.SGD, 1.0))
    return loop.outputs(params, x)


def task_losses(
    model: nn.Module, params: Params, x: Tensor, y: Tensor, *, loss: Loss | str
) -> Tensor:
    """Each task's loss at its own parameters, `[tasks]`, differentiable (e.g. the query loss
    after `adapt`: `task_losses(...).mean().backward()` gives the MAML meta-gradient).

    Args:
        model: the model `params` belong to.
        params: each task's parameters, `{name: [tasks, *shape]}`.
        x, y: each task's inputs and targets, `[tasks, examples, ...]`.
        loss: one task's loss, `(outputs, targets) -> scalar`, or "mse" / "cross_entropy".

    Returns:
        The loss of each task, `[tasks]`.

    Raises:
        ArgumentError: `x` and `y` of different numbers of tasks, or an unknown loss name.
    """
    x, y = _check_pair("x/y", x, y)
    loop = InnerLoop(model, _check_loss(loss), InnerOptimizer(OptimizerName.SGD, 1.0))
    return loop.task_losses(params, x, y)


# -- meta-gradients ---------------------------------------------------------------------------
def maml(
    model: nn.Module,
    batch: TaskBatch | Sequence[Tensor],
    *,
    loss: Loss | str,
    steps: int,
    lr: float,
    first_order: bool = False,
    inner_batch: int = 0,
    task_chunk: int = 0,
) -> MetaGradients:
    """MAML's meta-gradient (Finn et al. 2017): the mean over tasks of d L_query(W_i) /
    d phi, with W_i `steps` SGD steps from phi on task i's support set.

    Second order by default (the inner steps are differentiated through); `first_order=True`
    is FOMAML, the query-loss gradient at W_i. `task_chunk` tasks keep their graph at once
    (0 = all), bounding memory without changing the result. The model is not changed: write
    the result into `.grad` with `apply_to` and step your optimizer.

    Args:
        model: any `nn.Module` (BatchNorm without running statistics, as for `adapt`).
        batch: `TaskBatch(support_x, support_y, query_x, query_y)`, each `[tasks, n, ...]`.
        loss: one task's loss, `(outputs, targets) -> scalar`, or "mse" / "cross_entropy".
        steps: inner SGD steps (>= 1).
        lr: the inner learning rate (> 0).
        first_order: FOMAML instead of second-order MAML.
        inner_batch: support examples per step, cycling through the support set (0 = all).
        task_chunk: tasks differentiated at once (0 = all).

    Returns:
        `MetaGradients`: `grads` (the mean meta-gradient), the adapted weights, the support
        and query losses.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> import metarl.functional as mf
        >>> model = nn.Linear(3, 2)
        >>> x, y = torch.randn(5, 8, 3), torch.randint(0, 2, (5, 8))
        >>> batch = mf.TaskBatch(x[:, :4], y[:, :4], x[:, 4:], y[:, 4:])
        >>> result = mf.maml(model, batch, loss="cross_entropy", steps=2, lr=0.1)
        >>> sorted(result.grads), result.adapted["weight"].shape
        (['bias', 'weight'], torch.Size([5, 2, 3]))
    """
    b = _check_batch(batch)
    loop, phi = _prepare(model, loss, steps, lr, None, inner_batch, None, task_chunk)
    phi = {k: v.detach() for k, v in phi.items()}
    n = b.num_tasks
    if first_order:
        adapted, support = loop.adapt_with_losses(phi, b, steps)
        grads, query = loop.query_gradients(adapted, b.query_x, b.query_y)
        mean = {k: g.sum(0) / n for k, g in grads.items()}
        return MetaGradients(mean, {}, adapted, support, query)
    result = unrolled_meta_gradient(loop, phi, b, steps, lr, None, task_chunk)
    mean = {k: g / n for k, g in result.grads.items()}
    return MetaGradients(mean, {}, result.adapted, result.support_losses, result.query_losses)


def meta_sgd(
    model: nn.Module,
    rates: dict[str, Tensor],
    batch: TaskBatch | Sequence[Tensor],
    *,
    loss: Loss | str,
    steps: int,
    inner_batch: int = 0,
    task_chunk: int = 0,
) -> MetaGradients:
    """Meta-SGD's meta-gradient (Li et al. 2017): MAML with W <- W - alpha * grad, alpha the
    learned per-entry `rates` (`learned_rates`), differentiated with respect to both phi
    (`grads`) and alpha (`rate_grads`); `apply_to(model, rates)` writes both.

    Args:
        model: any `nn.Module` (BatchNorm without running statistics, as for `adapt`).
        rates: alpha, keyed and shaped like `parameters(model)` (`learned_rates`).
        batch: `TaskBatch(support_x, support_y, query_x, query_y)`, each `[tasks, n, ...]`.
        loss: one task's loss, `(outputs, targets) -> scalar`, or "mse" / "cross_entropy".
        steps: inner steps (>= 1).
        inner_batch: support examples per step, cycling through the support set (0 = all).
        task_chunk: tasks differentiated at once (0 = all).

    Returns:
        `MetaGradients` with `grads` (d/d phi) and `rate_grads` (d/d alpha), means over tasks.
    """
    b = _check_batch(batch)
    loop, phi = _prepare(model, loss, steps, 0.0, rates, inner_batch, None, task_chunk)
    phi = {k: v.detach() for k, v in phi.items()}
    alpha = {k: v.detach() for k, v in rates.items()}
    result = unrolled_meta_gradient(loop, phi, b, steps, 0.0, alpha, task_chunk)
    n = b.num_tasks
    grads = {k: result.grads[k] / n for k in phi}
    rate_grads = {k: result.grads[f"rate:{k}"] / n for k in phi}
    return MetaGradients(
        grads, rate_grads, result.adapted, result.support_losses, result.query_losses
    )


def reptile(
    model: nn.Module,
    support_x: Tensor,
    support_y: Tensor,
    *,
    loss: Loss | str,
    steps: int,
    lr: float,
    optimizer: str = "sgd",
    beta1: float = 0.9,
    inner_batch: int = 0,
) -> MetaGradients:
    """Reptile's meta-gradient (Nichol et al. 2018): phi - mean_i W_i, W_i `steps` steps of
    SGD or Adam (fresh moments per task, `beta1` its first) from phi on task i's support set.
    Plain SGD with learning rate epsilon on it is the paper's interpolation
    phi <- phi + epsilon (mean_i W_i - phi); Adam on it is the paper's "Adam on phi - W".

    Args:
        model: any `nn.Module` (BatchNorm without running statistics, as for `adapt`).
        support_x, support_y: `[tasks, support, ...]`; Reptile uses no query set.
        loss: one task's loss, `(outputs, targets) -> scalar`, or "mse" / "cross_entropy".
        steps: inner steps (>= 1).
        lr: the inner learning rate (> 0).
        optimizer: "sgd" or "adam" inside.
        beta1: Adam's first-moment decay, in [0, 1) (the Reptile paper's Omniglot: 0).
        inner_batch: support examples per step, cycling through the support set (0 = all).

    Returns:
        `MetaGradients` whose `grads` are phi - mean_i W_i (`query_losses` is None).
    """
    names = [o.value for o in OptimizerName]
    if optimizer not in names:
        raise ArgumentError(f"optimizer = {optimizer!r}: expected one of {', '.join(names)}")
    if not 0.0 <= beta1 < 1.0:
        raise ArgumentError(f"beta1 = {beta1!r}: expected a number in [0, 1)")
    loop, phi = _prepare(model, loss, steps, lr, None, inner_batch, None)
    support_x, support_y = _check_pair("support", support_x, support_y)
    loop.optimizer = InnerOptimizer(OptimizerName(optimizer), lr, beta1=beta1)
    phi = {k: v.detach() for k, v in phi.items()}
    adapted, support = loop.adapt_with_losses(phi, _support_only(support_x, support_y), steps)
    n = support_x.shape[0]
    grads = {k: d / n for k, d in reptile_delta(phi, adapted).items()}
    return MetaGradients(grads, {}, adapted, support, None)


def _support_only(x: Tensor, y: Tensor) -> TaskBatch:
    """A batch of support sets with empty query sets (the inner loop reads only support)."""
    return TaskBatch(x, y, x[:, :0], y[:, :0])


# -- checks -----------------------------------------------------------------------------------
def _trainable(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [(k, p) for k, p in model.named_parameters() if p.requires_grad]


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module):
        raise ArgumentError(f"model = {type(model).__name__}: expected a torch.nn.Module")
    if not _trainable(model):
        raise ArgumentError("model: it has no parameters that require grad; nothing to adapt")
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
            raise ArgumentError(
                f"model.{name}: BatchNorm with running statistics in training mode; tasks "
                "adapted side by side cannot share them: use track_running_stats=False"
            )


def _check_positive(name: str, value: float | None) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if value is None or not ok or not math.isfinite(value) or value <= 0:
        raise ArgumentError(f"{name} = {value!r}: expected a finite number > 0")


def _check_count(name: str, value: int, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ArgumentError(f"{name} = {value!r}: expected an integer >= {least}")


def _check_loss(loss: Loss | str) -> Loss | str:
    if isinstance(loss, str) and loss in LOSSES:
        return loss
    if not isinstance(loss, str) and callable(loss):
        return loss
    raise ArgumentError(
        f"loss = {loss!r}: expected a function (outputs, targets) -> scalar, or one of "
        f"{', '.join(repr(k) for k in LOSSES)}"
    )


def _check_pair(name: str, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    for label, t in ((f"{name} inputs", x), (f"{name} targets", y)):
        if not isinstance(t, Tensor) or t.dim() < 2:
            shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ArgumentError(
                f"{label}: {shape}: expected a tensor [tasks, examples, ...] (a task axis first)"
            )
    if x.shape[:2] != y.shape[:2]:
        raise ArgumentError(
            f"{name}: inputs {tuple(x.shape)} and targets {tuple(y.shape)}: expected the same "
            "[tasks, examples] in front"
        )
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ArgumentError(f"{name}: {tuple(x.shape)}: expected at least one task and example")
    return x, y


def _check_batch(batch: TaskBatch | Sequence[Tensor]) -> TaskBatch:
    if isinstance(batch, Tensor) or len(batch) != 4:
        raise ArgumentError(
            "batch: expected TaskBatch(support_x, support_y, query_x, query_y), four tensors"
        )
    b = TaskBatch(*batch)
    _check_pair("support", b.support_x, b.support_y)
    _check_pair("query", b.query_x, b.query_y)
    if b.query_x.shape[0] != b.num_tasks:
        raise ArgumentError(
            f"batch: {b.num_tasks} support tasks and {b.query_x.shape[0]} query tasks: expected "
            "the same number"
        )
    return b


def _check_like(name: str, given: Params, phi: Params) -> None:
    if set(given) != set(phi):
        missing, extra = sorted(set(phi) - set(given)), sorted(set(given) - set(phi))
        raise ArgumentError(
            f"{name}: missing {missing}, unexpected {extra}: expected the keys of "
            "metarl.functional.parameters(model)"
        )
    for k, v in given.items():
        if not isinstance(v, Tensor) or v.shape != phi[k].shape:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ArgumentError(f"{name}[{k!r}]: shape {shape}: expected {tuple(phi[k].shape)}")


def _prepare(
    model: nn.Module,
    loss: Loss | str,
    steps: int,
    lr: float | None,
    rates: dict[str, Tensor] | None,
    inner_batch: int,
    params: Params | None,
    task_chunk: int = 0,
) -> tuple[InnerLoop, Params]:
    """Check the common arguments; the inner loop metarl's learners use, and phi."""
    _check_model(model)
    loss = _check_loss(loss)
    _check_count("steps", steps, 1)
    _check_count("inner_batch", inner_batch, 0)
    _check_count("task_chunk", task_chunk, 0)
    phi = parameters(model)
    if rates is None:
        _check_positive("lr", lr)
    else:
        _check_like("rates", rates, phi)
    if params is not None:
        _check_like("params", params, phi)
        phi = dict(params)
    step = 1.0 if rates is not None or lr is None else lr
    optimizer = InnerOptimizer(OptimizerName.SGD, step, rates=rates)
    return InnerLoop(model, loss, optimizer, inner_batch=inner_batch), phi


__all__ = [
    "ArgumentError",
    "Loss",
    "MetaGradients",
    "TaskBatch",
    "adapt",
    "learned_rates",
    "maml",
    "meta_sgd",
    "parameters",
    "predict",
    "reptile",
    "task_losses",
]
