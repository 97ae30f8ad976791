"""Which Meta-World skills have a batched step: the registry of `metaworld_rewards.Skill`s.

A skill's translation lives in `metarl.envs.metaworld_rewards` (and the modules beside it);
this module only collects them by Meta-World env name. A skill not here runs on Meta-World's
own env (`metarl.envs.metaworld_vector.make_metaworld_vector` returns None for it).
"""

from __future__ import annotations

from metarl.envs.metaworld_rewards import PickPlace, Push, Reach, Skill
from metarl.envs.metaworld_skills_ml10a import ML10_SKILLS_A
from metarl.envs.metaworld_skills_ml45c import ML45_SKILLS_C

SKILLS: dict[str, type[Skill]] = {
    cls.name: cls for cls in (Reach, Push, PickPlace) + ML10_SKILLS_A + ML45_SKILLS_C
}
"""The skills with a batched step, by Meta-World env name."""


def skill(name: str) -> Skill | None:
    """The batched skill of Meta-World env `name`, or None (it runs on Meta-World's own env)."""
    make = SKILLS.get(name)
    return None if make is None else make()


__all__ = ["SKILLS", "skill"]
