"""Write the settings reference (`docs/settings.md`) from the recipe's dataclasses, or check it.

Every recipe setting is a field of one dataclass: `[train]` and `[eval]` of `metarl.config`
(`TrainConfig`, `EvalConfig`, and the supervised learner's `SupervisedSettings` and
`SupervisedEval`), `[learner]` of `metarl.rl.settings` (the PPO engines) and of
`metarl.rl.rl2_settings` (RL²); `metarl.provenance.settings()` lists them with who reads them
(`READERS`). The page shows each one's key, type, default and meaning (the docstring under
the field) and the values it accepts: an enum's or a `Literal`'s members, and
for numbers the bounds found by handing the real validators a few values at the edges (so
the page says what the code refuses, not what someone remembered). `tests/test_settings_doc.py`
runs the check, so a setting added or changed without regenerating the page fails the tests.

    python scripts/tools/settings_reference.py           # rewrite docs/settings.md
    python scripts/tools/settings_reference.py --check   # exit 1 when the page differs
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "settings.md"

from metarl.combinations import backends  # noqa: E402
from metarl.config import (  # noqa: E402  (the paths above first, for --help's sake)
    MAX_ITERATIONS,
    MAX_SEED,
    MAX_STEPS,
    EvalConfig,
    SupervisedEval,
    SupervisedSettings,
    TrainConfig,
    recipe_from_dict,
)
from metarl.errors import ConfigError  # noqa: E402
from metarl.models import ACTIVATIONS  # noqa: E402
from metarl.outer_registry import OuterOptimizerName  # noqa: E402
from metarl.outer_registry import names as outer_step_names  # noqa: E402
from metarl.provenance import READERS, Setting, settings  # noqa: E402
from metarl.rl.rl2_settings import RL2Settings  # noqa: E402
from metarl.rl.settings import BatchedSettings, PPOSettings, PPOUpdateSettings  # noqa: E402

Accepts = Callable[[str, Any], bool]

CHOICES: dict[tuple[type, str], list[str]] = {
    (PPOSettings, "backend"): backends(),
    (PPOSettings, "activation"): list(ACTIVATIONS),
    (TrainConfig, "outer_optimizer"): outer_step_names(),
}
"""String settings whose values are the keys of a table in the code."""

INT_PROBES = (-1, 0, 1, MAX_STEPS, MAX_STEPS + 1, MAX_ITERATIONS, MAX_ITERATIONS + 1, MAX_SEED)
FLOAT_PROBES = (-1.0, 0.0, 0.5, 1.0, 2.0)


def _recipe_accepts(section: str, supervised: bool) -> Accepts:
    def accepts(key: str, value: Any) -> bool:
        try:
            recipe = recipe_from_dict({"task": {"name": "sine"}, section: {key: value}}, "probe")
            if supervised:
                recipe.supervised_settings()
                recipe.supervised_eval().validate()
        except ConfigError:
            return False
        return True

    return accepts


def _settings_accepts(cls: type) -> Accepts:
    def accepts(key: str, value: Any) -> bool:
        try:
            cls(**{key: value}).validate()
        except ConfigError:
            return False
        return True

    return accepts


@dataclasses.dataclass
class Table:
    """How the page shows one declaration of `metarl.provenance.READERS`."""

    title: str
    intro: str
    accepts: Accepts
    """Whether the real validators accept `key = value` (the other keys at their defaults)."""


TABLES: dict[type, Table] = {
    TrainConfig: Table(
        "[train]: every learner",
        "How to meta-train (`metarl.config.TrainConfig`).",
        _recipe_accepts("train", False),
    ),
    SupervisedSettings: Table(
        "[train]: the supervised learner",
        "Read by the supervised learner only (`metarl.config.SupervisedSettings`); an RL "
        "recipe that gives one is refused, saying why the RL learner has no use for it.",
        _recipe_accepts("train", True),
    ),
    EvalConfig: Table(
        "[eval]: every learner",
        "How adaptation is measured on held-out tasks (`metarl.config.EvalConfig`).",
        _recipe_accepts("eval", False),
    ),
    SupervisedEval: Table(
        "[eval]: the supervised learner",
        "The held-out episodes of supervised tasks (`metarl.config.SupervisedEval`); refused "
        "by the RL learners.",
        _recipe_accepts("eval", True),
    ),
    PPOUpdateSettings: Table(
        "[learner]: PPO's update (RL tasks)",
        "The keys of PPO's advantage estimate and loss (`metarl.rl.settings.PPOUpdateSettings`, "
        "stable-baselines3's names), read by both PPO engines and by RL²'s PPO.",
        _settings_accepts(PPOUpdateSettings),
    ),
    PPOSettings: Table(
        "[learner]: the PPO engines (RL tasks)",
        "RL recipes with `algorithm` = `reptile`, `fomaml`, `maml` or `metasgd`: PPO's "
        "settings with stable-baselines3's names (`metarl.rl.settings.PPOSettings`), read by "
        "both engines (`backend`).",
        _settings_accepts(BatchedSettings),
    ),
    BatchedSettings: Table(
        "[learner]: the batched engine only",
        'Read by `backend = "batched"` alone (`metarl.rl.settings.BatchedSettings`); the '
        "`sb3` engine refuses them.",
        _settings_accepts(BatchedSettings),
    ),
    RL2Settings: Table(
        "[learner]: RL²",
        'RL recipes with `algorithm = "rl2"` (`metarl.rl.rl2_settings.RL2Settings`).',
        _settings_accepts(RL2Settings),
    ),
}
"""Titles and validators of the declarations, by class (every one of `READERS` has one)."""


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it in TOML terms (`int`, `list[int]`, `float | unset`)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " \\| ".join(args) + " (optional)"
    if (
        origin is typing.Literal
        or annotation is OuterOptimizerName
        or (isinstance(annotation, type) and issubclass(annotation, enum.Enum))
    ):
        return "string"
    if origin is list:
        return f"list[{type_name(typing.get_args(annotation)[0])}]"
    names = {bool: "bool", int: "int", float: "float", str: "string"}
    return names.get(annotation, str(annotation))


def toml(value: Any) -> str:
    """A default as TOML writes it."""
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list):
        return "`[" + ", ".join(str(v) for v in value) + "]`"
    return f"`{value}`"


def default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def bounds(accepts: Callable[[str, Any], bool], key: str, kind: type, wrap: bool) -> str:
    """The accepted range of a number setting, found by probing its validator at the edges."""

    def ok(value: Any) -> bool:
        return accepts(key, [value] if wrap else value)

    parts: list[str] = []
    if kind is int:
        accepted = [v for v in INT_PROBES if ok(v)]
        if not accepted:
            return ""
        low = min(accepted)
        if low > INT_PROBES[2]:
            return "see the meaning"  # the lower limit depends on other keys
        if low > INT_PROBES[0]:
            parts.append(f"≥ {low}")
        for cap in INT_PROBES[3:]:
            if ok(cap) and not ok(cap + 1):
                parts.append(f"≤ {cap:,}" if cap != MAX_SEED else "≤ 2**64 - 1")
                break
    else:
        accepted_f = {v: ok(v) for v in FLOAT_PROBES}
        if not accepted_f[-1.0]:
            parts.append("≥ 0" if accepted_f[0.0] else "> 0")
        if accepted_f[0.5] and not accepted_f[2.0]:
            parts.append("≤ 1" if accepted_f[1.0] else "< 1")
        if not parts:
            parts.append("any finite number")
    text = ", ".join(parts)
    if wrap:
        text = f"each {text}" if text else ""
        if not accepts(key, []):
            text = f"non-empty, {text}" if text else "non-empty"
    return text or "see the meaning"


def allowed(setting: Setting) -> str:
    """What a setting accepts: named choices, `true`/`false`, or a range."""
    annotation, name = setting.hint, setting.field.name
    accepts = TABLES[setting.declared_by].accepts
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return ", ".join(f"`{m.value}`" for m in annotation)
    if origin is typing.Literal:
        return ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    for (cls, key), choices in CHOICES.items():
        if issubclass(setting.declared_by, cls) and name == key:
            return ", ".join(f"`{c}`" for c in choices)
    if annotation is bool:
        return "`true`, `false`"
    if annotation in (int, float):
        return bounds(accepts, name, annotation, wrap=False)
    if origin is list and typing.get_args(annotation)[0] in (int, float):
        return bounds(accepts, name, typing.get_args(annotation)[0], wrap=True)
    return "see the meaning"


def row(setting: Setting) -> list[str]:
    """Key, type, default, allowed values, meaning."""
    return [
        f"`{setting.section}.{setting.field.name}`",
        type_name(setting.hint),
        toml(setting.default),
        allowed(setting),
        setting.meaning.replace("|", "\\|"),
    ]


def missing_meanings() -> list[str]:
    """Settings without a docstring (the page would say nothing about them)."""
    return [f"{s.section}.{s.field.name}" for s in settings() if not s.meaning]


def render() -> str:
    """The whole page."""
    lines = [
        "# Settings reference",
        "",
        "<!-- Generated by scripts/tools/settings_reference.py from the dataclasses of",
        "     metarl.config and metarl.rl; edit those, then rerun the script. -->",
        "",
        "Every key a recipe's `[train]`, `[eval]` and `[learner]` tables accept, with its type,",
        'default and meaning, generated from the dataclasses that parse them. "Allowed" is what',
        "the validators accept with the other keys at their defaults (some limits depend on",
        "other keys: the meaning says which). `[task]` and `[model]` hold the options of the",
        "chosen distribution and its network ([Recipes and settings](recipes.md#task));",
        "`metarl tasks show NAME` prints a recipe's resolved values and where each came from.",
        "",
    ]
    every = settings()
    for _, cls, _ in READERS:
        table = TABLES[cls]
        lines += [f"## {table.title}", "", table.intro, ""]
        lines += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row(s)) + " |" for s in every if s.declared_by is cls]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on drift")
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        PAGE.write_text(text)
        return 0
    if not PAGE.exists() or PAGE.read_text() != text:
        print(f"{PAGE.relative_to(ROOT)} differs from the settings; run {Path(__file__).name}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
