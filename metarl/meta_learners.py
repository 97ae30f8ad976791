"""What the outer loop needs from an inner loop, for every kind of task.

The outer loop (`metarl.train.MetaTrainer`) holds the meta-parameters phi in a model and knows
nothing else: it hands phi and a meta-batch of task descriptions to a `MetaLearner`, gets back
the adapted parameters (stacked on a task axis), and, for FOMAML, asks for the query gradient
at them. A supervised task distribution is adapted by the vmapped `SGDLearner`; an RL family
by the PPO learner (`metarl.rl`). Which one is chosen by the distribution's `kind`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np
import torch

from metarl.config import Recipe
from metarl.curves import Curve
from metarl.errors import UserError
from metarl.learner import InnerOptimizer, Params, SGDLearner
from metarl.protocol import (
    Split,
    SupervisedDistribution,
    Task,
    TaskBatch,
    TaskDistribution,
    task_rng,
)
from metarl.registry import make_distribution
from metarl.validate import check_distribution


@dataclass
class Adaptation:
    """Adapted parameters of a meta-batch, and what a learner needs to finish the step."""

    params: Params
    """Stacked: every tensor has a leading task axis."""
    context: Any = None
    """Learner-specific (the support/query batch, the tasks)."""
    metrics: dict[str, float] = field(default_factory=dict)


class MetaLearner(Protocol):
    """The inner loop as the outer loop sees it: parameters in, parameters out."""

    model: torch.nn.Module
    """Holds phi; its parameters are the ones the outer optimizer steps."""
    dist: TaskDistribution
    """Where the outer loop draws each meta-batch of tasks from."""

    def adapt(
        self, phi: Params, tasks: Sequence[Task], rng: np.random.Generator, slots: slice
    ) -> Adaptation:
        """Adapt phi to the tasks `tasks[slots]` with the recipe's inner loop.

        `tasks` is the whole meta-batch and `rng` the iteration's generator: whatever a learner
        draws from `rng` (data, seeds) it draws for every task, then keeps its slots, so a
        slot's data does not depend on how the meta-batch is split across ranks."""
        ...

    def query_gradient(self, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
        """FOMAML's meta-gradient: the mean over the adapted tasks of the query-loss gradient
        at their adapted parameters (first order), plus metrics."""
        ...

    def curve(self, steps: list[int], n_tasks: int) -> Curve:
        """The evaluation metric on the recipe's held-out tasks after each number of steps."""
        ...


EVAL_BUDGET = 1 << 24
"""Input elements (examples x features) one evaluation call batches at most: 64 MB of float32
inputs and some hundreds of MB of a conv net's activations, whatever the image size (250
Mini-ImageNet tasks of 25 support images at once would need tens of GB)."""

CHUNK_INPUTS = 1 << 17
"""Input elements per task chunk adapted together in evaluation (at most 250 tasks): small
chunks keep a conv net's activations in cache. Omniglot 5-way 1-shot evaluates 33 tasks at a
time (1.8x faster than 250 at a time on a 2-core CPU: `scripts/bench_omniglot.py
--eval-chunks`), sine regression 250."""


class SupervisedMetaLearner:
    """Few-shot supervised tasks: episodes from the distribution, the vmapped SGD/Adam loop."""

    def __init__(self, recipe: Recipe, dist: SupervisedDistribution, device: torch.device):
        self.recipe = recipe
        self.dist = dist
        self.device = device
        if hasattr(dist, "to"):  # optional: distributions that hold data keep it on the device
            dist.to(device)
        torch.manual_seed(recipe.train.seed)
        self.model = dist.build_model(**recipe.model).to(device)
        self.learner = sgd_learner(recipe, self.model, dist)

    def adapt(
        self,
        phi: Params,
        tasks: Sequence[Task],
        rng: np.random.Generator,
        slots: slice = slice(None),
    ) -> Adaptation:
        t = self.recipe.train
        query = t.query_shots if t.algorithm.value == "fomaml" else 0
        batch = self.dist.episodes(tasks, rng, support=t.support_shots, query=query)
        batch = batch.take(slots).to(self.device)
        params, losses = self.learner.adapt_with_losses(phi, batch, t.inner_steps)
        metrics = {}
        if len(losses):
            metrics["loss_before"] = float(losses[0].mean())
            metrics["loss_last_step"] = float(losses[-1].mean())
        return Adaptation(params, batch, metrics)

    def query_gradient(self, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
        batch = adaptation.context
        grads, losses = self.learner.query_gradients(
            adaptation.params, batch.query_x, batch.query_y
        )
        return {k: g.mean(0) for k, g in grads.items()}, {"query_loss": float(losses.mean())}

    def eval_batch(self, n_tasks: int) -> TaskBatch:
        """The recipe's fixed evaluation tasks (a function of eval.seed and eval.split)."""
        e = self.recipe.eval
        split = Split(e.split)
        rng = task_rng(e.seed, split)
        tasks = self.dist.sample(n_tasks, rng, split)
        return self.dist.episodes(
            tasks, rng, support=e.support_shots, query=e.query_shots, evaluation=True
        )

    def curve(
        self,
        steps: list[int],
        n_tasks: int,
        chunk: int | None = None,
        transductive: bool | None = None,
    ) -> Curve:
        """Adapt from the model's parameters with the evaluation inner loop and measure the
        metric on the query sets after each of `steps`. Tasks are adapted `chunk` at a time
        (default: as many as fit `CHUNK_INPUTS`, at most 250), which bounds the memory.

        `transductive` (default: the recipe's `eval.transductive`) classifies each task's
        query set in one batch; otherwise each query example is classified in a batch of the
        support set plus that example (`SGDLearner.predict_each_with_support`), which only
        changes the numbers of networks whose output depends on the batch (BatchNorm).
        """
        if transductive is None:
            transductive = self.recipe.eval.transductive
        learner = sgd_learner(self.recipe, self.model, self.dist, evaluation=True)
        phi: Params = {k: v.detach() for k, v in self.model.named_parameters()}
        batch = self.eval_batch(n_tasks)
        wanted = sorted(set(steps))
        values = np.zeros((len(wanted), n_tasks))
        metric_name = self.dist.metric
        features = batch.support_x[0, 0].numel()
        s, q = batch.support_x.shape[1], batch.query_x.shape[1]
        if chunk is None:
            chunk = max(1, min(250, CHUNK_INPUTS // (max(s, q) * features)))
        # non-transductive: the [support + 1]-batches of `group` query examples at once
        group = max(1, min(q, EVAL_BUDGET // (min(chunk, n_tasks) * (s + 1) * features)))
        for start in range(0, n_tasks, chunk):
            part = batch.take(slice(start, start + chunk)).to(self.device)
            row = 0
            for t, (params, _) in enumerate(
                learner.adapt_steps(phi, part.support_x, part.support_y, max(wanted))
            ):
                if t not in wanted:
                    continue
                if transductive:
                    metric = learner.evaluate(params, part.query_x, part.query_y, metric_name)
                else:
                    metric = learner.evaluate_non_transductive(
                        params, part.support_x, part.query_x, part.query_y, metric_name, group
                    )
                values[row, start : start + part.num_tasks] = metric.cpu().numpy()
                row += 1
        return Curve.from_values(metric_name, wanted, values)


def sgd_learner(
    recipe: Recipe,
    model: torch.nn.Module,
    dist: SupervisedDistribution,
    *,
    evaluation: bool = False,
) -> SGDLearner:
    """The recipe's inner loop (its evaluation variant uses eval.inner_lr / eval.inner_batch)."""
    t = recipe.train
    lr = recipe.eval.inner_lr if evaluation and recipe.eval.inner_lr is not None else t.inner_lr
    batch = recipe.eval.inner_batch if evaluation else t.inner_batch
    optimizer = InnerOptimizer(t.inner_optimizer, lr, beta1=t.inner_beta1)
    return SGDLearner(model, dist.loss, optimizer, inner_batch=batch, amp=t.amp)


# -- which meta-learner for which kind of distribution --------------------------------------

Factory = Callable[[Recipe, TaskDistribution, torch.device], MetaLearner]
_FACTORIES: dict[str, str | Factory] = {
    "supervised": SupervisedMetaLearner,  # type: ignore[dict-item]
    "rl": "metarl.rl.ppo_learner:PPOMetaLearner",
}


def distribution(recipe: Recipe) -> TaskDistribution:
    return make_distribution(recipe.task_name, **recipe.task_options)


def build_meta_learner(recipe: Recipe, device: torch.device) -> MetaLearner:
    """The meta-learner for the recipe's task distribution, its model initialized from the
    recipe's seed."""
    dist = distribution(recipe)
    check_distribution(dist, recipe.task_name)
    factory = _FACTORIES[str(dist.kind)]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            factory = cast(Factory, getattr(importlib.import_module(module), attr))
        except ModuleNotFoundError as e:
            if e.name != module:  # a dependency of the module is missing: not ours to hide
                raise
            raise UserError(
                f"task {recipe.task_name!r}: {dist.kind} meta-learning is not available yet"
            ) from None
    return factory(recipe, dist, device)


__all__ = [
    "Adaptation",
    "MetaLearner",
    "Split",
    "SupervisedMetaLearner",
    "build_meta_learner",
    "sgd_learner",
]
