"""The outer steps (`train.outer_optimizer`), one class each, in one registry keyed by the
enum: the trainer builds the recipe's step once and calls its `step` every iteration, never
asking which one it is.

- `sgd`, `adam` (`metarl.outer.optimizers`): torch's optimizer on the meta-gradient;
- `trpo` (`metarl.rl.trpo`): MAML-RL's trust region on the policies' KL;
- `promp` (`metarl.rl.promp`): ProMP's clipped objective, several Adam steps per batch.

A new outer step is a class meeting `metarl.protocol.OuterStep` with a
`from_recipe(recipe, learner)` constructor (which refuses a learner it cannot step, in one
line), and its line here.
"""

from __future__ import annotations

import pkgutil
from typing import Any

from metarl.config import OuterOptimizerName, Recipe
from metarl.protocol import MetaLearner, OuterStep

OUTER_STEPS: dict[OuterOptimizerName, str] = {
    OuterOptimizerName.SGD: "metarl.outer.optimizers:SGDStep",
    OuterOptimizerName.ADAM: "metarl.outer.optimizers:AdamStep",
    OuterOptimizerName.TRPO: "metarl.rl.trpo:TRPOStep",
    OuterOptimizerName.PROMP: "metarl.rl.promp:ProMPStep",
}
"""`train.outer_optimizer` -> its class (imported when first used)."""


def build_outer_step(recipe: Recipe, learner: MetaLearner[Any]) -> OuterStep:
    """The recipe's outer step on `learner`'s model."""
    cls = pkgutil.resolve_name(OUTER_STEPS[recipe.train.outer_optimizer])
    step: OuterStep = cls.from_recipe(recipe, learner)
    return step


def checkpoint_state(optimizer: dict[str, Any], learner: dict[str, Any]) -> dict[str, Any]:
    """The outer step's state in a checkpoint. Checkpoints written before the outer steps
    held their own state kept ProMP's inner-KL coefficient in the learner's: it is moved over
    (the learner ignores it), so those runs resume exactly."""
    if "promp_kl_coeff" in learner and "promp_kl_coeff" not in optimizer:
        return {**optimizer, "promp_kl_coeff": learner["promp_kl_coeff"]}
    return optimizer


__all__ = ["OUTER_STEPS", "build_outer_step", "checkpoint_state"]
