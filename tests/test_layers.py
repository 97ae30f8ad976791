"""Imports only point down: each room of the package (a top-level module, or a subpackage
with everything in it) sits on a floor, and no module imports from a room on a higher floor,
nor do rooms import each other in a circle. Every import counts, those inside functions and
under `TYPE_CHECKING` included; the package's own `__init__` (the public facade, also read
for `__version__`) and `__main__` are not rooms."""

from __future__ import annotations

import ast
from pathlib import Path

import metarl

PACKAGE = Path(metarl.__file__).parent

FLOORS: list[set[str]] = [
    {"errors", "atomic", "jsonio", "curves", "progress", "allocator", "losses", "peek", "startup"},
    {"tomlio", "protocol", "models", "distributed", "outer_registry"},
    {"config", "validate", "cg"},
    {"combinations"},
    {"optim", "registry", "outer", "algorithms", "data"},
    {"distributions", "envs", "plots", "listing"},
    {"rl", "run", "zoo"},
    {"learners", "provenance", "run_status"},
    {"evaluate", "functional"},
    {"tensorboard_log", "export"},
    {"train", "demo"},
    {"cli"},
]
"""Rooms from the bottom floor up (docs/architecture.md, "Layout")."""


def room_of(module: str) -> str | None:
    """`metarl.rl.trpo` -> "rl"; the facade `metarl` and `metarl.__main__` -> None."""
    parts = module.split(".")
    if parts[0] != "metarl" or len(parts) == 1 or parts[1] == "__main__":
        return None
    return parts[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every `metarl` module or name that `path` imports, relative imports resolved."""
    name = module_name(path)
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m.split(".")[0] == "metarl"}


def room_imports() -> dict[str, dict[str, str]]:
    """room -> {imported room: one module of the room that imports it}."""
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}

    def resolve(target: str) -> str:
        """The module a dotted name is in (`metarl.__version__` -> `metarl`)."""
        while target not in modules:
            target = target.rpartition(".")[0]
        return target

    edges: dict[str, dict[str, str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        room = room_of(module_name(path))
        if room is None:
            continue
        edges.setdefault(room, {})
        for target in imported(path):
            other = room_of(resolve(target))
            if other is not None and other != room:
                edges[room].setdefault(other, module_name(path))
    return edges


def test_every_room_has_a_floor():
    floors = [room for floor in FLOORS for room in floor]
    assert len(floors) == len(set(floors)), "a room on two floors"
    assert set(room_imports()) == set(floors)


def test_imports_only_point_down():
    floor = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}
    up = [
        f"{module} imports metarl.{target} (floor {floor[target]} > {floor[room]})"
        for room, targets in room_imports().items()
        for target, module in targets.items()
        if floor[target] > floor[room]
    ]
    assert up == []


def test_no_rooms_import_each_other_in_a_circle():
    edges = room_imports()
    done: set[str] = set()

    def visit(room: str, path: list[str]) -> None:
        if room in path:
            raise AssertionError("circle: " + " -> ".join([*path[path.index(room) :], room]))
        if room in done:
            return
        for other in edges.get(room, {}):
            visit(other, [*path, room])
        done.add(room)

    for room in edges:
        visit(room, [])
