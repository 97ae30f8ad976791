"""Second-order MAML-RL on the batched learner (`algorithm = "maml"`, `[learner] inner = "vpg"`).

Per meta-iteration, for this rank's tasks at once: pre-update rollouts from phi (no graph),
one VPG step to theta_i' (MAML-RL's protocol: `inner_steps = 1`), post-update rollouts from
theta_i' (no graph), then the outer objective of `metarl.rl.maml` (ProMP's LVC inner loss,
the importance-weighted surrogate outside): its gradient with respect to phi through the
adaptation is the meta-gradient (`meta_gradient`, for Adam/SGD), and with
`outer_optimizer = "trpo"` the same objective drives MAML-RL's trust-region step
(`metarl.rl.trpo.TRPOStep`), with "promp" ProMP's Adam steps on its clipped objective
(`metarl.rl.promp.ProMPStep`): both re-evaluate the objective that the meta-gradient hands on
with it (`MetaDelta.objective`; the learner is a
`metarl.rl.outer_objective.OuterObjectiveLearner`). The rollouts use the seeds and rollout
indices of the first-order learner (pre-update rollout 0, post-update rollout 1), so maml and
fomaml see the same episodes up to the policies that act in them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from metarl.config import Algorithm, Recipe
from metarl.learners.batched_rl import BatchedRLMetaLearner, one_torch_thread
from metarl.learners.rl_core import (
    SlotPlace,
    adaptation_metrics,
    query_metrics,
)
from metarl.protocol import AcrossRanks, Adaptation, MetaDelta, Params
from metarl.rl.maml import (
    MetaObjective,
    Samples,
    adapt,
    policy_function,
    split_rates,
    with_rates,
)
from metarl.rl.outer_objective import OuterObjective
from metarl.rl.rollout import RolloutNoise, family_metrics, logged


@dataclass
class MAMLRLContext:
    """What MAML-RL's adaptation keeps for the meta-gradient and the outer step."""

    tasks: list[Any]
    seeds: list[int]
    """This rank's slots' tasks and their rollout seeds."""
    phi: Params
    """The point adapted from: phi and, for Meta-SGD, the inner rates (`RATE_PREFIX`)."""
    pre: list[Samples]
    """Each inner step's samples (empty for the joint baseline, `inner_steps = 0`)."""
    path: list[Params] | None = None
    """theta_1', ..., theta_k' as adapted (the outer objective reuses them)."""


class MAMLRLMetaLearner(BatchedRLMetaLearner):
    """The batched learner with MAML-RL's second-order meta-gradient (see the module).

    A subclass of the batched engine, so its rollouts, seeds and held-out tasks are the
    first-order learner's: maml and fomaml differ only in the gradient they take.

    Args:
        recipe: an RL recipe whose row of `metarl.combinations.SUPPORTED` names this
            class; its `[learner]` table is typed by the engine's settings.
        dist: the recipe's task distribution.
        device: where the policy and the rollout arrays live.

    Examples:
        The `navigation2d-maml` recipe shrunk to two episodes of 20 steps per task: one VPG
        step adapts two tasks together (their weights stacked), then the meta-gradient
        through that step comes back keyed and shaped like phi, with the post-update
        rollouts' metrics:

        >>> import numpy as np, torch
        >>> from metarl.config import with_overrides
        >>> from metarl.learners import build_meta_learner
        >>> from metarl.registry import resolve_recipe
        >>> recipe = with_overrides(
        ...     resolve_recipe("navigation2d-maml"), "learner", n_envs=2, n_steps=20, batch_size=40
        ... )
        >>> learner = build_meta_learner(recipe, torch.device("cpu"))
        >>> type(learner).__name__, recipe.train.outer_optimizer.value
        ('MAMLRLMetaLearner', 'trpo')
        >>> phi = learner.phi()
        >>> tasks = learner.dist.sample(2, np.random.default_rng(0))
        >>> adaptation = learner.adapt(phi, tasks, np.random.default_rng(0))
        >>> adaptation.params["action_net.weight"].shape, phi["action_net.weight"].shape
        (torch.Size([2, 2, 64]), torch.Size([2, 64]))
        >>> delta = learner.meta_gradient(adaptation)
        >>> all(delta.gradient[n].shape == phi[n].shape for n in phi)
        True
        >>> sorted(m for m in delta.metrics if not m.startswith("seconds"))
        ['query_env_steps', 'query_loss', 'return_after']

        TRPO's step then re-evaluates the objective the gradient was taken of
        (`delta.objective`, handed on in the trainer's `MetaStep`).
    """

    metrics_across_ranks: ClassVar[Mapping[str, AcrossRanks]] = {
        **BatchedRLMetaLearner.metrics_across_ranks,
        **{f"seconds_{part}": AcrossRanks.OWN for part in ("physics", "policy", "update")},
    }
    """`seconds()` times this process's own work (read against its `elapsed_s`): rank 0's."""

    def __init__(self, recipe: Recipe, dist: Any, device: torch.device) -> None:
        super().__init__(recipe, dist, device)
        self.policy_fn = policy_function(self.policy)
        if recipe.train.algorithm is Algorithm.METASGD:  # alpha starts at the recipe's inner_lr
            self.inner_rates = {
                k: torch.full_like(v.detach(), recipe.train.inner_lr)
                for k, v in self.model.named_parameters()
            }

    def _with_rates(self, phi: Params) -> Params:
        """phi and, for Meta-SGD, the inner rates alpha (what the outer step optimizes)."""
        return with_rates(phi, self.inner_rates)

    def seeded_rollouts(self) -> int:
        return max(self.recipe.train.inner_steps, 1)

    def adapt_slots(
        self, phi: Params, tasks: list[Any], seeds: list[int], place: SlotPlace
    ) -> Adaptation[MAMLRLContext]:
        """Pre-update rollouts and theta_i' for this rank's tasks: `inner_steps` VPG steps,
        step j on fresh episodes of theta_j' (rollout index j; phi's at j = 0), as the
        evaluation adapts. The context keeps every step's samples (`pre`, a list: empty for
        the joint baseline) for the meta-gradient through all of them; the log gets
        `return_before` and `env_steps`."""
        k = self.recipe.train.inner_steps
        if k == 0:  # the joint baseline: the outer step's episodes come from phi itself
            stacked = {n: v.unsqueeze(0).expand(len(tasks), *v.shape) for n, v in phi.items()}
            joint = MAMLRLContext(tasks, seeds, phi, [])
            return Adaptation(stacked, joint, {"env_steps": 0.0})
        lr = self.recipe.train.inner_lr if self.inner_rates is None else self.inner_rates
        steps: list[Samples] = []
        path: list[Params] = []  # theta_1', ..., theta_k' (the outer objective reuses them)
        params, env_steps = phi, 0
        with one_torch_thread():
            for j in range(k):
                rollout = self._rollout(params, tasks, seeds, j, stacked=j > 0)
                env_steps += rollout.env_steps
                if j == 0:
                    first = rollout
                steps.append(Samples.from_rollout(rollout, self.settings.gamma))
                tick = time.perf_counter()
                params = adapt(
                    self.policy_fn, params, steps[-1], lr, create_graph=False, stacked=j > 0
                )
                path.append(params)
                self.timers.update += time.perf_counter() - tick
        metrics = {
            **adaptation_metrics(first.first_returns.mean(), env_steps),
            **logged(family_metrics(self.dist, tasks, first), "before"),
        }
        context = MAMLRLContext(tasks, seeds, self._with_rates(phi), steps, path)
        return Adaptation(params, context, metrics)

    def _rollout(
        self, params: Params, tasks: list[Any], seeds: list[int], index: int, *, stacked: bool
    ) -> Any:
        if not stacked:
            params = {k: v.unsqueeze(0).expand(len(tasks), *v.shape) for k, v in params.items()}
        return self._collect(params, self._env(tasks), RolloutNoise(seeds, index))

    def meta_gradient(self, adaptation: Adaptation[MAMLRLContext]) -> MetaDelta[OuterObjective]:
        """Post-update rollouts from theta_i', then the sum over this rank's tasks of the
        outer surrogate's gradient with respect to phi through the adaptation, handed on with
        the objective (for TRPO's and ProMP's steps, which re-evaluate it).

        Args:
            adaptation: what `adapt` returned.

        Returns:
            The meta-gradient keyed like phi, summed over this rank's tasks, the post-update
            rollouts' metrics, and the objective at phi with this rank's per-task surrogate
            there (the line search's reference).
        """
        ctx = adaptation.context
        with one_torch_thread():
            k = len(ctx.pre)
            post = self._rollout(adaptation.params, ctx.tasks, ctx.seeds, max(k, 1), stacked=True)
            tick = time.perf_counter()
            objective = MetaObjective(
                self.policy_fn,
                ctx.phi,
                ctx.pre,
                Samples.from_rollout(post, self.settings.gamma),
                self.recipe.train.inner_lr,
                every_step=self.settings.outer_every_step,
                path=ctx.path,
            )
            grads, losses = objective.gradient(ctx.phi)
            self.timers.update += time.perf_counter() - tick
        metrics = query_metrics(losses.surrogate.mean(), post.first_returns.mean(), post.env_steps)
        when = "after"
        if not ctx.pre:
            # the joint baseline adapts nothing: phi's own episodes are logged as "before"
            # (an "after" equal to it would read as an adaptation that did nothing)
            metrics["return_before"], when = metrics.pop("return_after"), "before"
        metrics = {**metrics, **logged(family_metrics(self.dist, ctx.tasks, post), when)}
        outer = OuterObjective(objective, ctx.phi, losses.surrogate)
        return MetaDelta(grads, {**metrics, **self.seconds()}, outer)

    def load_phi(self, phi: Params) -> None:
        """The outer step's new phi into the model; Meta-SGD's rates into `inner_rates`.

        Args:
            phi: the new meta-parameters and, for Meta-SGD, the inner rates
                (`metarl.rl.maml.RATE_PREFIX`).
        """
        weights, rates = split_rates(phi, 0.0)
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.copy_(weights[name])
        if isinstance(rates, dict):
            self.inner_rates = {k: v.detach().clone() for k, v in rates.items()}

    @contextmanager
    def updating(self) -> Iterator[None]:
        """One torch thread, the time counted in `seconds_update`."""
        with one_torch_thread():
            tick = time.perf_counter()
            try:
                yield
            finally:
                self.timers.update += time.perf_counter() - tick

    def state_dict(self) -> dict[str, Any]:
        """Meta-SGD's rates (a resumed run continues with them)."""
        if self.inner_rates is None:
            return {}
        return {"inner_rates": {k: v.clone() for k, v in self.inner_rates.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore Meta-SGD's rates from a checkpoint (`state_dict`'s).

        Args:
            state: what `state_dict` returned (empty unless the recipe is Meta-SGD's).

        Raises:
            KeyError: a Meta-SGD learner's state without its rates (a resume would otherwise
                continue from the recipe's initial rates without a word).
        """
        if self.inner_rates is None:
            return
        if "inner_rates" not in state:
            raise KeyError("inner_rates: the checkpoint holds no Meta-SGD rates")
        self.inner_rates = {k: v.to(self.device) for k, v in state["inner_rates"].items()}

    def seconds(self) -> dict[str, float]:
        """Seconds spent so far (since the learner was built) stepping the envs, running the
        policy in the rollouts, and in the updates (adaptation, meta-gradient, TRPO): the
        physics share of a run is `seconds_physics / elapsed_s`."""
        t = self.timers
        return {
            "seconds_physics": t.rollout.physics,
            "seconds_policy": t.rollout.policy,
            "seconds_update": t.update,
        }


__all__ = ["MAMLRLContext", "MAMLRLMetaLearner"]
