"""How long the quick commands take to answer, each run as a fresh process, as a user runs them.

`metarl --help`, `--version`, `tasks list` and `runs` read no tensors, so they should not wait
for torch to import. This starts each command `--repeat` times as a subprocess
(`python -m metarl ...` in an empty folder, the source tree on PYTHONPATH) and prints the
median wall time per command and source tree as a markdown table, with whether torch was
imported (checked with `python -X importtime`). Give two trees to compare them, e.g. the
code before and after a change (`git archive COMMIT | tar -x -C /tmp/before`):

    python scripts/benchmarks/bench_cli_startup.py --tree before=/tmp/before --tree after=.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = {
    "--help": ["--help"],
    "--version": ["--version"],
    "tasks list": ["tasks", "list"],
    "runs": ["runs", "{runs}"],
}


def run_once(tree: Path, args: list[str], cwd: str) -> float:
    """Seconds for one `python -m metarl ARGS` to exit (its output discarded), started in
    `cwd`: `python -m` puts the working directory first on `sys.path`, so started inside a
    checkout it would time that checkout's code whatever PYTHONPATH says."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "COLUMNS": "80"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "metarl", *args], env=env, capture_output=True, text=True, cwd=cwd
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"metarl {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return elapsed


def imports_torch(tree: Path, args: list[str], cwd: str) -> bool:
    """Whether the command imports torch (`-X importtime` lists every module imported)."""
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "metarl", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=cwd,
    )
    return any(line.split("|")[-1].strip() == "torch" for line in done.stderr.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="LABEL=DIR",
        help="a source tree to time (repeatable); default: this checkout as 'this'",
    )
    parser.add_argument("--repeat", type=int, default=7, help="runs per command (default 7)")
    parser.add_argument(
        "--runs", type=Path, help="the folder `metarl runs` lists (default: an empty one)"
    )
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[2]
    trees = [t.split("=", 1) for t in args.tree] or [["this", str(root)]]
    with tempfile.TemporaryDirectory() as empty:
        runs = str(args.runs.resolve() if args.runs else empty)
        medians: dict[str, dict[str, tuple[float, bool]]] = {}
        for label, tree in trees:
            for name, command in COMMANDS.items():
                argv = [a.format(runs=runs) for a in command]
                run_once(Path(tree), argv, empty)  # warm the file cache and .pyc files
                times = [run_once(Path(tree), argv, empty) for _ in range(args.repeat)]
                torch = imports_torch(Path(tree), argv, empty)
                medians.setdefault(name, {})[label] = (statistics.median(times), torch)
    labels = [label for label, _ in trees]
    heads = [f"{label}: median s (torch imported?)" for label in labels]
    print("| command | " + " | ".join(heads) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for name, by_label in medians.items():
        cells = [f"{by_label[lb][0]:.3f} ({'yes' if by_label[lb][1] else 'no'})" for lb in labels]
        print(f"| `metarl {name}` | " + " | ".join(cells) + " |")
    version = sys.version.split()[0]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\n{args.repeat} runs each, median; python {version}, {os.cpu_count()} CPUs, "
        f"load average at the end {load}"
    )


if __name__ == "__main__":
    main()
