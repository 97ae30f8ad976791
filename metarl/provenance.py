"""Where each value of a resolved recipe comes from: the catalog file, the user's file, a
`--set` on the command line, or a default (of the distribution's or model's signature, of the
supervised learner's settings, or of metarl's config). `metarl tasks show` prints this."""

from __future__ import annotations

import dataclasses
from typing import Any

from metarl.config import SUPERVISED_TRAIN_KEYS, Recipe, SupervisedSettings, recipe_from_dict
from metarl.registry import option_defaults, recipe_path, resolve_recipe, task_spec
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


def field_sources(
    name: str, recipe: Recipe, cli: dict[str, set[str]] | None = None
) -> list[tuple[str, Any, str]]:
    """`(section.key, value, source)` for every field of `recipe` (resolved from `name`),
    the options its distribution and model take by default included."""
    cli = cli or {}
    path, in_catalog = recipe_path(name)
    raw = read_toml(path)
    origin = f"catalog {path.name}" if in_catalog else f"file {path}"
    task_defaults, model_defaults, cls = option_defaults(recipe.task_name)
    data = recipe.to_dict()
    implicit: dict[str, dict[str, Any]] = {"task": task_defaults, "model": model_defaults}
    supervised = getattr(task_spec(recipe.task_name).factory(), "kind", None) == "supervised"
    learner_defaults = {
        k: (v.value if hasattr(v, "value") else v)
        for k, v in dataclasses.asdict(SupervisedSettings()).items()
    }
    rows = []
    for section in SECTIONS:
        given = raw.get(section, {})
        fields = {**implicit.get(section, {}), **data[section]}
        for key, value in fields.items():
            if section == "train" and key in SUPERVISED_TRAIN_KEYS and value is None:
                if not supervised:
                    continue  # a setting this recipe's learner does not have
                default = learner_defaults[key]
                rows.append((f"train.{key}", default, "default of SupervisedSettings"))
                continue
            if key in cli.get(section, ()):
                source = "command line"
            elif key in given:
                source = origin
            elif section in implicit:
                source = f"default of {cls}"
            else:
                source = "default"
            rows.append((f"{section}.{key}", value, source))
    return rows


__all__ = ["field_sources", "resolve_with_sets"]
