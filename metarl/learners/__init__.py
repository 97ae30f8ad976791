"""The inner loops behind the `MetaLearner` contract (`metarl.protocol`), one module each.

- `inner_loop`: the vmapped SGD/Adam loop on stacked parameters (`InnerLoop`);
- `supervised`: `SupervisedMetaLearner`, episodes of a supervised distribution adapted by it;
- `rl_core`: the RL meta-learner's shared part (settings, seeds, held-out tasks, rollout
  schedule, phi, adaptation, evaluation, metrics, timers); the engines write their rollouts:
- `batched_rl`: `BatchedRLMetaLearner`, every task of a meta-batch rolled out and updated at
  once (`backend = "batched"`, the default);
- `sb3_ppo`: `SB3MetaLearner`, a policy adapted to one task after another by SB3's PPO
  (`backend = "sb3"`, the reference).

The trainer gets its learner from `build_meta_learner`: the recipe's choice (the
distribution's `kind`, algorithm, outer step, `[learner] backend` and `inner`, inner steps)
is checked against `metarl.combinations.SUPPORTED`, whose row names the learner class, and
the class reads its typed settings from the recipe (`from_recipe`). The RL engines are
imported only for RL recipes, so supervised users never import stable-baselines3.
"""

from __future__ import annotations

import pkgutil
from typing import TYPE_CHECKING, Any

import torch

from metarl import validate
from metarl.combinations import combination, kinds
from metarl.config import Recipe
from metarl.errors import ConfigError, UserError
from metarl.protocol import MetaLearner, TaskDistribution
from metarl.registry import check_option_names, make_distribution


def distribution(recipe: Recipe) -> TaskDistribution:
    """The recipe's task distribution, built from its `[task]` table.

    Args:
        recipe: the recipe whose `[task]` name and options pick the registered task.

    Returns:
        The distribution the learner draws its meta-batches and held-out tasks from.
    """
    return make_distribution(recipe.task_name, **recipe.task_options)


def build_meta_learner(recipe: Recipe, device: torch.device) -> MetaLearner[Any]:
    """The meta-learner for the recipe's task distribution, its model initialized from the
    recipe's seed. A setting the chosen learner does not read is a `ConfigError` naming it.

    This is the one door from a recipe to a learner (the trainer, `metarl eval` and export
    all go through it), so a combination the catalog does not support is refused here,
    before any model is built or anything written.

    Args:
        recipe: the parsed recipe (`metarl.config`); its task, algorithm, `[learner]`
            backend and inner loop pick a row of `metarl.combinations.SUPPORTED`.
        device: where the model, and the data of distributions that hold some, live.

    Returns:
        The learner the row names (`SupervisedMetaLearner`, `BatchedRLMetaLearner`,
        `SB3MetaLearner`, `MAMLRLMetaLearner` or `RL2MetaLearner`), built by its
        `from_recipe`.

    Raises:
        UserError: the task's kind has no learner.
        ConfigError: the recipe names a setting the chosen learner does not read, or a
            combination no row supports (the message names the recipe file and the value).

    Examples:
        One meta-iteration's ingredients by hand (the trainer does this for you): adapt
        phi to four sine tasks and take MAML's meta-gradient, keyed like phi.

        >>> import numpy as np, torch
        >>> from metarl.config import with_overrides
        >>> from metarl.registry import resolve_recipe
        >>> from metarl.learners import build_meta_learner
        >>> recipe = with_overrides(resolve_recipe("sine"), "train", algorithm="maml")
        >>> learner = build_meta_learner(recipe, torch.device("cpu"))
        >>> type(learner).__name__
        'SupervisedMetaLearner'
        >>> rng = np.random.default_rng(0)
        >>> phi = dict(learner.model.named_parameters())
        >>> adaptation = learner.adapt(phi, learner.dist.sample(4, rng), rng, slice(None))
        >>> adaptation.params["0.weight"].shape  # W_i, one per task
        torch.Size([4, 64, 1])
        >>> delta = learner.meta_gradient(adaptation)
        >>> delta.gradient.keys() == phi.keys(), sorted(delta.metrics)
        (True, ['query_loss'])

        An algorithm the task's kind cannot run is refused with the accepted ones:

        >>> build_meta_learner(
        ...     with_overrides(recipe, "train", algorithm="rl2"), torch.device("cpu")
        ... )
        Traceback (most recent call last):
        ...
        metarl.errors.ConfigError: sine: train.algorithm = "rl2": use algorithm = ...
    """
    check_option_names(recipe)
    dist = distribution(recipe)
    validate.check_distribution(dist, recipe.task_name)
    kind = str(dist.kind)
    if kind not in kinds():
        raise UserError(
            f"task {recipe.task_name!r}: no learner for {kind!r} tasks "
            f"(known kinds: {', '.join(kinds())})"
        )
    try:
        learner_cls = pkgutil.resolve_name(combination(recipe, kind).learner)
        learner: MetaLearner[Any] = learner_cls.from_recipe(recipe, dist, device)
    except ConfigError as e:
        raise ConfigError(f"{recipe.source}: {e}" if recipe.source else str(e)) from None
    return learner


if TYPE_CHECKING:  # mypy checks here that every learner meets the whole contract

    def _contract(
        supervised: supervised.SupervisedMetaLearner,
        sb3: sb3_ppo.SB3MetaLearner,
        batched: batched_rl.BatchedRLMetaLearner,
        maml: maml_rl.MAMLRLMetaLearner,
        rl2_learner: rl2.RL2MetaLearner,
    ) -> list[MetaLearner[Any]]:
        return [supervised, sb3, batched, maml, rl2_learner]

    from metarl.learners import batched_rl, maml_rl, rl2, sb3_ppo, supervised


__all__ = ["build_meta_learner", "distribution"]
