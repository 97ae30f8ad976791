"""What the RL meta-learner's engines share: everything but stepping the envs and the update.

An RL recipe is adapted by one of the engines in `ENGINES` (`[learner] backend`): the batched
engine (`metarl.learners.batched_rl`, every task of a meta-batch at once) or SB3's
(`metarl.learners.sb3_ppo`, one task after another: the reference). Each engine subclasses
`RLMetaLearnerBase` and keeps only its engine; what they share lives here, written once:

- settings: the recipe's `[learner]` table (`metarl.rl.settings`), the refusal of supervised
  keys and algorithms (`refuse_supervised_keys`), construction from a recipe (`from_recipe`);
- randomness: one seed per meta-batch slot (`slot_seeds`), the held-out tasks and their seeds
  (`held_out_tasks`), and which rollouts a run collects and measures (`RolloutSchedule`);
- phi at the start (`initial_policy`), the names of the metrics the trainer logs
  (`adaptation_metrics`, `query_metrics`), the timers the benchmark reads (`Timers`), and
  the benchmark's own score of a policy (`policy_scorer`: Meta-World's success rate).

A new engine is one module with a `RLMetaLearnerBase` subclass and one entry in `ENGINES`.
"""

from __future__ import annotations

import dataclasses
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, SupportsFloat

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy

from metarl.config import Algorithm, EvalConfig, Recipe
from metarl.curves import Curve
from metarl.errors import ConfigError
from metarl.protocol import (
    MetaLearnerBase,
    Params,
    RolloutContext,
    ScoresPolicies,
    Split,
    task_rng,
)
from metarl.rl.policy import build_sb3_policy
from metarl.rl.rollout import RolloutTimers
from metarl.rl.settings import ENGINES, SECOND_ORDER_ENGINES, PPOSettings, backend_of

Scorer = Callable[[Any, Callable[[np.ndarray], np.ndarray]], dict[str, float]]
"""A distribution's `evaluate_policy(task, act)`: metrics of a deterministic policy `act`."""


def refuse_supervised_keys(
    recipe: Recipe,
    learner: str,
    algorithms: tuple[Algorithm, ...] = (Algorithm.REPTILE, Algorithm.FOMAML),
) -> None:
    """`[model]` and the supervised learner's `[train]`/`[eval]` keys have no meaning for an
    RL learner: the first one given is a `ConfigError` naming it and why. So are the
    algorithms the learner does not run (not in `algorithms`)."""
    if recipe.train.algorithm not in algorithms:
        names = ", ".join(a.value for a in algorithms)
        raise ConfigError(
            f"train.algorithm = {recipe.train.algorithm.value!r}: {learner} of task "
            f"{recipe.task_name!r} takes {names} (imaml and gradients are for supervised "
            'tasks; maml and metasgd for RL need the batched learner with inner = "vpg")'
        )
    if recipe.model:
        raise ConfigError(
            "[model] is not used by RL recipes; put net_arch, "
            "activation and log_std_init in [learner]"
        )
    recipe.refuse_supervised(learner)


def initial_policy(
    dist: Any, settings: PPOSettings, seed: int, device: torch.device
) -> ActorCriticPolicy:
    """phi at the start: SB3's `MlpPolicy` for the spaces of the distribution's envs, shaped
    by the `[learner]` settings and initialized from `seed` (train.seed) alone."""
    probe = dist.make_env(dist.sample(1, np.random.default_rng(0), Split.TRAIN)[0])
    policy = build_sb3_policy(
        probe.observation_space,
        probe.action_space,
        net_arch=settings.net_arch,
        activation=settings.activation,
        ortho_init=settings.ortho_init,
        log_std_init=settings.log_std_init,
        seed=seed,
    ).to(device)
    probe.close()
    return policy


def slot_seeds(rng: np.random.Generator, n_tasks: int, rollouts: int, slots: slice) -> list[int]:
    """One seed per meta-batch slot, drawn for all `n_tasks` slots and then cut to `slots`,
    so a slot's rollouts do not depend on how the meta-batch is split across ranks. Rollout
    r of a task uses seed + r, so the seeds leave room for `rollouts` of them below 2**31."""
    return [int(s) for s in rng.integers(2**31 - 1 - rollouts, size=n_tasks)][slots]


def held_out_tasks(evaluation: EvalConfig, dist: Any, n_tasks: int) -> tuple[list[Any], list[int]]:
    """The recipe's fixed evaluation tasks and one seed each (functions of eval.seed and
    eval.split alone, so every engine and every init is evaluated on the same ones)."""
    split = Split(evaluation.split)
    rng = task_rng(evaluation.seed, split)
    tasks = list(dist.sample(n_tasks, rng, split))
    seeds = [int(s) for s in rng.integers(2**31 - 1000, size=n_tasks)]
    return tasks, seeds


@dataclass(frozen=True)
class RolloutSchedule:
    """The rollouts of adapting a task with `updates` inner updates: rollout t is collected
    after t updates; those in `measure` are measured; with `extra`, one more rollout after
    the last update is collected and kept (FOMAML's query rollout)."""

    updates: int
    measure: Sequence[int]
    extra: bool = False

    @property
    def rollouts(self) -> int:
        """Rollouts to collect: one per update, plus one after the last when it is needed."""
        needed = self.extra or self.updates in self.measure
        return self.updates + 1 if needed else self.updates

    def measured(self, t: int) -> bool:
        return t in self.measure or (self.extra and t == self.updates)


def adaptation_metrics(return_before: SupportsFloat, env_steps: int) -> dict[str, float]:
    """What `adapt` reports to the trainer's log: the mean return of the first rollouts (of
    phi) and the env steps taken."""
    return {"return_before": float(return_before), "env_steps": float(env_steps)}


def query_metrics(
    query_loss: SupportsFloat, return_after: SupportsFloat, env_steps: int
) -> dict[str, float]:
    """What `query_gradient` (FOMAML) reports: the loss whose gradient it took, the mean
    return of the query rollouts (of the adapted policies), and their env steps."""
    return {
        "query_loss": float(query_loss),
        "return_after": float(return_after),
        "query_env_steps": float(env_steps),
    }


def with_env_steps(curves: dict[str, Curve], per_update: int) -> dict[str, Curve]:
    """`curves` with `Curve.env_steps` set: `per_update` env steps of rollouts per task for
    each inner update (a curve's step t follows t updates, so t x `per_update` env steps)."""
    return {
        k: dataclasses.replace(c, env_steps=[float(t * per_update) for t in c.steps])
        for k, c in curves.items()
    }


def policy_scorer(dist: Any) -> Scorer | None:
    """The distribution's own score of a policy (`evaluate_policy(task, act)`, optional in
    the RL protocol: Meta-World's success rate and return), or None: evaluation then reports
    the return of the rollouts."""
    return dist.evaluate_policy if isinstance(dist, ScoresPolicies) else None


@dataclass
class Timers:
    """Seconds per part of the inner loop, and env steps (`scripts/benchmarks/bench_rl.py`)."""

    rollout: RolloutTimers = field(default_factory=RolloutTimers)
    """Stepping the envs and running the policy, apart (the batched engine)."""
    collect: float = 0.0
    """Both in one call (SB3's `collect_rollouts`)."""
    update: float = 0.0
    swap: float = 0.0
    """Loading phi, a fresh optimizer, setting the task, seeding and resetting the envs."""
    env_steps: int = 0

    def reset(self) -> None:
        self.rollout = RolloutTimers()
        self.collect = self.update = self.swap = 0.0
        self.env_steps = 0


class RLMetaLearnerBase(MetaLearnerBase[RolloutContext, Any]):
    """The part of an RL meta-learner that is not its engine. A subclass sets `name` (how
    messages call it), builds `model` (an SB3 `ActorCriticPolicy` holding phi) in
    `__init__(recipe, dist, device)` and implements `adapt`, `query_gradient` and `curve`."""

    name: ClassVar[str] = "the RL learner"
    recipe: Recipe
    timers: Timers

    @classmethod
    def from_recipe(cls, recipe: Recipe, dist: Any, device: torch.device) -> RLMetaLearnerBase:
        """The learner of `recipe`: `[model]` and the supervised learner's keys are refused,
        naming the first one given; `[learner]` is typed by the engine's settings."""
        refuse_supervised_keys(recipe, cls.name)
        return cls(recipe, dist, device)  # type: ignore[call-arg]

    def phi(self) -> Params:
        return {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def curve(self, steps: list[int], n_tasks: int) -> Curve:
        """The headline metric of `curves`: success rate where the distribution scores
        policies itself (Meta-World), else the return."""
        return next(iter(self.curves(steps, n_tasks).values()))

    def eval_tasks(self, n_tasks: int) -> tuple[list[Any], list[int]]:
        """The recipe's fixed held-out tasks and their seeds (the same for every engine)."""
        return held_out_tasks(self.recipe.eval, self.dist, n_tasks)

    def meta_gradient(self, adaptation: Any) -> tuple[Params, dict[str, float]]:
        """Not offered: `from_recipe` refuses maml, imaml and metasgd for RL."""
        raise NotImplementedError(f"{self.name} takes reptile or fomaml")


RL2_LEARNER = "metarl.learners.rl2:RL2MetaLearner"
"""`train.algorithm = "rl2"`: the recurrent learner, whatever `[learner]` says (it reads its
own keys, `metarl.rl.rl2_settings`)."""


class RLLearners:
    """`LEARNERS["rl"]`: the engine that the recipe's `[learner] backend` names (`ENGINES`;
    "batched" by default), imported when first used."""

    @staticmethod
    def from_recipe(recipe: Recipe, dist: Any, device: torch.device) -> Any:
        if recipe.train.algorithm is Algorithm.RL2:  # its own learner and [learner] keys
            rl2: Any = pkgutil.resolve_name(RL2_LEARNER)
            return rl2.from_recipe(recipe, dist, device)
        backend = backend_of(recipe)
        second_order = recipe.train.algorithm in (Algorithm.MAML, Algorithm.METASGD)
        outer = recipe.train.outer_optimizer
        if outer.learner_steps and not (second_order and backend in SECOND_ORDER_ENGINES):
            raise ConfigError(
                f'train.outer_optimizer = "{outer.value}": needs algorithm = "maml" on the '
                'batched learner (learner.backend = "batched", inner = "vpg")'
            )
        target = ENGINES[backend]
        if second_order and backend in SECOND_ORDER_ENGINES:
            target = SECOND_ORDER_ENGINES[backend]
        engine: type[RLMetaLearnerBase] = pkgutil.resolve_name(target)
        return engine.from_recipe(recipe, dist, device)


__all__ = [
    "RLLearners",
    "RLMetaLearnerBase",
    "RolloutSchedule",
    "Timers",
    "adaptation_metrics",
    "held_out_tasks",
    "initial_policy",
    "policy_scorer",
    "query_metrics",
    "refuse_supervised_keys",
    "slot_seeds",
    "with_env_steps",
]
