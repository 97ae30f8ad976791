"""Scaling across processes: meta-iterations/s with 1 and 2 torchrun ranks, one thread each.

Each world size runs the real CLI under torchrun (`python -m torch.distributed.run
--nproc-per-node N -m metarl train RECIPE`) on a copy of the recipe with a short budget; the
rate comes from the run's own metrics.jsonl (the first iterations are warm-up and skipped, so
process start and data loading are not counted). The final parameters of every world size are
compared with world size 1's.

To tell the software's overhead from the machine's limit, each world size N > 1 is also run
without torch.distributed: N ordinary single-process runs at once, each adapting one rank's
share of the meta-batch (ceil(meta_batch / N) tasks), no collectives. The slowest of them is
the rate N ranks could reach on this machine with free communication.

    python scripts/benchmarks/bench_scale.py                                 # Omniglot 5-way 1-shot
    python scripts/benchmarks/bench_scale.py --recipe sine --iterations 300
    python scripts/benchmarks/bench_scale.py --recipe halfcheetah-vel --iterations 20  # env steps/s

`--per-iteration` also trains every world size for 1, 2, ..., ITERATIONS - 1 iterations (fresh
runs: a run is a function of its recipe, so run k is the first k iterations of the longest)
and prints, after each iteration, the largest parameter difference from world size 1 and the
outer step's accepted fraction where the recipe's step logs one (TRPO's line search): whether
the worlds part in the first iteration or later, and whether the line search took another
fraction there:

    python scripts/benchmarks/bench_scale.py --recipe metaworld-ml10-maml --iterations 3 \
        --per-iteration

Omniglot needs its data (`metarl data import omniglot PATH`, or METARL_DATA pointing at it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from metarl.config import Recipe, with_overrides
from metarl.learners import distribution
from metarl.registry import resolve_recipe
from metarl.rl.baselines import meta_env_steps
from metarl.tomlio import dumps_toml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def rate(out: Path) -> float:
    """Meta-iterations/s of a finished run from its metrics.jsonl, after warm-up."""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    warm = rows[min(len(rows) // 5, 10)]
    last = rows[-1]
    return (last["iteration"] - warm["iteration"]) / (last["elapsed_s"] - warm["elapsed_s"])


def train_cmd(recipe_path: Path, out: Path) -> list[str]:
    return ["-m", "metarl", "train", str(recipe_path), "--out", str(out), "-q", "--device", "cpu"]


def train(recipe_path: Path, out: Path, world: int) -> dict[str, torch.Tensor]:
    """Train under torchrun with `world` ranks; return the final parameters."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world)]
    cmd += ["--master-port", str(free_port()), *train_cmd(recipe_path, out)]
    subprocess.run(cmd, check=True, env=ENV)
    model: dict[str, torch.Tensor] = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    return model


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def after_each_iteration(
    recipe: Recipe, tmp: Path, worlds: list[int], final: dict[int, dict[str, torch.Tensor]]
) -> list[list[str]]:
    """One row per iteration k: the largest difference of each world size's parameters
    from world size 1's after k iterations (runs of k iterations; `final` holds the longest),
    and the outer step's accepted fraction per world size where the metrics log one."""
    n = recipe.train.meta_iterations
    params = {n: final}
    for k in range(1, n):
        path = tmp / f"recipe-{k}.toml"
        path.write_text(dumps_toml(with_overrides(recipe, "train", meta_iterations=k).to_dict()))
        params[k] = {w: train(path, tmp / f"run-{w}-after-{k}", w) for w in worlds}
    logs = {
        w: [json.loads(line) for line in (tmp / f"run-{w}" / "metrics.jsonl").open()]
        for w in worlds
    }
    rows = []
    for k in range(1, n + 1):
        diffs = [
            f"{largest_difference(params[k][w], params[k][worlds[0]]):.2e}" for w in worlds[1:]
        ]
        fractions = [str(logs[w][k - 1].get("trpo_step_fraction", "-")) for w in worlds]
        rows.append([str(k), *diffs, " / ".join(fractions)])
    return rows


def independent(recipe: Recipe, tmp: Path, world: int) -> float:
    """Meta-iterations/s of the slowest of `world` concurrent single-process runs, each with
    one rank's share of the meta-batch and no communication (the machine's bound)."""
    share = -(-recipe.train.meta_batch // world)
    path = tmp / f"share-{world}.toml"
    path.write_text(dumps_toml(with_overrides(recipe, "train", meta_batch=share).to_dict()))
    outs = [tmp / f"independent-{world}-{i}" for i in range(world)]
    procs = [subprocess.Popen([sys.executable, *train_cmd(path, out)], env=ENV) for out in outs]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"an independent run exited with {proc.returncode}")
    return min(rate(out) for out in outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="omniglot-5way-1shot")
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--worlds", default="1,2")
    parser.add_argument(
        "--per-iteration",
        action="store_true",
        help="also the parameter difference and the outer step's fraction after each iteration",
    )
    args = parser.parse_args()
    console = Console(width=120)

    recipe = with_overrides(
        resolve_recipe(args.recipe),
        "train",
        meta_iterations=args.iterations,
        log_every=1,
        checkpoint_every=10**9,
    )
    worlds = [int(w) for w in args.worlds.split(",")]
    rates: dict[int, float] = {}
    bounds: dict[int, float] = {}
    params: dict[int, dict[str, torch.Tensor]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.toml"
        path.write_text(dumps_toml(recipe.to_dict()))
        for world in worlds:
            console.print(f"world size {world} ...")
            out = Path(tmp) / f"run-{world}"
            params[world] = train(path, out, world)
            rates[world] = rate(out)
            if world > 1:
                console.print(f"{world} independent processes, no communication ...")
                bounds[world] = independent(recipe, Path(tmp), world)
        drift = (
            after_each_iteration(recipe, Path(tmp), worlds, params) if args.per_iteration else []
        )

    t = recipe.train
    table = Table(
        title=f"{args.recipe}: meta-batch {t.meta_batch}, {args.iterations} meta-iterations, "
        "1 thread per rank"
    )
    # RL recipes: environment steps per meta-iteration (adaptation + FOMAML's query rollouts)
    rl = distribution(recipe).kind == "rl"
    per_iteration = meta_env_steps(recipe) / t.meta_iterations if rl else float(t.meta_batch)
    unit = "env steps/s" if rl else "tasks/s"
    columns = ("ranks", "meta-it/s", unit, "speed-up", "efficiency", "max |phi - phi_1|")
    for col in (*columns, "machine bound (no comm.)"):
        table.add_column(col, justify="right")
    base = rates[worlds[0]]
    for world in worlds:
        diff = largest_difference(params[world], params[worlds[0]])
        table.add_row(
            str(world),
            f"{rates[world]:.2f}",
            f"{rates[world] * per_iteration:,.1f}",
            f"{rates[world] / base:.2f}x",
            f"{rates[world] / base / world:.0%}",
            f"{diff:.2e}",
            f"{bounds[world]:.2f} it/s = {bounds[world] / base:.2f}x" if world in bounds else "",
        )
    console.print(table)
    if drift:
        after = Table(title=f"{args.recipe}: after each iteration, against world size {worlds[0]}")
        after.add_column("after iteration", justify="right")
        for world in worlds[1:]:
            after.add_column(f"max |phi_{world} - phi_{worlds[0]}|", justify="right")
        after.add_column(f"outer step fraction ({' / '.join(map(str, worlds))} ranks)")
        for row in drift:
            after.add_row(*row)
        console.print(after)


if __name__ == "__main__":
    main()
