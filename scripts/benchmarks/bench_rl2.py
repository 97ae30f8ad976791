"""RL²'s meta-training speed at a recipe's size, against the stepping bound in the same run.

Runs the recipe's learner (`metarl.learners.rl2`) for a few meta-iterations on one thread
(trials of the meta-batch, then PPO on them) and prints the env steps inside trials per
second, seconds per million of them, and how the time splits: the vector env's `step`
(physics), the GRU's forward per step (policy), and the PPO update. "physics alone" is the
env steps per second the vector env's step allows by itself: the bound a whole training run
is measured against.

    python scripts/benchmarks/bench_rl2.py navigation2d-rl2 --iterations 10
    python scripts/benchmarks/bench_rl2.py halfcheetah-vel-rl2 --iterations 3
    python scripts/benchmarks/bench_rl2.py metaworld-ml1-reach-rl2 --iterations 1

`--whole` runs the trainer instead (`metarl train`'s loop: the outer step, metrics,
checkpoints and logging included) for that many iterations in a temporary run directory, so
the rate is a whole meta-training's, against the same run's stepping bound:

    python scripts/benchmarks/bench_rl2.py halfcheetah-dir-rl2 --iterations 5 --whole
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from metarl.config import recipe_from_dict
from metarl.learners import build_meta_learner
from metarl.protocol import Split, task_rng
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="an RL² recipe (algorithm = rl2)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--whole", action="store_true", help="run the trainer's whole loop")
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = resolve_recipe(args.recipe)
    meta: Any  # the RL² learner
    if args.whole:
        wall, meta = whole_training(recipe.to_dict(), recipe.source, args.iterations)
    else:
        meta = build_meta_learner(recipe, torch.device("cpu"))
        t = recipe.train
        start = time.perf_counter()
        for i in range(args.iterations):
            rng = task_rng(t.seed, Split.TRAIN, i)
            tasks = meta.dist.sample(t.meta_batch, rng, Split.TRAIN)
            phi = {n: p.detach().clone() for n, p in meta.model.named_parameters()}
            meta.adapt(phi, tasks, rng, slice(None))
        wall = time.perf_counter() - start
    timers = meta.timers
    steps, physics = timers.env_steps, timers.rollout.physics
    print(
        f"{args.recipe}: {args.iterations} iterations, {steps} env steps in trials, "
        f"{wall:.1f} s: {wall / steps * 1e6:.1f} s per M env steps, {steps / wall:,.0f} env "
        f"steps/s; physics {physics:.1f} s ({physics / wall:.0%}), policy "
        f"{timers.rollout.policy:.1f} s, PPO {timers.update:.1f} s; physics alone "
        f"{steps / max(physics, 1e-9):,.0f} env steps/s"
    )


def whole_training(data: dict[str, Any], source: str, iterations: int) -> tuple[float, Any]:
    """`iterations` meta-iterations of the trainer on the recipe (its checkpoint written once,
    at the end): the wall seconds of `fit` and the RL² learner, whose timers hold the split."""
    data["train"].update(meta_iterations=iterations, checkpoint_every=iterations)
    with tempfile.TemporaryDirectory() as tmp:
        recipe = recipe_from_dict(data, source)
        trainer = MetaTrainer.start(recipe, Path(tmp) / "run", torch.device("cpu"))
        start = time.perf_counter()
        trainer.fit(progress=False)
        return time.perf_counter() - start, trainer.meta


if __name__ == "__main__":
    main()
