"""Where each value of a resolved recipe comes from: the catalog file, the user's file, a
`--set` on the command line, or a default (of the distribution's or model's signature, of the
supervised learner's settings, or of metarl's config). `metarl tasks show` prints this."""

from __future__ import annotations

import ast
import dataclasses
import enum
import inspect
import textwrap
import typing
from typing import Any

from metarl.config import (
    SUPERVISED,
    Algorithm,
    EvalConfig,
    Recipe,
    SupervisedEval,
    SupervisedSettings,
    TrainConfig,
    recipe_from_dict,
)
from metarl.protocol import TaskDistribution
from metarl.registry import option_defaults, recipe_path, resolve_recipe, task_spec
from metarl.rl.rl2_settings import RL2Settings
from metarl.rl.settings import BatchedSettings, PPOSettings, PPOUpdateSettings, settings_class
from metarl.tomlio import SECTIONS, parse_assignment, read_toml


def resolve_with_sets(name: str, assignments: list[str]) -> tuple[Recipe, dict[str, set[str]]]:
    """The recipe `name` with each `SECTION.KEY=VALUE` of `assignments` applied (and checked),
    and which keys of which section the assignments set."""
    recipe = resolve_recipe(name)
    cli: dict[str, set[str]] = {}
    for assignment in assignments:
        section, key, value = parse_assignment(assignment)
        data = recipe.to_dict()
        data[section][key] = value
        recipe = recipe_from_dict(data, source=f"{recipe.source} with --set {assignment}")
        cli.setdefault(section, set()).add(key)
    return recipe, cli


def learner_tables(recipe: Recipe, kind: str) -> dict[str, tuple[type, dict[str, Any]]]:
    """The tables whose keys belong to the recipe's learner: table -> (the declaration of
    its keys, the values the recipe gives)."""
    if kind == "supervised":
        return {t: (cls, recipe.supervised.get(t, {})) for t, cls in SUPERVISED.items()}
    if recipe.train.algorithm is Algorithm.RL2:
        return {"learner": (RL2Settings, recipe.learner)}
    return {"learner": (settings_class(recipe), recipe.learner)}


def field_sources(
    name: str, recipe: Recipe, cli: dict[str, set[str]] | None = None
) -> list[tuple[str, Any, str]]:
    """`(section.key, value, source)` for every effective value of `recipe` (resolved from
    `name`): what the recipe gives, and the defaults of its distribution, its model, its
    learner's settings (the supervised keys, or every PPO setting for RL) and metarl's
    config for the rest."""
    cli = cli or {}
    path, in_catalog = recipe_path(name)
    raw = read_toml(path)
    origin = f"catalog {path.name}" if in_catalog else f"file {path}"
    task_defaults, model_defaults, cls = option_defaults(recipe.task_name)
    factory = task_spec(recipe.task_name).factory()
    kind = factory.kind if isinstance(factory, TaskDistribution) else "rl"
    common = {"train": dataclasses.asdict(recipe.train), "eval": dataclasses.asdict(recipe.eval)}
    tables: dict[str, dict[str, tuple[Any, str]]] = {
        "task": {k: (v, f"default of {cls}") for k, v in task_defaults.items()},
        "model": {k: (v, f"default of {cls}") for k, v in model_defaults.items()},
    }
    for section, values in common.items():
        tables[section] = {k: (v, "default") for k, v in values.items()}
    tables["eval"]["inner_lr"] = (recipe.eval_inner_lr, "train.inner_lr (eval.inner_lr not given)")
    for section, (declared, _) in learner_tables(recipe, kind).items():
        defaults = {f.name: getattr(declared(), f.name) for f in dataclasses.fields(declared)}
        tables.setdefault(section, {}).update(
            {k: (v, f"default of {declared.__name__}") for k, v in defaults.items()}
        )
    data = recipe.to_dict()
    rows = []
    for section in SECTIONS:
        given = raw.get(section, {})
        fields = tables.get(section, {})
        for key, value in data[section].items():
            if value is not None or key not in fields:  # None: "not given", the default stands
                fields[key] = (value, fields.get(key, (None, "default"))[1])
        for key, (value, default_source) in fields.items():
            if key in cli.get(section, ()):
                source = "command line"
            elif key in given:
                source = origin
            else:
                source = default_source
            rows.append((f"{section}.{key}", _plain(value), source))
    return rows


READERS: list[tuple[str, type, str]] = [
    ("train", TrainConfig, "every learner"),
    ("train", SupervisedSettings, "supervised"),
    ("eval", EvalConfig, "every learner"),
    ("eval", SupervisedEval, "supervised"),
    ("learner", PPOUpdateSettings, "RL (both engines) and RL²"),
    ("learner", PPOSettings, "RL (both engines)"),
    ("learner", BatchedSettings, "RL, batched engine"),
    ("learner", RL2Settings, "RL² (algorithm = rl2)"),
]
"""Every declaration of recipe keys, by table, with who reads its keys (a subclass adds only
the keys it declares itself)."""


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (`x: int = 0` then `\"\"\"...\"\"\"`)."""
    docs: dict[str, str] = {}
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    for field, doc in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            docs[field.target.id] = " ".join(doc.value.value.split())
    return docs


@dataclasses.dataclass(frozen=True)
class Setting:
    """One recipe key outside `[task]` and `[model]`, as its declaration says it."""

    section: str
    field: dataclasses.Field[Any]
    declared_by: type
    """The dataclass declaring it (a subclass's row holds only the keys it adds)."""
    hint: Any
    default: Any
    reader: str
    meaning: str
    """The docstring under the field, and for a supervised-only key why RL has no use."""


def settings() -> list[Setting]:
    """Every recipe key outside `[task]` and `[model]` (whose keys are the distribution's and
    network's parameters), in `READERS`' order: the one list the settings reference (this
    module's `settings_reference`, `scripts/tools/settings_reference.py`) is made from."""
    out = []
    for section, cls, reader in READERS:
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        own = [f for f in dataclasses.fields(cls) if f.name in vars(cls).get("__annotations__", {})]
        for f in own:
            default = f.default_factory() if callable(f.default_factory) else f.default
            meaning = docs.get(f.name, "")
            if f.metadata.get("why_not_rl"):
                meaning += f" (RL: {f.metadata['why_not_rl']})"
            out.append(Setting(section, f, cls, hints[f.name], default, reader, meaning))
    return out


def settings_reference() -> str:
    """The reference of every recipe key outside `[task]` and `[model]`, as one Markdown table
    made from the declarations the parser reads: key, type, default, who reads it and what it
    means."""
    lines = ["| key | type | default | read by | meaning |", "|---|---|---|---|---|"]
    for s in settings():
        hint = s.hint
        kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        cells = [
            f"`{s.section}.{s.field.name}`",
            f"`{kind}`",
            f"`{_plain(s.default)!r}`",
            s.reader,
            s.meaning,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|").strip() for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> Any:
    """A value as a recipe writes it: an enum's value, and a name typed as a `str` subclass
    (`OuterOptimizerName`) as the plain string, so `tasks show` prints `'sgd'`."""
    if isinstance(value, enum.Enum):
        return value.value
    return str(value) if isinstance(value, str) else value


__all__ = [
    "READERS",
    "Setting",
    "field_docs",
    "field_sources",
    "learner_tables",
    "resolve_with_sets",
    "settings",
    "settings_reference",
]
