"""A small mutation check: flip one operator at a time in a module and see whether the tests
notice.

Each mutant changes one spot of the module's code (`+` <-> `-`, `*` <-> `/`, `<` <-> `<=`,
`>` <-> `>=`, `==` <-> `!=`, `and` <-> `or`, `not x` -> `x`, a number n -> n + 1), in a
copy of the checkout (the checkout itself is never written), then runs the given tests there;
a mutant is killed when they fail (or time out). Prints each surviving mutant's line and the
share killed. Mutants are drawn at random (`--limit`, `--seed`) so a check fits in minutes.

    python scripts/tools/mutation_check.py metarl/algorithms.py tests/test_algorithms.py \
        --limit 20 --timeout 120

Pytest's own options go after `--` (`... --limit 0 -- tests/test_maml_rl.py -k trpo`);
`--slice 0:40` runs the first 40 of the chosen mutants, so a long check can be run in parts;
`--only 3,17` runs those mutants (by the number printed before each), e.g. the survivors again.
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.And: ast.Or,
    ast.Or: ast.And,
}


@dataclass(frozen=True)
class Mutant:
    index: int
    """Which mutable spot of the module, in `ast.walk` order."""
    line: int
    what: str


def _spots(tree: ast.AST) -> Iterator[tuple[ast.AST, str]]:
    """Every node one mutation can change, with what the change is."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp | ast.BoolOp) and type(node.op) in SWAPS:
            yield node, f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"
        elif isinstance(node, ast.Compare) and type(node.ops[0]) in SWAPS:
            yield node, f"{type(node.ops[0]).__name__} -> {SWAPS[type(node.ops[0])].__name__}"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not x -> x"
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            yield node, f"{node.value!r} -> {node.value + 1!r}"


def mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    return [
        Mutant(i, getattr(node, "lineno", 0), what) for i, (node, what) in enumerate(_spots(tree))
    ]


def mutate(source: str, index: int) -> str:
    """`source` with mutable spot `index` changed."""
    tree = ast.parse(source)
    for i, (node, _) in enumerate(_spots(tree)):
        if i != index:
            continue
        if isinstance(node, ast.BinOp | ast.BoolOp):
            node.op = SWAPS[type(node.op)]()
        elif isinstance(node, ast.Compare):
            node.ops[0] = SWAPS[type(node.ops[0])]()
        elif isinstance(node, ast.UnaryOp):
            return ast.unparse(_replace(tree, node, node.operand))
        elif isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            node.value = node.value + 1
        return ast.unparse(tree)
    raise IndexError(index)


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> ast.AST:
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
            elif isinstance(value, list):
                parent.__dict__[name] = [new if v is old else v for v in value]
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("module", help="the file to mutate, e.g. metarl/algorithms.py")
    parser.add_argument("tests", nargs="+", help="the tests to run against each mutant")
    parser.add_argument("--limit", type=int, default=20, help="mutants drawn (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per mutant")
    parser.add_argument(
        "--only", default="", help="these mutants alone, by number (e.g. 3,17: the survivors)"
    )
    parser.add_argument(
        "--slice",
        default=":",
        help="which of the chosen mutants to run, START:STOP (a long check in parts)",
    )
    args = parser.parse_args()
    source = (REPO / args.module).read_text()
    found = mutants(source)
    chosen = found
    if args.only:
        chosen = [found[int(i)] for i in args.only.split(",")]
    elif args.limit and args.limit < len(found):
        chosen = sorted(random.Random(args.seed).sample(found, args.limit), key=lambda m: m.index)
    start, _, stop = args.slice.partition(":")
    chosen = chosen[int(start) if start else None : int(stop) if stop else None]
    print(f"{args.module}: {len(found)} mutants, {len(chosen)} checked", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    survived = []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", "runs", "site"))
        env["PYTHONPATH"] = str(copy)
        target = copy / args.module
        for m in chosen:
            target.write_text(mutate(source, m.index))
            command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
            try:
                done = subprocess.run(
                    [*command, *args.tests],
                    cwd=copy,
                    env=env,
                    capture_output=True,
                    timeout=args.timeout,
                )
                killed = done.returncode != 0
            except subprocess.TimeoutExpired:
                killed = True
            print(
                f"  #{m.index} line {m.line}: {m.what}: {'killed' if killed else 'SURVIVED'}",
                flush=True,
            )
            if not killed:
                survived.append(m)
        target.write_text(source)
    share = 1 - len(survived) / max(len(chosen), 1)
    print(f"killed {len(chosen) - len(survived)} of {len(chosen)} ({share:.0%})")


if __name__ == "__main__":
    main()
