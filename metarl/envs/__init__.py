"""Parametrized Gymnasium environment families for meta-RL.

Importing `metarl` (or `metarl.envs`) registers every family of the `envs/` catalog with
Gymnasium as `metarl/<Name>-v0` (Gymnasium 1.x finds plugins only this way) and as a task
distribution named after the file (`navigation2d`, `cartpole-physics`, ...). Registration
reads the TOML files only: no env is built and MuJoCo is not imported until `gymnasium.make`.

Example:
    >>> import gymnasium, numpy as np, metarl
    >>> env = gymnasium.make("metarl/Navigation2D-v0")
    >>> task = env.get_wrapper_attr("sample_tasks")(1, np.random.default_rng(0))[0]
    >>> obs, info = env.reset(seed=0, options={"task": task})
"""

from __future__ import annotations

from pathlib import Path

import gymnasium

from metarl.envs.spec import FamilySpec, ParamDist, load_family
from metarl.errors import ConfigError, UserError
from metarl.registry import catalog_dir, register_task

__all__ = [
    "FamilySpec",
    "ParamDist",
    "family",
    "load_family",
    "register_family",
    "register_family_file",
    "registered_families",
]

_FAMILIES: dict[str, FamilySpec] = {}


def register_family(spec: FamilySpec) -> FamilySpec:
    """Register `spec` with Gymnasium and as a task distribution (named `spec.task_name`).

    Args:
        spec: A family, as `load_family` reads it from a family file.

    Returns:
        `spec`.

    Raises:
        UserError: Its env id is registered with Gymnasium already.
        ConfigError: Its `base` is not a Gymnasium env id.
    """
    if spec.env_id in gymnasium.registry:
        raise UserError(f"{spec.source}: {spec.env_id} is already registered with Gymnasium")
    max_steps = spec.max_episode_steps
    if spec.base is not None:
        try:
            base_spec = gymnasium.spec(spec.base)
        except gymnasium.error.Error as e:
            raise ConfigError(
                f"{spec.source}: base = {spec.base!r} is not a Gymnasium env id ({e})"
            ) from None
        if max_steps is None:
            max_steps = base_spec.max_episode_steps
    register_task(
        spec.task_name,
        "metarl.envs.distribution:EnvFamilyDistribution",
        kwargs={"env_id": spec.env_id},
        description=f"{spec.env_id}: {spec.description}",
    )
    gymnasium.register(
        id=spec.env_id,
        entry_point=spec.entry_point,
        max_episode_steps=max_steps,
        kwargs=spec.env_kwargs(),
    )
    _FAMILIES[spec.env_id] = spec
    return spec


def register_family_file(path: str | Path) -> FamilySpec:
    """Register a family file of your own (same format as the catalog's, see `envs/README.md`).

    Args:
        path: The family's TOML file.

    Returns:
        The family, registered as the Gymnasium env `spec.env_id` and the task distribution
        `spec.task_name`.

    Raises:
        ConfigError: The file's settings are refused, naming the file and the key.
        UserError: Its env id is registered already.
    """
    return register_family(load_family(Path(path)))


def registered_families() -> list[FamilySpec]:
    """Every family registered so far, by env id.

    Examples:
        >>> from metarl.envs import registered_families
        >>> "metarl/Navigation2D-v0" in [f.env_id for f in registered_families()]
        True
    """
    return [_FAMILIES[k] for k in sorted(_FAMILIES)]


def family(env_id: str) -> FamilySpec:
    """The family registered as `env_id`.

    Args:
        env_id: Its Gymnasium id, e.g. "metarl/Navigation2D-v0".

    Returns:
        The family: its parameters, entry point and the task distribution's name.

    Raises:
        UserError: No such family; the message lists the registered ids.

    Examples:
        >>> from metarl.envs import family
        >>> family("metarl/Navigation2D-v0").task_name
        'navigation2d'
    """
    try:
        return _FAMILIES[env_id]
    except KeyError:
        raise UserError(
            f"unknown environment family {env_id!r}; registered: {', '.join(sorted(_FAMILIES))}"
        ) from None


def _register_catalog() -> None:
    for path in sorted(catalog_dir("envs").glob("*.toml")):
        register_family_file(path)


_register_catalog()


def _register_metaworld() -> None:
    # by name only: Meta-World itself is imported when a distribution is built
    from metarl.envs.metaworld import register_distributions

    register_distributions()


_register_metaworld()
