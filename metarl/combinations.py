"""What combines with what: one table of the supported combinations of algorithm, outer step,
RL engine (`[learner] backend`), inner update (`[learner] inner`) and inner steps, each row
naming the learner class that runs it, checked in one place before a learner is built.

`build_meta_learner` reads the recipe's choice (`Choice.from_recipe`, typed), finds its row
(`supported`: a refusal in one line naming the value, what is accepted beside the other
choices, and what the value runs with) and builds the row's learner, imported when first
used. The docs' table of combinations is generated from `SUPPORTED` (`markdown_table`,
written into the README by `scripts/tools/sync_readme.py`, tested equal to it).

A row names the outer steps it takes by what they are (`Steps`), not by name: the steps
themselves say what they serve in their registry (`metarl.outer_registry.OUTER_STEPS`),
read each time a row's `outer` is asked, so a step registered later is in the table.

A new RL engine or learner is its module and one row here; a new outer step is its module
and its registry line.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from metarl.config import Algorithm, OuterOptimizerName, Recipe
from metarl.errors import ConfigError
from metarl.outer_registry import OUTER_STEPS, OuterStepEntry


class Inner(str, enum.Enum):
    """The batched engine's inner update: SB3's PPO update, or MAML-RL's policy-gradient
    step."""

    PPO = "ppo"
    VPG = "vpg"


DEFAULT_BACKEND = "batched"
"""The engine of an RL recipe that names none."""
DEFAULT_INNER = Inner.PPO
"""The inner update of an engine with a choice of them, where the recipe names none."""


class Steps(enum.Enum):
    """Which registered outer steps a row takes (of those serving its kind and algorithms)."""

    GRADIENT = "gradient"
    """The optimizers on the meta-gradient (`learner_steps` false)."""
    LEARNER = "learner"
    """The steps the learner takes on its own outer objective (`learner_steps` true)."""
    ANY = "any"
    """Both."""
    BOUNDED = "bounded"
    """The learner steps written for exactly the row's `inner_steps` (ProMP's one step)."""


@dataclass(frozen=True)
class Combination:
    """One row of `SUPPORTED`: what a learner runs."""

    kind: str
    """The task distribution's kind ("supervised" or "rl")."""
    algorithms: tuple[Algorithm, ...]
    steps: Steps | tuple[str, ...]
    """The outer steps taken: those of a kind (read from the registry), or by name where
    the learner itself allows no other (RL²'s PPO step applied whole)."""
    learner: str
    """The learner class ("module:Class"), imported when the row is chosen."""
    backend: str | None = None
    """The RL engine (`[learner] backend`); None: the learner has no engine to choose."""
    inner: tuple[Inner, ...] = ()
    """The inner updates taken (`[learner] inner`); empty: the learner has no such choice."""
    inner_steps: tuple[int, int | None] = (0, None)
    """The least and the most `train.inner_steps` (None: no bound)."""
    every_step: bool = False
    """Whether `[learner] outer_every_step = true` is taken (the outer objective judges each
    inner step's policy: second-order MAML-RL)."""
    why: str = ""
    """Why the row is as narrow as it is (said in its refusals; a `Steps.BOUNDED` row's is
    its steps')."""

    @property
    def outer(self) -> tuple[OuterOptimizerName, ...]:
        """The outer steps this row takes, in the registry's order."""
        if isinstance(self.steps, tuple):
            return tuple(OuterOptimizerName(name) for name in self.steps)
        return tuple(OuterOptimizerName(n) for n, e in OUTER_STEPS.items() if self.serves(e))

    def serves(self, entry: OuterStepEntry) -> bool:
        """Whether this row takes the registered step `entry` (`Steps` says which)."""
        algorithms = {a.value for a in self.algorithms}
        if self.kind not in entry.kinds or not algorithms <= set(entry.algorithms or algorithms):
            return False
        if self.steps is Steps.BOUNDED:
            return entry.learner_steps and entry.inner_steps == self.inner_steps
        if entry.learner_steps and self.steps is Steps.GRADIENT:
            return False
        if not entry.learner_steps and self.steps is Steps.LEARNER:
            return False
        return entry.inner_steps is None

    @property
    def reason(self) -> str:
        """Why the row is as narrow as it is: its own `why`, else its bounded steps'."""
        if self.why or self.steps is not Steps.BOUNDED:
            return self.why
        return "; ".join(dict.fromkeys(OUTER_STEPS[o.value].why for o in self.outer))


FIRST_ORDER = (Algorithm.REPTILE, Algorithm.FOMAML)


def _maml_rl(
    algorithm: Algorithm,
    steps: Steps,
    inner_steps: tuple[int, int | None] = (0, None),
    why: str = "",
) -> Combination:
    """A row of second-order MAML-RL: the batched engine's VPG step, differentiated through
    (`outer_every_step` taken)."""
    return Combination(
        "rl",
        (algorithm,),
        steps,
        "metarl.learners.maml_rl:MAMLRLMetaLearner",
        backend="batched",
        inner=(Inner.VPG,),
        inner_steps=inner_steps,
        every_step=True,
        why=why,
    )


SUPPORTED: list[Combination] = [
    Combination(
        "supervised",
        (*FIRST_ORDER, Algorithm.MAML, Algorithm.IMAML, Algorithm.METASGD, Algorithm.GRADIENTS),
        Steps.GRADIENT,
        "metarl.learners.supervised:SupervisedMetaLearner",
    ),
    Combination(
        "rl",
        FIRST_ORDER,
        Steps.GRADIENT,
        "metarl.learners.batched_rl:BatchedRLMetaLearner",
        backend="batched",
        inner=(Inner.PPO, Inner.VPG),
    ),
    Combination(
        "rl", FIRST_ORDER, Steps.GRADIENT, "metarl.learners.sb3_ppo:SB3MetaLearner", backend="sb3"
    ),
    _maml_rl(
        Algorithm.MAML,
        Steps.ANY,
        why="second-order MAML-RL differentiates through its policy-gradient step",
    ),
    _maml_rl(Algorithm.MAML, Steps.BOUNDED, inner_steps=(0, 1)),
    _maml_rl(
        Algorithm.METASGD,
        Steps.LEARNER,
        inner_steps=(1, None),
        why="Meta-SGD for RL learns its inner rates in MAML-RL's trust-region step",
    ),
    Combination(
        "rl",
        (Algorithm.RL2,),
        ("sgd",),
        "metarl.learners.rl2:RL2MetaLearner",
        why="RL²'s step is PPO's (learning rate train.inner_lr), applied whole",
    ),
]
"""Every supported combination, one row per learner and narrowing. Where the recipe leaves
the backend or the inner update out, it is `DEFAULT_BACKEND` / `DEFAULT_INNER`."""


def backends() -> list[str]:
    """The RL engines, in the table's order."""
    return list(dict.fromkeys(r.backend for r in SUPPORTED if r.backend is not None))


def check_backend(backend: Any) -> str:
    """`backend` if it names an engine, else the one-line refusal naming what exists."""
    if backend not in backends():
        raise ConfigError(f"learner.backend = {backend!r}: expected one of {', '.join(backends())}")
    return str(backend)


@dataclass(frozen=True)
class Choice:
    """A recipe's choice among `SUPPORTED`, typed: what `supported` checks."""

    kind: str
    algorithm: Algorithm
    outer: OuterOptimizerName
    backend: str | None
    """As given in `[learner]` (checked against `backends()`), else None."""
    inner: Inner | None
    """As given in `[learner]`, else None."""
    inner_steps: int
    every_step: bool

    @classmethod
    def from_recipe(cls, recipe: Recipe, kind: str) -> Choice:
        learner = recipe.learner if kind == "rl" else {}
        backend = learner.get("backend")
        inner = learner.get("inner")
        if inner is not None and inner not in {i.value for i in Inner}:
            raise ConfigError(
                f"learner.inner = {inner!r}: expected one of {', '.join(i.value for i in Inner)}"
            )
        return cls(
            kind,
            recipe.train.algorithm,
            recipe.train.outer_optimizer,
            None if backend is None else check_backend(backend),
            None if inner is None else Inner(inner),
            recipe.train.inner_steps,
            learner.get("outer_every_step") is True,
        )


def _quoted(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value.value}"' if isinstance(value, enum.Enum) else f'"{value}"'


def _steps(bounds: tuple[int, int | None]) -> str:
    low, high = bounds
    if high is None:
        return f"{low} or more"
    return " or ".join(str(k) for k in range(low, high + 1))


@dataclass(frozen=True)
class _Dimension:
    key: str
    value: Callable[[Choice, list[Combination]], Any]
    """The choice's value, defaults applied (None: nothing to check)."""
    accepts: Callable[[Combination, Any], bool]
    accepted: Callable[[Combination], list[str]]

    @property
    def short(self) -> str:
        """The key without its table (`inner` of `learner.inner`)."""
        return self.key.partition(".")[2]


def _listed(
    key: str,
    value: Callable[[Choice, list[Combination]], Any],
    listed: Callable[[Combination], Sequence[Any]],
    *,
    optional: bool = False,
) -> _Dimension:
    """A dimension whose rows list the values they take (`optional`: a row that lists none
    has no such choice, and takes any)."""
    return _Dimension(
        key,
        value,
        lambda r, v: (optional and not listed(r)) or v in listed(r),
        lambda r: [_quoted(x) for x in listed(r)],
    )


def _backend(choice: Choice, rows: list[Combination]) -> str | None:
    if not any(r.backend for r in rows):
        return None
    return choice.backend or DEFAULT_BACKEND


def _inner(choice: Choice, rows: list[Combination]) -> Inner | None:
    if not any(r.inner for r in rows):
        return None
    return choice.inner or DEFAULT_INNER


def _in_steps(row: Combination, k: int) -> bool:
    low, high = row.inner_steps
    return low <= k and (high is None or k <= high)


DIMENSIONS = (
    _listed("train.algorithm", lambda c, _: c.algorithm, lambda r: r.algorithms),
    _listed("train.outer_optimizer", lambda c, _: c.outer, lambda r: r.outer),
    _listed(
        "learner.backend", _backend, lambda r: (r.backend,) if r.backend else (), optional=True
    ),
    _listed("learner.inner", _inner, lambda r: r.inner, optional=True),
    _Dimension(
        "train.inner_steps",
        lambda c, _: c.inner_steps,
        _in_steps,
        lambda r: [_steps(r.inner_steps)],
    ),
    _Dimension(
        "learner.outer_every_step",
        lambda c, _: True if c.every_step else None,
        lambda r, v: r.every_step,
        lambda r: ["false"],
    ),
)


def supported(choice: Choice) -> Combination:
    """The row of `SUPPORTED` that runs `choice`, or a `ConfigError` in one line: the first
    value that no row left by the values before it takes, with what those rows take, why
    (where one row is left), and the other choices that value runs with."""
    rows = [r for r in SUPPORTED if r.kind == choice.kind]
    context = [f"{_kind(choice.kind)} tasks"]
    for dim in DIMENSIONS:
        value = dim.value(choice, rows)
        if value is None:
            continue
        fits = [r for r in rows if dim.accepts(r, value)]
        if not fits:
            raise ConfigError(_refusal(dim, value, rows, context, choice))
        rows = fits
        context.append(f"{dim.key} = {_said(value)}")
    return rows[0]


def _kind(kind: str) -> str:
    return "RL" if kind == "rl" else kind


def _said(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool | int) else _quoted(value)


def _refusal(
    dim: _Dimension, value: Any, rows: list[Combination], context: list[str], choice: Choice
) -> str:
    accepted = list(dict.fromkeys(a for r in rows for a in dim.accepted(r)))
    said = _said(value)
    message = f"{dim.key} = {said}: use {dim.short} = {' or '.join(accepted)} with "
    message += ", ".join(context)
    whys = {r.reason for r in rows if r.reason}
    if len(whys) == 1:
        message += f" ({whys.pop()})"
    # the closest rows that take the value: of the same kind of tasks where there are any,
    # and of those the ones that differ from the choice the least
    others = [
        (r.kind != choice.kind, len(parts), ", ".join(parts))
        for r in SUPPORTED
        if dim.accepted(r) and dim.accepts(r, value)
        for parts in [_differs(r, choice, dim)]
    ]
    if others:
        fewest = min(others)[:2]
        closest = dict.fromkeys(text for far, n, text in others if (far, n) == fewest)
        message += f"; {dim.short} = {said} runs with " + ", or with ".join(closest)
    return message


def _differs(row: Combination, choice: Choice, upto: _Dimension) -> list[str]:
    """The row's values of the dimensions before `upto` that the choice does not meet."""
    if row.kind != choice.kind:
        return [f"{_kind(row.kind)} tasks"]
    parts = []
    for dim in DIMENSIONS[: DIMENSIONS.index(upto)]:
        value = dim.value(choice, [row])
        if value is not None and not dim.accepts(row, value):
            parts.append(f"{dim.short} = {' or '.join(dim.accepted(row))}")
    return parts


def combination(recipe: Recipe, kind: str) -> Combination:
    """The recipe's row of `SUPPORTED` (its typed choice checked)."""
    return supported(Choice.from_recipe(recipe, kind))


def kinds() -> list[str]:
    """The task kinds some learner adapts."""
    return list(dict.fromkeys(r.kind for r in SUPPORTED))


def markdown_table(rows: Sequence[Combination] = SUPPORTED) -> str:
    """The docs' table of supported combinations, one line per row of `SUPPORTED`."""

    def names(values: Sequence[Any]) -> str:
        return ", ".join(f"`{v.value}`" for v in values) or "—"

    lines = [
        "| tasks | algorithm | outer step | backend | inner update | inner steps | learner |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        backend = f"`{r.backend}`" if r.backend else "—"
        learner = r.learner.rpartition(":")[2]
        cells = [_kind(r.kind), names(r.algorithms), names(r.outer), backend, names(r.inner)]
        lines.append(f"| {' | '.join([*cells, _steps(r.inner_steps), f'`{learner}`'])} |")
    return "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_INNER",
    "SUPPORTED",
    "Choice",
    "Combination",
    "Inner",
    "Steps",
    "backends",
    "check_backend",
    "combination",
    "kinds",
    "markdown_table",
    "supported",
]
