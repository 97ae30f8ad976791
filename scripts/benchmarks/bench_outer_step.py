"""One meta-iteration of a MAML-RL recipe, piece by piece: where an update's seconds go.

Builds the recipe's learner at its full size, draws `meta_batch` training tasks, and times
the adaptation (pre-update rollouts and the inner step), the meta-gradient (post-update
rollouts and the second-order gradient) and the outer step (TRPO's or ProMP's) on that one
batch, the outer step `--rounds` times from the same start; `--profile` adds torch's
profiler's table of the outer step's most expensive operators. One torch thread, as the
learners train. What `bench_rl.py --as-recipe` measures for whole runs, taken apart.

    python scripts/benchmarks/bench_outer_step.py --task halfcheetah-dir-promp [--profile]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from rich.console import Console
from rich.table import Table

from metarl.learners import build_meta_learner
from metarl.learners.maml_rl import MAMLRLMetaLearner
from metarl.outer import build_outer_step
from metarl.protocol import MetaStep, Split, task_rng
from metarl.registry import resolve_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="halfcheetah-dir-promp", help="a MAML-RL recipe")
    parser.add_argument("--rounds", type=int, default=2, help="outer steps timed (median)")
    parser.add_argument("--profile", action="store_true", help="torch profiler's top operators")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    recipe = resolve_recipe(args.task)
    meta = build_meta_learner(recipe, cpu)
    if not isinstance(meta, MAMLRLMetaLearner) or not recipe.train.outer_optimizer.learner_steps:
        raise SystemExit(f"{args.task}: expected a MAML-RL recipe with a trpo or promp step")
    phi = meta.phi()
    rng = task_rng(recipe.train.seed, Split.TRAIN, 0)
    tasks = meta.dist.sample(recipe.train.meta_batch, rng, Split.TRAIN)
    times: dict[str, float] = {}
    start = time.perf_counter()
    adaptation = meta.adapt(phi, tasks, rng)
    times["adapt (pre-update rollouts, inner step)"] = time.perf_counter() - start
    start = time.perf_counter()
    delta = meta.meta_gradient(adaptation)
    grads, metrics = delta.gradient, delta.metrics
    times["meta-gradient (post-update rollouts, gradient)"] = time.perf_counter() - start
    state = copy.deepcopy(meta.state_dict()), copy.deepcopy(meta.model.state_dict())
    n = recipe.train.meta_batch

    def outer() -> None:
        """The outer step from the same start each time (weights, learner and Adam state)."""
        meta.load_state_dict(copy.deepcopy(state[0]))
        meta.model.load_state_dict(state[1])
        step = build_outer_step(recipe, meta)  # a fresh step: its state from the start
        gradient = {k: g / n for k, g in grads.items()}
        step.step(MetaStep(gradient, lambda x: x, n, recipe.train.meta_step, delta.objective))

    runs = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        outer()
        runs.append(time.perf_counter() - start)
    times[f"outer step ({recipe.train.outer_optimizer.value}), median"] = sorted(runs)[
        len(runs) // 2
    ]
    table = Table(title=f"{args.task}: one meta-iteration of {n} tasks, one torch thread")
    table.add_column("part")
    table.add_column("seconds", justify="right")
    for part, seconds in times.items():
        table.add_row(part, f"{seconds:.2f}")
    for key in ("seconds_physics", "seconds_policy", "seconds_update"):
        table.add_row(f"  adapt + meta-gradient: {key}", f"{metrics[key]:.2f}")
    Console().print(table)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            outer()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
