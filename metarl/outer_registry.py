"""The outer steps' registry (`train.outer_optimizer`): one entry per step, the only place a
step is named. An entry says where its class is and what it serves: the task kinds and
algorithms, whether it is a step the learner takes on its own objective (`learner_steps`) or
an optimizer on the meta-gradient, and the inner steps its objective is written for. The
recipe's check of the name (`OuterOptimizerName`), the table of what combines
(`metarl.combinations`) and the trainer's step (`metarl.outer.build_outer_step`) all read it.

- `sgd`, `adam` (`metarl.outer.optimizers`): torch's optimizer on the meta-gradient;
- `trpo` (`metarl.rl.trpo`): MAML-RL's trust region on the policies' KL;
- `promp` (`metarl.rl.promp`): ProMP's clipped objective, several Adam steps per batch.

A new outer step is a class meeting `metarl.protocol.OuterStep` with a
`from_recipe(recipe, learner)` constructor, and its line in `OUTER_STEPS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class OuterStepEntry:
    """A registered outer step: its class and what it serves."""

    cls: str
    """The class ("module:Class"), imported when the step is built."""
    kinds: tuple[str, ...] = ("supervised", "rl")
    """The task kinds whose learners it steps."""
    algorithms: tuple[str, ...] | None = None
    """The `train.algorithm` values it steps (None: every one a learner of `kinds` runs)."""
    learner_steps: bool = False
    """Whether it re-evaluates the learner's outer objective (TRPO, ProMP: the learner must
    offer one) rather than applying an optimizer to the meta-gradient."""
    inner_steps: tuple[int, int | None] | None = None
    """The `train.inner_steps` its objective is written for (None: any the learner takes);
    a bounded step serves only the table's rows of exactly that bound."""
    why: str = ""
    """Why it serves no more than it does (said in refusals)."""


OUTER_STEPS: dict[str, OuterStepEntry] = {
    "sgd": OuterStepEntry("metarl.outer.optimizers:SGDStep"),
    "adam": OuterStepEntry("metarl.outer.optimizers:AdamStep"),
    "trpo": OuterStepEntry(
        "metarl.rl.trpo:TRPOStep", ("rl",), ("maml", "metasgd"), learner_steps=True
    ),
    "promp": OuterStepEntry(
        "metarl.rl.promp:ProMPStep",
        ("rl",),
        ("maml",),
        learner_steps=True,
        inner_steps=(0, 1),
        why="ProMP's outer objective is written for one policy-gradient step",
    ),
}
"""`train.outer_optimizer` -> its entry, in the order the docs and refusals list them."""


class OuterOptimizerName(str):
    """A registered outer step's name (`train.outer_optimizer`): a string checked against
    `OUTER_STEPS` when made, so that a step registered later (a plugin, a test) is a name
    like the shipped ones; an enum could not be extended from outside.

    Examples:
        >>> from metarl.outer_registry import OuterOptimizerName
        >>> OuterOptimizerName("trpo").learner_steps, OuterOptimizerName.SGD.value
        (True, 'sgd')
    """

    SGD: ClassVar[OuterOptimizerName]
    ADAM: ClassVar[OuterOptimizerName]
    TRPO: ClassVar[OuterOptimizerName]
    PROMP: ClassVar[OuterOptimizerName]

    def __new__(cls, value: str) -> OuterOptimizerName:
        if not isinstance(value, str) or value not in OUTER_STEPS:
            raise ValueError(f"{value!r}: expected one of {', '.join(names())}")
        return super().__new__(cls, value)

    @property
    def value(self) -> str:
        """The name as written in a recipe."""
        return str.__str__(self)

    @property
    def entry(self) -> OuterStepEntry:
        """Its registry entry."""
        return OUTER_STEPS[self.value]

    @property
    def learner_steps(self) -> bool:
        """See `OuterStepEntry.learner_steps`."""
        return self.entry.learner_steps

    def __repr__(self) -> str:
        return f"OuterOptimizerName({self.value!r})"


OuterOptimizerName.SGD = OuterOptimizerName("sgd")
OuterOptimizerName.ADAM = OuterOptimizerName("adam")
OuterOptimizerName.TRPO = OuterOptimizerName("trpo")
OuterOptimizerName.PROMP = OuterOptimizerName("promp")


def names() -> list[str]:
    """The registered outer steps' names, in the registry's order."""
    return list(OUTER_STEPS)


__all__ = ["OUTER_STEPS", "OuterOptimizerName", "OuterStepEntry", "names"]
