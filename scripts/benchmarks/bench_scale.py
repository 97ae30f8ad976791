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


def run(recipe_path: Path, out: Path, world: int) -> float:
    """Train under torchrun with `world` ranks; return meta-iterations/s after warm-up."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(world)]
    cmd += ["--master-port", str(free_port()), *train_cmd(recipe_path, out)]
    subprocess.run(cmd, check=True, env=ENV)
    return rate(out)


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
            rates[world] = run(path, out, world)
            params[world] = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
            if world > 1:
                console.print(f"{world} independent processes, no communication ...")
                bounds[world] = independent(recipe, Path(tmp), world)

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
        diff = max(
            float((params[world][k].float() - params[worlds[0]][k].float()).abs().max())
            for k in params[world]
        )
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


if __name__ == "__main__":
    main()
