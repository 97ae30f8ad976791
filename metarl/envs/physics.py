"""Physics families: any Gymnasium env whose dynamics read plain attributes of its unwrapped
object (CartPole's `length`, Pendulum's `m`, `l`, `g`), varied per task from a TOML file.

A task is a dict attribute -> value; `set_task` writes the values onto `env.unwrapped` and
they take effect from the next step. Some envs cache quantities derived from their attributes
in `__init__` (CartPole's `total_mass` and `polemass_length`); a small hook per env class
(`DERIVED`) recomputes them, since setting the attribute alone would silently leave the old
dynamics in place. Add a hook here when a new base env caches something.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

from metarl.envs.wrapper import TaskWrapper, make_base
from metarl.errors import ConfigError


def _cartpole(env: Any) -> None:
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


DERIVED: dict[str, Callable[[Any], None]] = {
    "gymnasium.envs.classic_control.cartpole.CartPoleEnv": _cartpole,
}
"""Env class (module.qualname) -> recompute what its `__init__` derived from attributes."""


def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def numeric_attributes(env: Any) -> list[str]:
    """The public number-valued attributes of `env`: what a physics family can vary."""
    return sorted(
        k
        for k, v in vars(env).items()
        if not k.startswith("_") and isinstance(v, numbers.Real) and not isinstance(v, bool)
    )


class PhysicsFamily(TaskWrapper):
    """A base env with task-dependent attributes; a fresh env has the base env's defaults.

    Args:
        base: the Gymnasium env id (e.g. `CartPole-v1`).
        params: attribute -> distribution, as in the family file's `[params]`.
        source: the family file, named in error messages.
    """

    def __init__(
        self,
        base: str,
        params: Mapping[str, Any],
        source: str = "<python>",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(make_base(base, render_mode))
        self.family_name = f"{source} ({base})"
        self._init_tasks(params, {}, source)
        target = self.env.unwrapped
        existing = numeric_attributes(target)
        for name in self.params:
            if name not in existing:
                raise ConfigError(
                    f"{source}: params.{name}: {base} has no number attribute {name!r}; "
                    f"its attributes: {', '.join(existing)}"
                )
        self._defaults = {name: float(getattr(target, name)) for name in self.params}
        self._derive = DERIVED.get(_class_name(target))
        self.set_task(self._defaults)

    def task_defaults(self) -> dict[str, float]:
        return dict(self._defaults)

    def _apply_task(self, task: dict[str, Any]) -> None:
        target = self.env.unwrapped
        for name, value in task.items():
            setattr(target, name, value)
        if self._derive is not None:
            self._derive(target)
