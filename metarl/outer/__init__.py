"""The outer steps (`train.outer_optimizer`), one class each, found by name in the registry
(`metarl.outer_registry.OUTER_STEPS`, which says what each serves): the trainer builds the
recipe's step once and calls its `step` every iteration, never asking which one it is.

A new outer step is a class meeting `metarl.protocol.OuterStep` with a
`from_recipe(recipe, learner)` constructor (which refuses a learner it cannot step, in one
line), and its line in the registry.
"""

from __future__ import annotations

import pkgutil
from typing import Any

from metarl.config import Recipe
from metarl.outer_registry import OUTER_STEPS
from metarl.protocol import MetaLearner, OuterStep


def build_outer_step(recipe: Recipe, learner: MetaLearner[Any]) -> OuterStep:
    """The recipe's outer step on `learner`'s model."""
    cls = pkgutil.resolve_name(OUTER_STEPS[recipe.train.outer_optimizer.value].cls)
    step: OuterStep = cls.from_recipe(recipe, learner)
    return step


def checkpoint_state(optimizer: dict[str, Any], learner: dict[str, Any]) -> dict[str, Any]:
    """The outer step's state in a checkpoint. Checkpoints written before the outer steps
    held their own state kept ProMP's inner-KL coefficient in the learner's: it is moved over
    (the learner ignores it), so those runs resume exactly."""
    if "promp_kl_coeff" in learner and "promp_kl_coeff" not in optimizer:
        return {**optimizer, "promp_kl_coeff": learner["promp_kl_coeff"]}
    return optimizer


__all__ = ["build_outer_step", "checkpoint_state"]
