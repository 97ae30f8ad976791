"""The task registry and the recipe catalog.

Distributions are registered by name with an entry point (`"package.module:Class"`, imported
only when first used, as Gymnasium does) or a callable. Recipes are TOML files: the shipped
catalog (`tasks/*.toml`) or any path a user gives.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import metarl
from metarl.config import Recipe, load_recipe_file
from metarl.errors import UserError
from metarl.protocol import TaskDistribution


@dataclass(frozen=True)
class TaskSpec:
    """A registered task distribution."""

    name: str
    entry_point: str | Callable[..., TaskDistribution]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def make(self, **options: Any) -> TaskDistribution:
        factory = self.entry_point
        if isinstance(factory, str):
            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        try:
            return factory(**{**self.kwargs, **options})
        except TypeError as e:
            raise UserError(f"task {self.name!r}: bad options {sorted(options)} ({e})") from None


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(
    name: str,
    entry_point: str | Callable[..., TaskDistribution],
    *,
    kwargs: dict[str, Any] | None = None,
    description: str = "",
    overwrite: bool = False,
) -> TaskSpec:
    """Register a task distribution under `name`.

    Example:
        >>> register_task("my-sine", "metarl.sine:SineDistribution", kwargs={"phase": [0, 3.14]})
    """
    if name in _REGISTRY and not overwrite:
        raise UserError(f"task {name!r} is already registered (pass overwrite=True to replace)")
    spec = TaskSpec(name, entry_point, dict(kwargs or {}), description)
    _REGISTRY[name] = spec
    return spec


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def task_spec(name: str) -> TaskSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = sorted(_REGISTRY)
        raise UserError(
            f"unknown task distribution {name!r}; registered: {', '.join(known)}."
            + _did_you_mean(name, known)
        ) from None


def make_distribution(name: str, **options: Any) -> TaskDistribution:
    """Instantiate the registered distribution `name` with `options`."""
    return task_spec(name).make(**options)


def registered_tasks() -> list[TaskSpec]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


# --- the recipe catalog -------------------------------------------------------------------


def catalog_dir(kind: str = "tasks") -> Path:
    """The shipped catalog folder (`tasks` or `envs`): inside the wheel, or the source tree."""
    package = Path(metarl.__file__).parent
    for candidate in (package / "catalog" / kind, package.parent / kind):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"metarl's {kind} catalog is missing from the installation ({package})")


def catalog_recipes() -> dict[str, Path]:
    """Recipe name -> file for every recipe in the shipped catalog."""
    return {p.stem: p for p in sorted(catalog_dir("tasks").glob("*.toml"))}


def resolve_recipe(name_or_path: str) -> Recipe:
    """A catalog name (`sine`) or a path to a recipe file (`my/sine.toml`)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UserError(f"recipe file {name_or_path!r} does not exist")
        return load_recipe_file(path)
    recipes = catalog_recipes()
    if name_or_path not in recipes:
        known = sorted(recipes)
        raise UserError(
            f"unknown task {name_or_path!r}; catalog recipes: {', '.join(known)} "
            "(or give a path to a .toml recipe)." + _did_you_mean(name_or_path, known)
        )
    recipe = load_recipe_file(recipes[name_or_path])
    recipe.source = name_or_path
    return recipe


# --- built-in distributions ---------------------------------------------------------------

register_task(
    "sine",
    "metarl.sine:SineDistribution",
    description="y = A sin(x + b): A ~ U[0.1, 5], b ~ U[0, 2pi], x in [-5, 5] (Reptile paper)",
)

register_task(
    "omniglot",
    "metarl.data.omniglot:OmniglotDistribution",
    description="N-way Omniglot characters, 28x28, rotations as new classes (Reptile paper); "
    "needs `metarl data fetch omniglot` or `metarl data import omniglot PATH`",
)

register_task(
    "miniimagenet",
    "metarl.data.miniimagenet:MiniImageNetDistribution",
    description="N-way Mini-ImageNet, 84x84 RGB, Ravi & Larochelle 64/16/20 class split "
    "(Reptile paper); needs `metarl data import miniimagenet PATH`",
)
