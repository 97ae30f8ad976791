"""Environment families as data: the `envs/*.toml` format, parsed and checked.

A family file names a Gymnasium env and the task parameters that vary, each with a
distribution. The same format describes both kinds of family, so `metarl envs list` reads one
catalog:

```toml
name = "CartPolePhysics"      # registered as metarl/CartPolePhysics-v0
description = "CartPole with random pole length and mass"
base = "CartPole-v1"          # the Gymnasium env whose `unwrapped` attributes vary
# entry_point = "pkg.mod:Class"   # a hand-written family instead of attribute setting
# vector_entry_point = "pkg.mod:Class"  # optional: all tasks x envs in one process
#                                       # (a metarl.envs.vector.TaskVectorEnv)
# max_episode_steps = 500         # default: the base env's

[params]
length = { uniform = [0.25, 1.0] }             # the value itself
masspole = { uniform = [0.5, 2.0], scale = true }  # a factor on the base env's default
# direction = { choice = [-1.0, 1.0] }
# goal = { uniform = [-0.5, 0.5], size = 2 }   # a vector of independent draws
```

This module only parses: it imports neither Gymnasium nor MuJoCo, so reading the catalog at
`import metarl` stays cheap. Checks that need the base env (does the attribute exist?) happen
when the env is built (`metarl.envs.physics.PhysicsFamily`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarl.config import build_dataclass
from metarl.errors import ConfigError
from metarl.tomlio import read_toml

PHYSICS_ENTRY_POINT = "metarl.envs.physics:PhysicsFamily"
NAMESPACE = "metarl"

TaskValue = float | list[float]
"""A task parameter's value: a number, or a list of `size` numbers."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class ParamDist:
    """The distribution of one task parameter: `uniform` on [lo, hi] or a `choice` of values.

    With `size`, a task holds a list of `size` independent draws (a 2-D goal). With `scale`, the
    draw is a factor on the base env's default value (physics families only), so one file
    reads "mass between half and twice the usual" without copying the usual value.
    """

    uniform: tuple[float, float] | None = None
    choice: tuple[float, ...] | None = None
    size: int | None = None
    scale: bool = False

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` draws, shape `[n]` or `[n, size]`."""
        shape = (n,) if self.size is None else (n, self.size)
        if self.uniform is not None:
            return rng.uniform(self.uniform[0], self.uniform[1], size=shape)
        assert self.choice is not None
        return rng.choice(np.asarray(self.choice, dtype=np.float64), size=shape)

    def contains(self, value: TaskValue) -> bool:
        """Whether `value` could have been drawn (for tests; tasks may lie outside)."""
        values = np.atleast_1d(np.asarray(value, dtype=np.float64))
        if self.uniform is not None:
            lo, hi = self.uniform
            return bool(np.all((values >= lo) & (values <= hi)))
        assert self.choice is not None
        return bool(np.all(np.isin(values, self.choice)))

    def __str__(self) -> str:
        if self.uniform is not None:
            text = f"U[{self.uniform[0]:g}, {self.uniform[1]:g}]"
        else:
            assert self.choice is not None
            text = "{" + ", ".join(f"{v:g}" for v in self.choice) + "}"
        if self.size is not None:
            text += f"^{self.size}"
        return f"default x {text}" if self.scale else text


@dataclass
class _ParamEntry:
    """One `[params]` entry as written, typed by `build_dataclass` (ranges checked after)."""

    uniform: list[float] | None = None
    choice: list[float] | None = None
    size: int | None = None
    scale: bool = False


def parse_param(name: str, raw: Any, where: str) -> ParamDist:
    """One `[params]` entry; errors name `where` (file), the parameter and the bad key."""
    field = f"{where}: params.{name}"
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{field} = {raw!r}: expected a table such as {{ uniform = [low, high] }} "
            "or { choice = [a, b] }"
        )
    entry: _ParamEntry = build_dataclass(_ParamEntry, raw, field, table=False)
    u, c = entry.uniform, entry.choice
    if (u is None) == (c is None):
        raise ConfigError(f"{field}: give exactly one of uniform = [low, high] or choice = [...]")
    if u is not None:
        if len(u) != 2:
            raise ConfigError(f"{field}.uniform = {u!r}: expected [low, high] (two numbers)")
        if not u[0] <= u[1]:
            raise ConfigError(f"{field}.uniform = {u!r}: low must not exceed high")
    if c is not None and not c:
        raise ConfigError(f"{field}.choice = {c!r}: expected a non-empty list of numbers")
    if entry.size is not None and entry.size < 1:
        raise ConfigError(f"{field}.size = {entry.size!r}: expected a positive integer")
    return ParamDist(
        uniform=(u[0], u[1]) if u is not None else None,
        choice=tuple(c) if c is not None else None,
        size=entry.size,
        scale=entry.scale,
    )


def parse_params(raw: Any, where: str) -> dict[str, ParamDist]:
    """The `[params]` table: parameter name -> distribution, in file order."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: [params] must be a non-empty table of parameter = {{...}}")
    return {str(k): parse_param(str(k), v, where) for k, v in raw.items()}


@dataclass(frozen=True)
class FamilySpec:
    """A parsed family file."""

    name: str
    env_id: str
    """`metarl/<name>-v0`, the id for `gymnasium.make`."""
    entry_point: str
    base: str | None
    max_episode_steps: int | None
    vector_entry_point: str | None
    """A `TaskVectorEnv` class stepping many tasks' sub-envs at once (optional)."""
    params: dict[str, ParamDist]
    raw_params: dict[str, Any]
    """`params` as written (plain TOML values), passed to the env through its EnvSpec kwargs."""
    description: str
    source: Path

    @property
    def task_name(self) -> str:
        """The task distribution's name in `metarl tasks list`: the file's stem."""
        return self.source.stem

    @property
    def is_physics(self) -> bool:
        return self.entry_point == PHYSICS_ENTRY_POINT

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the entry point (JSON-able, as EnvSpec wants)."""
        kwargs: dict[str, Any] = {"params": self.raw_params}
        if self.base is not None:
            kwargs["base"] = self.base
        if self.is_physics:
            kwargs["source"] = str(self.source)
        return kwargs


@dataclass
class _FamilyFile:
    """A family file's keys as written, typed by `build_dataclass` (checked further after)."""

    name: str | None = None
    description: str = ""
    base: str | None = None
    entry_point: str = PHYSICS_ENTRY_POINT
    vector_entry_point: str | None = None
    max_episode_steps: int | None = None
    params: dict[str, Any] | None = None


def family_from_dict(data: Mapping[str, Any], source: Path) -> FamilySpec:
    """Check a family declaration's structure; every error names `source` and the field."""
    where = str(source)
    file: _FamilyFile = build_dataclass(_FamilyFile, data, where, table=False)
    name, base, entry_point = file.name, file.base, file.entry_point
    if name is None or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        raise ConfigError(
            f'{where}: name = {name!r}: expected an identifier such as "CartPolePhysics" '
            "(it becomes metarl/<name>-v0)"
        )
    if entry_point == PHYSICS_ENTRY_POINT and base is None:
        raise ConfigError(
            f'{where}: give base = "<Gymnasium env id>" (a physics family) '
            'or entry_point = "package.module:Class" (a hand-written family)'
        )
    vector_entry_point = file.vector_entry_point
    for key, value in (("entry_point", entry_point), ("vector_entry_point", vector_entry_point)):
        if value is not None and ":" not in value:
            raise ConfigError(f"{where}: {key} = {value!r}: expected package.module:Class")
    steps = file.max_episode_steps
    if steps is not None and steps < 1:
        raise ConfigError(f"{where}: max_episode_steps = {steps!r}: expected a positive integer")
    if file.params is None:
        raise ConfigError(f"{where}: missing [params] (which task parameters vary, and how)")
    params = parse_params(file.params, where)
    if entry_point != PHYSICS_ENTRY_POINT:
        scaled = [k for k, p in params.items() if p.scale]
        if scaled:
            raise ConfigError(
                f"{where}: params.{scaled[0]}.scale: scale multiplies a base env's default "
                "attribute, so it applies to physics families (base = ..., no entry_point) only"
            )
    return FamilySpec(
        name=name,
        env_id=f"{NAMESPACE}/{name}-v0",
        entry_point=entry_point,
        base=base,
        max_episode_steps=steps,
        vector_entry_point=vector_entry_point,
        params=params,
        raw_params=dict(file.params),
        description=file.description,
        source=source,
    )


def load_family(path: Path) -> FamilySpec:
    """Read and check a family file."""
    return family_from_dict(read_toml(path), path)


# --- tasks ----------------------------------------------------------------------------------


def sample_params(
    params: Mapping[str, ParamDist],
    n: int,
    rng: np.random.Generator,
    defaults: Mapping[str, float] | None = None,
) -> list[dict[str, TaskValue]]:
    """`n` task dicts drawn from `params` with `rng` only (one vectorized draw per parameter,
    in declaration order, so a seed gives the same tasks on every platform)."""
    if n < 0:
        raise ValueError(f"n = {n}: must be >= 0")
    columns: dict[str, np.ndarray] = {}
    for name, dist in params.items():
        values = dist.draw(n, rng)
        if dist.scale:
            if defaults is None:
                raise ValueError(f"params.{name}: scale needs the base env's default values")
            values = values * defaults[name]
        columns[name] = values
    return [{name: col[i].tolist() for name, col in columns.items()} for i in range(n)]


def check_task(params: Mapping[str, ParamDist], task: Any, family: str) -> dict[str, TaskValue]:
    """`task` as a plain dict of floats (lists for vector parameters), or a `ConfigError` that
    names the bad key. Values outside the distribution are allowed on purpose: evaluating on
    out-of-distribution tasks is a legitimate use."""
    if not isinstance(task, Mapping):
        raise ConfigError(f"{family}: a task must be a mapping, got {task!r}")
    expected = list(params)
    if set(task) != set(expected):
        raise ConfigError(
            f"{family}: task keys {sorted(task)} do not match the family's parameters {expected}"
        )
    clean: dict[str, TaskValue] = {}
    for name, dist in params.items():
        value = task[name]
        if dist.size is None:
            if not _number(value) and not (isinstance(value, np.generic) and value.ndim == 0):
                raise ConfigError(f"{family}: task[{name!r}] = {value!r}: expected a number")
            clean[name] = float(value)
        else:
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                arr = None
            if arr is None or arr.shape != (dist.size,):
                raise ConfigError(
                    f"{family}: task[{name!r}] = {value!r}: expected {dist.size} numbers"
                )
            clean[name] = [float(v) for v in arr]
    return clean
