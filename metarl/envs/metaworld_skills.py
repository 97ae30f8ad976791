"""Which Meta-World skills have a batched step: the registry of `metaworld_rewards.Skill`s.

A skill's translation lives in `metarl.envs.metaworld_rewards` and the `metaworld_skills_*`
modules beside it; this module collects every `Skill` class those modules define with a
Meta-World env `name` (the family bases in `metarl.envs.metaworld_families` have none), by that
name. Each of them passes the bit-for-bit test (`tests/test_metaworld_vector.py`). A skill not
here runs on Meta-World's own env (`metarl.envs.metaworld_vector.make_metaworld_vector`
returns None for it).
"""

from __future__ import annotations

from types import ModuleType

from metarl.envs import metaworld_rewards as rewards
from metarl.envs import metaworld_skills_ml10a as ml10a
from metarl.envs import metaworld_skills_ml10b as ml10b
from metarl.envs import metaworld_skills_ml45c as ml45c
from metarl.envs import metaworld_skills_ml45d as ml45d
from metarl.envs import metaworld_skills_ml45e as ml45e
from metarl.envs.metaworld_rewards import Skill

MODULES: tuple[ModuleType, ...] = (rewards, ml10a, ml10b, ml45c, ml45d, ml45e)
"""The modules whose skills are registered."""


def defined_skills(module: ModuleType) -> list[type[Skill]]:
    """The skills `module` defines: its own `Skill` subclasses that set a Meta-World env
    `name` (not the bases they share, nor the skills it imports)."""
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Skill)
        and value.__module__ == module.__name__
        and "name" in vars(value)
    ]


SKILLS: dict[str, type[Skill]] = {
    cls.name: cls for module in MODULES for cls in defined_skills(module)
}
"""The skills with a batched step, by Meta-World env name."""


def skill(name: str) -> Skill | None:
    """The batched skill of Meta-World env `name`, or None (it runs on Meta-World's own env)."""
    make = SKILLS.get(name)
    return None if make is None else make()


__all__ = ["MODULES", "SKILLS", "defined_skills", "skill"]
