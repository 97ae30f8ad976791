"""The supervised meta-learner: episodes from the distribution, adapted by the vmapped loop.

A `SupervisedDistribution` turns each meta-batch of tasks into support/query tensors; the
`InnerLoop` (`metarl.learners.inner_loop`) adapts phi to all of them at once. Its settings are
`SupervisedSettings` (written in the recipe's `[train]` table); evaluation follows `[eval]`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from metarl.config import Algorithm, EvalConfig, Recipe, SupervisedEval, SupervisedSettings
from metarl.curves import Curve
from metarl.errors import ConfigError
from metarl.learners.inner_loop import InnerLoop, build_inner_loop
from metarl.learners.second_order import (
    MetaGradient,
    implicit_meta_gradient,
    unrolled_meta_gradient,
)
from metarl.models import WithLearnedRates
from metarl.optim import AdamCarry
from metarl.protocol import (
    Adaptation,
    HoldsData,
    MetaDelta,
    MetaLearnerBase,
    Params,
    Split,
    SupervisedDistribution,
    Task,
    TaskBatch,
    task_rng,
)

EVAL_BUDGET = 1 << 24
"""Input elements (examples x features) one evaluation call batches at most: 64 MB of float32
inputs and some hundreds of MB of a conv net's activations, whatever the image size (250
Mini-ImageNet tasks of 25 support images at once would need tens of GB)."""

CHUNK_INPUTS = 1 << 17
"""Input elements per task chunk adapted together in evaluation (at most 250 tasks): small
chunks keep a conv net's activations in cache. Omniglot 5-way 1-shot evaluates 33 tasks at a
time, sine regression 250 (`scripts/benchmarks/bench_omniglot.py --eval-chunks` compares
chunk sizes)."""


class SupervisedMetaLearner(MetaLearnerBase["TaskBatch | MetaGradient", SupervisedDistribution]):
    """Few-shot supervised tasks: episodes from the distribution, the vmapped SGD/Adam loop.

    Args:
        dist: the task distribution (its data is moved to `device` if it holds any).
        device: where the model and the episodes live.
        settings: the inner loop's optimizer, minibatch, shots and precision.
        inner_steps, inner_lr: steps and learning rate of the inner loop in training.
        algorithm: the outer loop's meta-gradient: all but Reptile draw query sets in
            training; MAML, iMAML and Meta-SGD compute their meta-gradient while adapting
            (`meta_gradient`); Meta-SGD wraps the network in `WithLearnedRates` (alpha starts
            at `inner_lr`).
        evaluation: the held-out protocol (`[eval]`): the tasks' seed and split, and the
            supervised keys (shots, minibatch, transduction).
        held_out: the supervised evaluation keys (`[eval]`: shots, inner minibatch,
            transduction).
        eval_lr: the inner learning rate of evaluation.
        model_options: the `[model]` table, handed to `dist.build_model`.
        seed: initializes the model.

    Build it with `from_recipe` (or `metarl.learners.build_meta_learner`), which types and
    checks these from a recipe; the constructor is for code that has no recipe.

    Examples:
        The held-out curve of an untrained sine model, two tasks (the evaluation tasks are
        a function of the recipe's `eval.seed`, so a second call measures the same tasks):

        >>> import torch
        >>> from metarl.learners import build_meta_learner
        >>> from metarl.registry import resolve_recipe
        >>> learner = build_meta_learner(resolve_recipe("sine"), torch.device("cpu"))
        >>> curve = learner.curve([0, 1, 5], n_tasks=2)
        >>> curve.metric, curve.steps, curve.per_task.shape
        ('mse', [0, 1, 5], (3, 2))
        >>> curve.mean == learner.curve([0, 1, 5], n_tasks=2).mean
        True
    """

    def __init__(
        self,
        dist: SupervisedDistribution,
        device: torch.device,
        settings: SupervisedSettings,
        *,
        inner_steps: int,
        inner_lr: float,
        algorithm: Algorithm,
        evaluation: EvalConfig,
        held_out: SupervisedEval,
        eval_lr: float,
        model_options: dict[str, Any],
        seed: int,
    ) -> None:
        self.dist = dist
        self.device = device
        self.settings = settings
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.algorithm = algorithm
        self.evaluation = evaluation
        self.held_out = held_out
        self.eval_lr = eval_lr
        if isinstance(dist, HoldsData):
            dist.to(device)
        torch.manual_seed(seed)
        net = dist.build_model(**model_options)
        if algorithm is Algorithm.METASGD:
            net = WithLearnedRates(net, inner_lr)
        self.model = net.to(device)
        self.learner = build_inner_loop(self.model, dist.loss, settings, inner_lr)
        self.carry = AdamCarry() if settings.inner_carry_moments else None

    @classmethod
    def from_recipe(
        cls, recipe: Recipe, dist: SupervisedDistribution, device: torch.device
    ) -> SupervisedMetaLearner:
        """The learner of `recipe`: its `[train]` keys typed and checked (a `[learner]` table,
        the RL learner's, is refused).

        Args:
            recipe: a supervised recipe.
            dist: its task distribution (`metarl.learners.distribution(recipe)`).
            device: where the model and the episodes live.

        Returns:
            The learner, its model initialized from `train.seed`.

        Raises:
            ConfigError: a key this learner does not read, or `algorithm = "gradients"`
                whose `combination` names a step beyond `inner_steps`.
        """
        t = recipe.train
        settings = recipe.supervised_settings()
        if t.algorithm is Algorithm.GRADIENTS and t.inner_steps < max(
            settings.combination_indices()
        ):
            raise ConfigError(
                f"train.combination = {settings.combination!r} needs inner_steps >= "
                f"{max(settings.combination_indices())} (got {t.inner_steps})"
            )
        return cls(
            dist,
            device,
            settings,
            inner_steps=t.inner_steps,
            inner_lr=t.inner_lr,
            algorithm=t.algorithm,
            evaluation=recipe.eval,
            held_out=recipe.supervised_eval(),
            eval_lr=recipe.eval_inner_lr,
            model_options=recipe.model,
            seed=t.seed,
        )

    def weights_and_rates(self, phi: Params) -> tuple[Params, Params | None]:
        """The network's weights in phi and, for Meta-SGD, its learned rates alpha.

        Args:
            phi: the model's parameters (for Meta-SGD, the wrapped network's and alpha).

        Returns:
            The weights keyed as the network names them, and alpha keyed alike (None but for
            Meta-SGD).
        """
        if isinstance(self.model, WithLearnedRates):
            return self.model.split(phi)
        return phi, None

    def evaluation_start(self) -> tuple[Params, InnerLoop]:
        """The meta-learned weights phi and the evaluation inner loop that adapts them (for
        Meta-SGD, stepping with the learned rates alpha)."""
        phi, rates = self.weights_and_rates(
            {k: v.detach() for k, v in self.model.named_parameters()}
        )
        batch = self.held_out.inner_batch
        loop = build_inner_loop(
            self.model, self.dist.loss, self.settings, self.eval_lr, batch, rates
        )
        return phi, loop

    def _second_order(self, phi: Params, batch: TaskBatch) -> MetaGradient:
        s = self.settings
        if self.algorithm is Algorithm.IMAML:
            return implicit_meta_gradient(
                self.learner, phi, batch, self.inner_steps, s.imaml_lambda, s.cg_steps
            )
        weights, rates = self.weights_and_rates(phi)
        result = unrolled_meta_gradient(
            self.learner, weights, batch, self.inner_steps, self.inner_lr, rates, s.maml_task_chunk
        )
        if isinstance(self.model, WithLearnedRates):  # d/d alpha back under alpha's own names
            names = list(weights)
            result.grads = {
                **{k: result.grads[k] for k in names},
                **{f"alpha.{i}": result.grads[f"rate:{k}"] for i, k in enumerate(names)},
            }
        return result

    def adapt(
        self,
        phi: Params,
        tasks: Sequence[Task],
        rng: np.random.Generator,
        slots: slice = slice(None),
    ) -> Adaptation:
        """Adapt phi to this rank's tasks. For MAML, iMAML and Meta-SGD the meta-gradient is
        computed here, while the inner loop's graph is alive, and kept in the context.

        Args:
            phi: the meta-parameters, keyed like `model.named_parameters()`.
            tasks: the whole meta-batch (every rank draws the same episodes from `rng`).
            rng: the iteration's generator; the support and query sets come from it.
            slots: the tasks this rank adapts.

        Returns:
            W_i stacked over the tasks, the context `query_gradient` or `meta_gradient`
            finishes the step from (the episodes, or the meta-gradient already computed),
            and the support loss before and after adapting.
        """
        s = self.settings
        query = s.query_shots if self.algorithm.needs_query else 0
        batch = self.dist.episodes(tasks, rng, support=s.support_shots, query=query)
        batch = batch.take(slots).to(self.device)
        context: TaskBatch | MetaGradient = batch
        if self.algorithm.second_order:
            context = self._second_order(phi, batch)
            params, losses = context.adapted, context.support_losses
        elif self.algorithm is Algorithm.GRADIENTS:
            which = s.combination_indices()
            params, grads, losses = self.learner.gradient_combination(
                phi, batch, self.inner_steps, which
            )
            context = MetaGradient(
                {k: g.sum(0) for k, g in grads.items()}, params, losses, losses[-1]
            )
        else:
            params, losses = self.learner.adapt_with_losses(
                phi, batch, self.inner_steps, self.carry
            )
        metrics = {}
        if len(losses):
            metrics["loss_before"] = float(losses[0].mean())
            metrics["loss_last_step"] = float(losses[-1].mean())
        return Adaptation(params, context, metrics)

    def meta_gradient(self, adaptation: Adaptation) -> MetaDelta[None]:
        """MAML's, iMAML's, Meta-SGD's or a gradient combination's meta-gradient of the
        adapted tasks (summed over them, keyed like phi), and the mean query loss (for the
        combinations, which use no query set: the support loss of the last step).

        Args:
            adaptation: what `adapt` returned.

        Returns:
            The meta-gradient keyed like phi, with `{"query_loss": ...}`.

        Raises:
            TypeError: the adaptation is Reptile's or FOMAML's, which compute none (their
                outer steps use the adapted weights or `query_gradient`).
        """
        result = adaptation.context
        if not isinstance(result, MetaGradient):
            raise TypeError(f"{self.algorithm.value} adaptations carry no meta-gradient")
        metrics = {"query_loss": float(result.query_losses.mean()), **result.metrics}
        return MetaDelta(result.grads, metrics)

    def state_dict(self) -> dict[str, Any]:
        """Training state beyond the weights, for the checkpoint: the carried inner moments."""
        if self.carry is None or not self.carry.state:
            return {}
        return {"adam_carry": {**self.carry.state, "steps": self.carry.steps}}

    @property
    def rank_local_state(self) -> frozenset[str]:
        """The carried inner moments are per task slot: one rank's."""
        return frozenset({"adam_carry"})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the inner Adam's carried moments from a checkpoint (`state_dict`'s).

        Args:
            state: what `state_dict` returned (empty unless `train.inner_carry_moments`).
        """
        carried = state.get("adam_carry")
        if self.carry is not None and carried is not None:
            self.carry.state = {"m": carried["m"], "v": carried["v"]}
            self.carry.steps = int(carried["steps"])

    def query_gradient(self, adaptation: Adaptation) -> tuple[Params, dict[str, float]]:
        """Sum over the tasks of the query-loss gradient at W_i, and the mean query loss.

        Args:
            adaptation: what `adapt` returned for an algorithm that draws query sets.

        Returns:
            FOMAML's meta-gradient keyed like phi, and `{"query_loss": ...}`.
        """
        batch = adaptation.context
        grads, losses = self.learner.query_gradients(
            adaptation.params, batch.query_x, batch.query_y
        )
        return {k: g.sum(0) for k, g in grads.items()}, {"query_loss": float(losses.mean())}

    def eval_batch(self, n_tasks: int) -> TaskBatch:
        """The recipe's fixed evaluation tasks (a function of eval.seed and eval.split).

        Args:
            n_tasks: how many tasks.

        Returns:
            Their support and query sets, stacked on the task axis.
        """
        e, h = self.evaluation, self.held_out
        split = Split(e.split)
        rng = task_rng(e.seed, split)
        tasks = self.dist.sample(n_tasks, rng, split)
        return self.dist.episodes(
            tasks, rng, support=h.support_shots, query=h.query_shots, evaluation=True
        )

    def curve(
        self,
        steps: list[int],
        n_tasks: int,
        chunk: int | None = None,
        transductive: bool | None = None,
        progress: Callable[[float, float], None] | None = None,
    ) -> Curve:
        """Adapt from the model's parameters with the evaluation inner loop and measure the
        metric on the query sets after each of `steps`. Tasks are adapted `chunk` at a time
        (default: as many as fit `CHUNK_INPUTS`, at most 250), which bounds the memory.

        `transductive` (default: the recipe's `eval.transductive`) classifies each task's
        query set in one batch; otherwise each query example is classified in a batch of the
        support set plus that example (`InnerLoop.predict_each_with_support`), which only
        changes the numbers of networks whose output depends on the batch (BatchNorm).
        `progress(done, total)` hears of each adaptation step, in tasks (fractions of them).

        Args:
            steps: the numbers of inner steps after which the metric is measured.
            n_tasks: held-out tasks to adapt to.
            chunk: tasks adapted at once.
            transductive: classify each query set in one batch.
            progress: called with (tasks done, total).

        Returns:
            The metric's mean and 95% CI per step count, the per-task values kept.
        """
        if transductive is None:
            transductive = self.held_out.transductive
        phi, learner = self.evaluation_start()
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
                if progress is not None:
                    done = start + part.num_tasks * (t + 1) / (max(wanted) + 1)
                    progress(done, n_tasks)
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


__all__ = ["SupervisedMetaLearner"]
