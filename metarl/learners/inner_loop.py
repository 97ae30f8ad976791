"""The inner loop: adapt one set of parameters to a whole meta-batch of tasks at once.

Parameters are dicts of tensors. `phi` (the meta-parameters) has the model's shapes; adapted
parameters are *stacked*: every tensor carries a leading task axis. The per-task loss is the
model run through `torch.func.functional_call`, and `torch.func.vmap(grad_and_value(...))`
evaluates it and its gradient for every task in one batched call -- the tasks share no
weights, so this is the per-task loop without the Python loop.

`SupervisedMetaLearner` (`metarl.learners.supervised`) drives this loop for the outer loop;
tests and benchmarks drive it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metarl.config import SupervisedSettings
from metarl.losses import LOSSES, METRICS
from metarl.optim import AdamCarry, InnerOptimizer, stack
from metarl.protocol import Params, TaskBatch


class InnerLoop:
    """Adapts a model to many supervised tasks at once with SGD or Adam (vmapped): the
    inner loop, whichever optimizer steps it.

    Args:
        model: the network; its parameters are only read for their names and shapes.
        loss: "mse" or "cross_entropy" (`metarl.losses.LOSSES`), or any function of one
            task's outputs and targets that returns a scalar (`metarl.functional` passes the
            user's own).
        optimizer: the inner optimizer.
        inner_batch: support examples per step (cycling through the support set); 0 = all.
        amp: run the network under bfloat16 autocast (outputs are returned as float32).

    Examples:
        Three regression tasks y = a x (a = 1, 2, 3) adapted at once from one linear model;
        every task ends closer to its own slope than phi was:

        >>> import torch
        >>> from torch import nn
        >>> from metarl.learners.inner_loop import InnerLoop, stack
        >>> from metarl.optim import InnerOptimizer
        >>> from metarl.protocol import TaskBatch
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Linear(1, 1)
        >>> loop = InnerLoop(model, "mse", InnerOptimizer("sgd", lr=0.1))
        >>> x = torch.linspace(-1, 1, 10).reshape(1, 10, 1).repeat(3, 1, 1)
        >>> y = x * torch.tensor([1.0, 2.0, 3.0]).reshape(3, 1, 1)
        >>> phi = dict(model.named_parameters())
        >>> params, losses = loop.adapt_with_losses(phi, TaskBatch(x, y, x, y), steps=20)
        >>> params["weight"].shape, losses.shape  # [tasks, ...] and [steps, tasks]
        (torch.Size([3, 1, 1]), torch.Size([20, 3]))
        >>> before = loop.evaluate(stack(phi, 3), x, y, "mse")
        >>> bool((loop.evaluate(params, x, y, "mse") < before).all())
        True
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str | Callable[[Tensor, Tensor], Tensor],
        optimizer: InnerOptimizer,
        inner_batch: int = 0,
        amp: bool = False,
    ) -> None:
        self.model = model
        self.amp = amp
        self.loss_fn = LOSSES[loss] if isinstance(loss, str) else loss
        self.optimizer = optimizer
        self.inner_batch = inner_batch
        self.buffers = {k: b for k, b in model.named_buffers()}
        self.task_losses = vmap(self._task_loss, in_dims=(0, 0, 0))
        self._forward = vmap(self._predict, in_dims=(0, 0))

    # -- one task, unbatched; vmap adds the task axis ------------------------------------
    def _predict(self, params: Params, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = functional_call(self.model, (params, self.buffers), (x,))
        return out.float() if self.amp else out  # float64 models keep their precision

    def _task_loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return self.loss_fn(self._predict(params, x), y)

    def loss_and_grad(self, params: Params, x: Tensor, y: Tensor) -> tuple[Params, Tensor]:
        """Per-task gradients and losses. The tasks share no weights, so the gradient of the
        sum of per-task losses with respect to the stacked parameters *is* the stack of
        per-task gradients; one backward through the vmapped forward is cheaper than
        `vmap(grad(...))`, which re-traces the backward per call (tested equal).

        Args:
            params: each task's parameters, `{name: [tasks, *shape]}`.
            x, y: each task's inputs and targets, `[tasks, examples, ...]`.

        Returns:
            Each task's gradient (keyed and stacked like `params`) and its loss, `[tasks]`.
        """
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            losses = self.task_losses(leaves, x, y)
            grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        return dict(zip(leaves, grads, strict=True)), losses.detach()

    # -- batched API ----------------------------------------------------------------------
    def minibatches(self, x: Tensor, y: Tensor, steps: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The support minibatch of each step: consecutive slices, wrapping around.

        Args:
            x, y: the support sets, `[tasks, support, ...]`.
            steps: the number of steps.

        Yields:
            Each step's `(x, y)`, `inner_batch` examples of every task (all when it is 0).
        """
        size = x.shape[1]
        b = self.inner_batch if 0 < self.inner_batch < size else size
        if b == size:
            for _ in range(steps):
                yield x, y
            return
        offsets = torch.arange(b, device=x.device)
        for t in range(steps):
            idx = (offsets + t * b) % size
            yield x[:, idx], y[:, idx]

    def trajectory(
        self, phi: Params, x: Tensor, y: Tensor, steps: int, carry: AdamCarry | None = None
    ) -> Iterator[tuple[Params, Params | None, Tensor | None]]:
        """Yield `steps + 1` triples `(params_t, grads_t, loss_t)`: the parameters after t steps
        (t = 0 is phi itself), and the gradient and loss there on the minibatch of step t + 1
        (None after the last step). With `carry`, Adam starts from its moments and leaves its
        own there.

        Args:
            phi: the parameters to adapt from, `{name: shape}` (copied for every task).
            x, y: the support sets, `[tasks, support, ...]`.
            steps: inner steps.
            carry: Adam's moments to start from and leave (`train.inner_carry_moments`).

        Yields:
            `(params_t, grads_t, loss_t)` for t = 0 .. steps.
        """
        params = stack(phi, x.shape[0])
        fresh = carry is None or not carry.state
        state = self.optimizer.init(params) if fresh else carry.state  # type: ignore[union-attr]
        start = 0 if carry is None else carry.steps
        for t, (bx, by) in enumerate(self.minibatches(x, y, steps), start=start + 1):
            grads, loss = self.loss_and_grad(params, bx, by)
            yield params, grads, loss
            params = self.optimizer.step(params, grads, state, t)
        if carry is not None:
            carry.state, carry.steps = state, start + steps
        yield params, None, None

    def adapt_steps(
        self, phi: Params, x: Tensor, y: Tensor, steps: int, carry: AdamCarry | None = None
    ) -> Iterator[tuple[Params, Tensor | None]]:
        """`trajectory` without the gradients: `(params_t, loss_t)`.

        Args:
            phi: the parameters to adapt from.
            x, y: the support sets, `[tasks, support, ...]`.
            steps: inner steps.
            carry: Adam's moments to start from and leave.

        Yields:
            `(params_t, loss_t)` for t = 0 .. steps (`loss_t` None after the last step).
        """
        for params, _, loss in self.trajectory(phi, x, y, steps, carry):
            yield params, loss

    def gradient_combination(
        self, phi: Params, batch: TaskBatch, steps: int, which: list[int]
    ) -> tuple[Params, Params, Tensor]:
        """The Reptile blog's gradient combinations: adapt for `steps` and sum, per task, the
        minibatch gradients g_i of the inner steps i in `which` (1-based; g1 is at phi).
        Returns the adapted parameters, that sum (stacked) and the support losses.

        Args:
            phi: the meta-parameters.
            batch: the meta-batch (its support sets are used).
            steps: inner steps.
            which: the 1-based inner steps whose gradients are summed.

        Returns:
            The adapted parameters, the sum of the chosen gradients (both stacked per task) and
            the support losses, `[steps, tasks]`.
        """
        total: Params = {}
        losses = []
        adapted: Params = phi
        with torch.no_grad():
            trajectory = self.trajectory(phi, batch.support_x, batch.support_y, steps)
            for i, (params, grads, loss) in enumerate(trajectory, start=1):
                adapted = params
                if grads is None or loss is None:
                    continue
                losses.append(loss)
                if i in which:
                    total = {k: total[k] + g if total else g for k, g in grads.items()}
        return adapted, total, torch.stack(losses)

    def adapt(self, phi: Params, batch: TaskBatch, steps: int) -> Params:
        """Parameters after `steps` inner steps on each task's support set (stacked).

        Args:
            phi: the starting parameters (the model's shapes).
            batch: the tasks; only the support set is read.
            steps: inner steps.

        Returns:
            W_i, every tensor with a leading task axis.
        """
        params, _ = self.adapt_with_losses(phi, batch, steps)
        return params

    def adapt_with_losses(
        self, phi: Params, batch: TaskBatch, steps: int, carry: AdamCarry | None = None
    ) -> tuple[Params, Tensor]:
        """Adapted parameters and the support loss before each step, `[steps, tasks]`.

        Args:
            phi: the starting parameters.
            batch: the tasks; only the support set is read.
            steps: inner steps.
            carry: Adam's moments carried from one meta-iteration to the next (training
                only; None starts every task with fresh moments).

        Returns:
            W_i stacked, and the support losses (the training log's `loss_before` is their
            first row).
        """
        losses = []
        adapted: Params = phi
        x, y = batch.support_x, batch.support_y
        with torch.no_grad():
            for step_params, loss in self.adapt_steps(phi, x, y, steps, carry):
                adapted = step_params
                if loss is not None:
                    losses.append(loss)
        if not losses:
            return adapted, torch.zeros(0, batch.num_tasks)
        return adapted, torch.stack(losses)

    def outputs(self, params: Params, x: Tensor) -> Tensor:
        """Outputs of each task's model on its inputs `x` (`[tasks, examples, ...]`),
        differentiable with respect to `params` (`predict` without the graph).

        Args:
            params: each task's parameters, `{name: [tasks, *shape]}`.
            x: each task's inputs.

        Returns:
            The outputs, `[tasks, examples, ...]`.
        """
        return self._forward(params, x)

    def predict(self, params: Params, x: Tensor) -> Tensor:
        """Outputs of each task's model on its inputs `x` (`[tasks, examples, ...]`).

        Args:
            params: each task's parameters, `{name: [tasks, *shape]}`.
            x: each task's inputs.

        Returns:
            The outputs, `[tasks, examples, ...]`, with no graph.
        """
        with torch.no_grad():
            return self._forward(params, x)

    def evaluate(self, params: Params, x: Tensor, y: Tensor, metric: str) -> Tensor:
        """Per-task metric, `[tasks]`.

        Args:
            params: stacked parameters, one set per task.
            x, y: each task's inputs and targets, `[tasks, examples, ...]`.
            metric: a name of `metarl.losses.METRICS` ("mse", "accuracy").

        Returns:
            The metric of each task, without a graph.
        """
        fn = METRICS[metric]
        return vmap(fn)(self.predict(params, x), y)

    def predict_each_with_support(
        self, params: Params, support_x: Tensor, query_x: Tensor, group: int = 0
    ) -> Tensor:
        """Non-transductive outputs, `[tasks, query, ...]`: each query example is run in a
        batch made of its task's support set plus that one example, and only its own output is
        kept, so batch statistics (BatchNorm) never mix query examples.

        The `[support + 1]` batches of all query examples of all tasks run in one vmapped call
        (tasks outer, query examples inner), `group` query examples at a time (0 = all) to
        bound memory: the work is `query` times a support-set forward pass.

        Args:
            params: each task's adapted parameters, stacked.
            support_x: the support inputs, `[tasks, support, ...]`.
            query_x: the query inputs, `[tasks, query, ...]`.
            group: query examples per vmapped call (0: all).

        Returns:
            The query outputs, `[tasks, query, ...]`.
        """
        queries = query_x.shape[1]
        group = queries if group < 1 else group

        def one(p: Params, sx: Tensor, q: Tensor) -> Tensor:
            return self._predict(p, torch.cat([sx, q.unsqueeze(0)]))[-1]

        each = vmap(vmap(one, in_dims=(None, None, 0)), in_dims=(0, 0, 0))
        with torch.no_grad():
            parts = [
                each(params, support_x, query_x[:, i : i + group]) for i in range(0, queries, group)
            ]
        return torch.cat(parts, dim=1)

    def evaluate_non_transductive(
        self,
        params: Params,
        support_x: Tensor,
        query_x: Tensor,
        query_y: Tensor,
        metric: str,
        group: int = 0,
    ) -> Tensor:
        """Per-task metric, `[tasks]`, with `predict_each_with_support`'s outputs.

        Args:
            params: each task's adapted parameters, stacked.
            support_x: the support inputs.
            query_x, query_y: the query set.
            metric: the metric's name (`metarl.losses.METRICS`: "accuracy", "mse").
            group: query examples per vmapped call (0: all).

        Returns:
            The metric of each task, `[tasks]`.
        """
        out = self.predict_each_with_support(params, support_x, query_x, group)
        return vmap(METRICS[metric])(out, query_y)

    def query_gradients(self, params: Params, x: Tensor, y: Tensor) -> tuple[Params, Tensor]:
        """Per-task gradient of the query loss at `params` (FOMAML's meta-gradient), and the
        per-task query loss.

        Args:
            params: each task's adapted parameters, stacked.
            x, y: the query sets, `[tasks, query, ...]`.

        Returns:
            Each task's gradient (stacked like `params`) and query loss, `[tasks]`.
        """
        with torch.no_grad():
            return self.loss_and_grad(params, x, y)


def build_inner_loop(
    model: torch.nn.Module,
    loss: str,
    settings: SupervisedSettings,
    lr: float,
    inner_batch: int | None = None,
    rates: Params | None = None,
) -> InnerLoop:
    """The recipe's inner loop on `model` with step size `lr` (for evaluation, the recipe's
    `eval_inner_lr`) and `inner_batch` support examples per step (default: the training
    one); `rates` (Meta-SGD's alpha) replace the learning rate. Needs no task data, so
    `metarl demo` builds the evaluation loop of a shipped model with it.

    Args:
        model: the network the loop adapts (its parameters are only the template: the loop
            steps stacked copies of them).
        loss: the distribution's loss name ("mse" or "cross_entropy").
        settings: the recipe's typed `[train]` keys (inner optimizer, its beta1, minibatch,
            mixed precision).
        lr: the inner step size.
        inner_batch: support examples per inner step (None: `settings.inner_batch`).
        rates: Meta-SGD's learned per-parameter rates, used instead of `lr`.

    Returns:
        The vmapped inner loop.
    """
    batch = settings.inner_batch if inner_batch is None else inner_batch
    optimizer = InnerOptimizer(
        settings.inner_optimizer, lr, beta1=settings.inner_beta1, rates=rates
    )
    return InnerLoop(model, loss, optimizer, inner_batch=batch, amp=settings.amp)


__all__ = ["InnerLoop", "InnerOptimizer", "build_inner_loop", "stack"]
"""`InnerOptimizer` and `stack` live in `metarl.optim`; named here too for callers that import
them with the inner loop."""
