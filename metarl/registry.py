"""The task registry and the recipe catalog.

Distributions are registered by name with an entry point (`"package.module:Class"`, imported
only when first used, as Gymnasium does) or a callable. Recipes are TOML files: the shipped
catalog (`tasks/*.toml`) or any path a user gives.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata
import importlib.resources
import inspect
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from metarl.config import Recipe, SupervisedSettings, coerce_value, load_recipe_file
from metarl.errors import ConfigError, UserError, did_you_mean
from metarl.protocol import BuildsModel, TaskDistribution


@dataclass(frozen=True)
class TaskSpec:
    """A registered task distribution."""

    name: str
    entry_point: str | Callable[..., TaskDistribution]
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def factory(self) -> Callable[..., TaskDistribution]:
        """The entry point, imported now if it is a `"module:attr"` string."""
        if isinstance(self.entry_point, str):
            factory = import_entry_point(self.entry_point, f"task {self.name!r}: entry_point")
            if not callable(factory):
                raise UserError(
                    f"task {self.name!r}: entry_point = {self.entry_point!r} is a "
                    f"{type(factory).__name__}, not a class or function"
                )
            return cast("Callable[..., TaskDistribution]", factory)
        return self.entry_point

    def make(self, **options: Any) -> TaskDistribution:
        """The distribution built with the registration's `kwargs` and then `options`.

        Args:
            **options: the recipe's `[task]` options, over the registration's `kwargs`.

        Returns:
            The task distribution.

        Raises:
            UserError: The entry point cannot be imported or does not take the options.
        """
        factory = self.factory()
        try:
            return factory(**{**self.kwargs, **options})
        except TypeError as e:
            raise UserError(f"task {self.name!r}: bad options {sorted(options)} ({e})") from None


_REGISTRY: dict[str, TaskSpec] = {}


def import_entry_point(value: str, what: str) -> Any:
    """The object `"package.module:attr"` names, imported now; a `UserError` naming `what`
    and the value when the module or attribute does not exist or the module fails on import
    (whatever it raises: it is someone else's code).

    Args:
        value: `"package.module:attr"`.
        what: how the message names the value.

    Returns:
        The object.

    Raises:
        UserError: it does not import.
    """
    try:
        return pkgutil.resolve_name(value)
    except ModuleNotFoundError as e:
        reason = f"no module named {e.name!r}"
    except AttributeError as e:
        reason = f"not found ({e})"
    except ValueError as e:
        reason = f"expected package.module:Class ({e})"
    except Exception as e:  # noqa: BLE001 -- an import runs arbitrary code
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        reason = f"importing it raised {type(e).__name__}: {first}"
    raise UserError(f"{what} = {value!r}: cannot be imported, {reason}")


def check_env_entry_point(value: str, where: str) -> None:
    """Refuse a family's `entry_point` that cannot be imported or is not a Gymnasium env
    class (or a function making one), before `gymnasium.make` fails with a traceback.

    Args:
        value: the family's `entry_point`, `"package.module:Class"`.
        where: how the message names the family file.

    Raises:
        UserError: it does not import, or names neither an env class nor a function.
    """
    import gymnasium

    target = import_entry_point(value, f"{where}: entry_point")
    if isinstance(target, type) and not issubclass(target, gymnasium.Env):
        raise UserError(
            f"{where}: entry_point = {value!r} is the class {target.__qualname__}, "
            "not a gymnasium.Env"
        )
    if not callable(target):
        raise UserError(
            f"{where}: entry_point = {value!r} is a {type(target).__name__}, not an env class"
        )


def register_task(
    name: str,
    entry_point: str | Callable[..., TaskDistribution],
    *,
    kwargs: dict[str, Any] | None = None,
    description: str = "",
    overwrite: bool = False,
) -> TaskSpec:
    """Register a task distribution under `name`, for recipes (`[task] name`) and
    `make_distribution`.

    Args:
        name: The name recipes use; `metarl tasks list` shows it.
        entry_point: The distribution's class or factory, or a `"package.module:Class"`
            string imported only when the task is first used (as Gymnasium's `register`).
        kwargs: Options passed to every construction, under the recipe's own `[task]` keys.
        description: One line for `metarl tasks list`.
        overwrite: Replace a registration of the same name instead of refusing it.

    Returns:
        The registration.

    Raises:
        UserError: `name` is registered already and `overwrite` is false.

    Examples:
        >>> import metarl
        >>> spec = metarl.register_task(
        ...     "my-sine",
        ...     "metarl.distributions.sine:SineDistribution",
        ...     kwargs={"phase": [0.0, 3.14]},
        ...     description="sine regression, half the phases",
        ... )
        >>> dist = metarl.make_distribution("my-sine", amplitude=[1.0, 2.0])
        >>> dist.phase, dist.amplitude
        ((0.0, 3.14), (1.0, 2.0))
    """
    if name in _REGISTRY and not overwrite:
        raise UserError(f"task {name!r} is already registered (pass overwrite=True to replace)")
    spec = TaskSpec(name, entry_point, dict(kwargs or {}), description)
    _REGISTRY[name] = spec
    return spec


PLUGIN_GROUP = "metarl.tasks"
ENV_PLUGIN_GROUP = "metarl.envs"
_plugins_loaded = False


def load_plugins() -> None:
    """Register the task distributions that installed packages declare as entry points in
    the `metarl.tasks` group (`name = "package.module:Class"`), once, without importing them:
    like any registration, the entry point is imported when the task is first used."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        if ep.name in _REGISTRY:
            continue  # built-in and explicit registrations win over plugins of the same name
        register_task(ep.name, ep.value, description=f"plugin from {_distribution_of(ep)}")
    # `metarl.envs` entry points name a function that registers environment families
    # (`metarl.envs.register_family_file(...)`); families register their tasks too.
    for ep in importlib.metadata.entry_points(group=ENV_PLUGIN_GROUP):
        try:
            register = ep.load()
        except ImportError as e:
            raise UserError(
                f"env plugin {ep.name!r} ({ep.value}) cannot be imported: {e}"
            ) from None
        register()


def _distribution_of(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


def task_spec(name: str) -> TaskSpec:
    """The registration of `name` (installed plugins are registered first).

    Args:
        name: a registered task distribution's name (`sine`, `env-family`, a plugin's).

    Returns:
        Its registration: entry point, kwargs, description.

    Raises:
        UserError: No task of that name; the message lists the registered ones.
    """
    load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = sorted(_REGISTRY)
        raise UserError(
            f"unknown task distribution {name!r}; registered: {', '.join(known)}."
            + did_you_mean(name, known)
        ) from None


def make_distribution(name: str, **options: Any) -> TaskDistribution:
    """Instantiate the registered distribution `name` with `options`.

    Args:
        name: A registered task distribution (`metarl tasks list`, second table).
        **options: The distribution's options, as a recipe's `[task]` table gives them.

    Returns:
        The distribution: it samples tasks from a generator it is handed
        (`metarl.protocol.TaskDistribution`).

    Raises:
        UserError: An unknown name (with the registered ones) or options the distribution
            does not take.

    Examples:
        >>> import numpy as np
        >>> from metarl import make_distribution
        >>> from metarl.protocol import Split
        >>> sine = make_distribution("sine", amplitude=[1.0, 1.0])
        >>> task = sine.sample(3, np.random.default_rng(0), Split.TRAIN)[0]
        >>> task.amplitude
        1.0
        >>> batch = sine.episodes([task], np.random.default_rng(0), support=10, query=5)
        >>> tuple(batch.support_x.shape), tuple(batch.query_y.shape)
        ((1, 10, 1), (1, 5, 1))
    """
    return task_spec(name).make(**options)


def registered_tasks() -> list[TaskSpec]:
    """Every registered task distribution, by name (installed plugins included).

    Examples:
        >>> from metarl.registry import registered_tasks
        >>> "sine" in [spec.name for spec in registered_tasks()]
        True
    """
    load_plugins()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


# --- the recipe catalog -------------------------------------------------------------------


def catalog_dir(kind: str = "tasks") -> Path:
    """The shipped catalog folder (`tasks` or `envs`): inside the wheel, or the source tree.

    Args:
        kind: `tasks` (recipes) or `envs` (environment families).

    Returns:
        The folder.
    """
    # metarl is imported from files (not a zip), so its resources are a real folder
    package = Path(str(importlib.resources.files(__package__ or "metarl")))
    for candidate in (package / "catalog" / kind, package.parent / kind):
        if candidate.is_dir():
            return candidate
    raise RuntimeError(f"metarl's {kind} catalog is missing from the installation ({package})")


def catalog_recipes() -> dict[str, Path]:
    """Recipe name -> file for every recipe in the shipped catalog.

    Examples:
        >>> from metarl.registry import catalog_recipes
        >>> catalog_recipes()["sine"].name
        'sine.toml'
    """
    return {p.stem: p for p in sorted(catalog_dir("tasks").glob("*.toml"))}


SCHEDULE_KEYS = ("meta_iterations", "checkpoint_every", "checkpoint_seconds", "log_every", "seed")
"""`[train]` keys that set how long and how often, not how an algorithm learns."""


def algorithm_note(recipe: Recipe, asked: Recipe) -> str | None:
    """When `--algorithm` turns `recipe` (chosen for another algorithm) into `asked`, the
    catalog recipe of the same task made for the asked algorithm and the settings it
    changes, or None when there is none or the algorithm is the recipe's own. (`sine` with
    `--algorithm imaml` keeps sine's Reptile settings and iMAML's default lambda, and its
    init gets worse to adapt from; `sine-imaml` learns.)"""
    mine, wanted = recipe.train.algorithm, asked.train.algorithm
    if mine == wanted:
        return None
    for name in catalog_recipes():
        made = resolve_recipe(name)
        if made.task_name != recipe.task_name or made.train.algorithm != wanted:
            continue
        fields = dataclasses.fields(SupervisedSettings)
        defaults = _plain_values({f.name: f.default for f in fields})
        theirs = {**defaults, **made.to_dict()["train"]}
        ours = {**defaults, **asked.to_dict()["train"]}
        changed = [
            f"{k} = {v}" for k, v in theirs.items() if k not in SCHEDULE_KEYS and ours.get(k) != v
        ]
        return (
            f"{recipe.source}'s settings were chosen for {mine.value}; the recipe made for "
            f"{wanted.value} is `metarl train {name}` ({', '.join(changed)})"
        )
    return None


def _plain_values(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in d.items()}


def recipe_path(name_or_path: str) -> tuple[Path, bool]:
    """The file of a catalog name (`sine`) or a path (`my/sine.toml`), and whether it is from
    the shipped catalog.

    Args:
        name_or_path: a catalog recipe's name, or a TOML file's path.

    Returns:
        The file, and True when it is the shipped catalog's.

    Raises:
        UserError: a directory, a missing file, or an unknown name (the message lists the
            catalog's names).
    """
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if path.is_dir():
            raise UserError(f"recipe {name_or_path!r} is a directory; expected a .toml file")
        if not path.is_file():
            raise UserError(f"recipe file {name_or_path!r} does not exist")
        return path, False
    recipes = catalog_recipes()
    if name_or_path not in recipes:
        known = sorted(recipes)
        raise UserError(
            f"unknown task {name_or_path!r}; catalog recipes: {', '.join(known)} "
            "(or give a path to a .toml recipe)." + did_you_mean(name_or_path, known)
        )
    return recipes[name_or_path], True


def resolve_recipe(name_or_path: str) -> Recipe:
    """The recipe a catalog name (`sine`) or a path to a recipe file (`my/sine.toml`) names,
    as `metarl train NAME_OR_PATH` reads it.

    Args:
        name_or_path: A name of `metarl tasks list` or a `.toml` file.

    Returns:
        The recipe, typed and checked; `source` is the catalog name or the path.

    Raises:
        UserError: Neither a catalog name nor an existing file (with a "did you mean").
        ConfigError: The file's settings are refused (`metarl.config.recipe_from_dict`).

    Examples:
        >>> from metarl.registry import resolve_recipe
        >>> recipe = resolve_recipe("omniglot-5way-1shot")
        >>> recipe.task["ways"], recipe.supervised_eval().support_shots
        (5, 1)
        >>> resolve_recipe("sin")
        Traceback (most recent call last):
        ...
        metarl.errors.UserError: unknown task 'sin'; catalog recipes: ...
    """
    path, in_catalog = recipe_path(name_or_path)
    recipe = load_recipe_file(path)
    if in_catalog:
        recipe.source = name_or_path
    return recipe


def check_option_names(recipe: Recipe) -> None:
    """Refuse `[task]` and `[model]` keys the distribution or its network does not take, and
    values of another type than their parameter's annotation, by name and before anything is
    built or loaded: `metarl train` and `metarl tasks show` run
    this same check (a factory taking **kwargs is left to refuse its own keys)."""
    factory = task_spec(recipe.task_name).factory()
    tables: list[tuple[str, Any, dict[str, Any]]] = [("task", factory, recipe.task_options)]
    if isinstance(factory, BuildsModel):
        tables.append(("model", factory.build_model, recipe.model))
    for table, fn, given in tables:
        params = inspect.signature(fn).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        known = [k for k in params if k not in ("self", "data")]
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ConfigError(
                f"{recipe.source}: [{table}] unknown key {unknown[0]!r} for task "
                f"{recipe.task_name!r}; known keys: {', '.join(known)}"
            )
        try:
            signature_of = fn.__init__ if isinstance(fn, type) else fn  # type: ignore[misc]
            hints = typing.get_type_hints(signature_of)
        except (NameError, TypeError):  # annotations naming what only a type checker imports
            hints = {}
        for key, value in given.items():
            if key in hints:
                try:
                    coerce_value(value, hints[key], f"{table}.{key}")
                except ConfigError as e:
                    raise ConfigError(f"{recipe.source}: {e}") from None


def option_defaults(name: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The defaults of a registered distribution's options and of its model's options (from
    their signatures), and the class name: what a recipe gets for the keys it leaves out.

    Args:
        name: a registered task distribution's name.

    Returns:
        The `[task]` defaults, the `[model]` defaults, and the distribution's class name.
    """
    spec = task_spec(name)
    factory = spec.factory()

    def defaults(fn: Any) -> dict[str, Any]:
        return {
            k: p.default
            for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty and k not in ("self", "data")
        }

    task = {**defaults(factory), **spec.kwargs}
    model: dict[str, Any] = (
        defaults(factory.build_model) if isinstance(factory, BuildsModel) else {}
    )
    return task, model, getattr(factory, "__qualname__", str(factory))


# --- built-in distributions ---------------------------------------------------------------

register_task(
    "env-family",
    "metarl.envs.inline:inline_family",
    description="a Gymnasium env family declared in the recipe's [task] table (no Python)",
)

register_task(
    "sine",
    "metarl.distributions.sine:SineDistribution",
    description="y = A sin(x + b): A ~ U[0.1, 5], b ~ U[0, 2pi], x in [-5, 5] (Reptile paper)",
)

register_task(
    "omniglot",
    "metarl.distributions.omniglot:OmniglotDistribution",
    description="N-way Omniglot characters, 28x28, rotations as new classes (Reptile paper); "
    "needs `metarl data fetch omniglot` or `metarl data import omniglot PATH`",
)

register_task(
    "miniimagenet",
    "metarl.distributions.miniimagenet:MiniImageNetDistribution",
    description="N-way Mini-ImageNet, 84x84 RGB, Ravi & Larochelle 64/16/20 class split "
    "(Reptile paper); needs `metarl data import miniimagenet PATH`",
)
