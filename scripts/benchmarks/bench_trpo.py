"""MAML-RL's TRPO outer step on HalfCheetahDir's full batch: where its time goes, and what the
two speed-ups cost in accuracy.

One second-order MAML-RL iteration of `tasks/halfcheetah-dir-maml.toml` (40 tasks x 20 episodes
x 200 steps, one VPG step) from the recipe's initial policy, then TRPO's step on that batch:

- **allocator**: glibc's default (every tensor above 32 MB a fresh mmap, page-faulted in at
  each operation; `METARL_MALLOC=system`) against `metarl.allocator.keep_freed_memory` (what
  `metarl train` and `metarl eval` set). Each runs in its own child process (malloc is set
  per process), on the same tasks, seeds and policy, so both see the same batch.
- **Fisher fraction** (`[learner] trpo_fisher_fraction`): the conjugate gradient's
  Fisher-vector products on the first fraction of each task's episodes. Its accuracy is the
  cosine between its CG direction and the full-batch one, and the KL and surrogate that the
  step reaches (the line search measures both on every episode).

Torch runs on one thread (as the learner does). Run it with nothing else on the machine:

    python scripts/benchmarks/bench_trpo.py          # fractions 1, 0.5, 0.25, 0.1; both allocators
    python scripts/benchmarks/bench_trpo.py --fractions 1 0.25 --tasks 20
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

RECIPE = Path(__file__).resolve().parents[2] / "tasks" / "halfcheetah-dir-maml.toml"


def measure(fractions: list[float], n_tasks: int) -> list[dict[str, float]]:
    """One adaptation and meta-gradient, then per fraction: one Fisher-vector product, the CG
    solve and the TRPO step, timed (this process's allocator)."""
    from metarl.cg import truncated_conjugate_gradient
    from metarl.config import load_recipe_file
    from metarl.learners import build_meta_learner
    from metarl.protocol import Params, Split
    from metarl.rl import trpo

    torch.set_num_threads(1)
    learner = build_meta_learner(load_recipe_file(RECIPE), torch.device("cpu"))
    rng = np.random.default_rng(0)
    tasks = learner.dist.sample(n_tasks, rng, Split.TRAIN)
    phi = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
    adaptation = learner.adapt(phi, tasks, rng, slice(None))
    tick = time.perf_counter()
    delta = learner.meta_gradient(adaptation)
    assert delta.objective is not None
    objective = delta.objective.objective
    gradient = {k: g / n_tasks for k, g in delta.gradient.items()}
    names = list(phi)
    rows, full_direction = [], None
    for fraction in fractions:
        product = objective.kl_hessian(phi, fraction)

        def fisher(v: Params, product: Any = product) -> Params:
            out = product(v)
            return {k: out[k].detach() / n_tasks + 1e-5 * v[k] for k in names}

        tick = time.perf_counter()
        fisher(gradient)
        fvp = time.perf_counter() - tick
        tick = time.perf_counter()
        solved, _ = truncated_conjugate_gradient(
            fisher,
            gradient,
            trpo.TRPOSettings().cg_iters,
            dot=trpo.flat_dot,
            residual_tol=1e-10,
            truncate=False,
        )
        cg = time.perf_counter() - tick
        direction = torch.cat([solved[k].reshape(-1) for k in names])
        if full_direction is None:
            full_direction = direction
        cosine = float(direction @ full_direction / (direction.norm() * full_direction.norm()))
        tick = time.perf_counter()
        _, metrics = trpo.trust_region_step(
            phi,
            objective,
            gradient,
            lambda x: x,
            n_tasks,
            trpo.TRPOSettings(fisher_fraction=fraction),
        )
        step = time.perf_counter() - tick
        rows.append(
            {
                "fraction": fraction,
                "fvp_s": fvp,
                "cg_s": cg,
                "step_s": step,
                "cosine": cosine,
                "kl": metrics["trpo_kl"],
                "improvement": metrics["trpo_loss_before"] - metrics["trpo_loss_after"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--child", choices=["system", "keep"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fractions[0] != 1.0:
        args.fractions.insert(0, 1.0)  # the reference direction
    if args.child:
        if args.child == "keep":
            from metarl.allocator import keep_freed_memory

            keep_freed_memory()
        print(json.dumps(measure(args.fractions, args.tasks)))
        return
    console = Console(width=150)
    results = {}
    for allocator in ("system", "keep"):
        console.print(f"measuring with the {allocator} allocator ...")
        env = {**os.environ, "METARL_MALLOC": allocator, "OMP_NUM_THREADS": "1"}
        command = [sys.executable, __file__, "--child", allocator, "--tasks", str(args.tasks)]
        out = subprocess.run(
            [*command, "--fractions", *map(str, args.fractions)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        results[allocator] = json.loads(out.strip().splitlines()[-1])
    table = Table(
        title=f"TRPO outer step, HalfCheetahDir, {args.tasks} tasks x 20 episodes x 200 steps, "
        "1 thread"
    )
    for column in (
        "allocator",
        "Fisher fraction",
        "one FVP s",
        "CG (10 it.) s",
        "TRPO step s",
        "vs system, full",
        "cos to full",
        "KL reached",
        "surrogate gain",
    ):
        table.add_column(column, justify="right")
    reference = results["system"][0]["step_s"]
    for allocator, rows in results.items():
        for row in rows:
            table.add_row(
                "glibc default" if allocator == "system" else "keep freed",
                f"{row['fraction']:g}",
                f"{row['fvp_s']:.2f}",
                f"{row['cg_s']:.2f}",
                f"{row['step_s']:.2f}",
                f"{reference / row['step_s']:.1f}x",
                f"{row['cosine']:.3f}",
                f"{row['kl']:.4f}",
                f"{row['improvement']:.4f}",
            )
    console.print(table)


if __name__ == "__main__":
    main()
