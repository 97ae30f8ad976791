"""Which Meta-World skills have a batched step: the registry of `metaworld_rewards.Skill`s.

A skill's translation lives in `metarl.envs.metaworld_rewards` (and the modules beside it);
this module only collects them by Meta-World env name. A skill not here runs on Meta-World's
own env (`metarl.envs.metaworld_vector.make_metaworld_vector` returns None for it).
"""

from __future__ import annotations

from metarl.envs.metaworld_rewards import PickPlace, Push, Reach, Skill
from metarl.envs.metaworld_skills_ml10a import ML10_SKILLS_A
from metarl.envs.metaworld_skills_ml10b import (
    Basketball,
    PegInsertSide,
    ShelfPlace,
    Sweep,
    SweepInto,
)
from metarl.envs.metaworld_skills_ml45c import ML45_SKILLS_C
from metarl.envs.metaworld_skills_ml45d import ML45_SKILLS_D
from metarl.envs.metaworld_skills_ml45e import ML45_SKILLS_E

TRANSLATED: tuple[type[Skill], ...] = (
    (Reach, Push, PickPlace, Sweep, SweepInto, Basketball, PegInsertSide, ShelfPlace)
    + ML10_SKILLS_A
    + ML45_SKILLS_C
    + ML45_SKILLS_D
    + ML45_SKILLS_E
)
SKILLS: dict[str, type[Skill]] = {cls.name: cls for cls in TRANSLATED}
"""The skills with a batched step, by Meta-World env name."""


def skill(name: str) -> Skill | None:
    """The batched skill of Meta-World env `name`, or None (it runs on Meta-World's own env)."""
    make = SKILLS.get(name)
    return None if make is None else make()


__all__ = ["SKILLS", "skill"]
