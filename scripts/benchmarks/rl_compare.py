"""Meta-RL: does meta-learning a PPO initialization beat the baselines?

For one RL recipe (`--recipe`, default `navigation2d`; also `halfcheetah-dir`, ...), trains,
with the same PPO settings and (for joint) the same number of environment steps:
Reptile and FOMAML meta-training (the recipe, levers as options) and the joint
multi-task baseline (`metarl.rl.baselines.joint_recipe`); the random baseline is the seed
initialization. Each initialization is then adapted with the same budget (at most 5 PPO
updates) on the same held-out tasks (test split, fixed by eval.seed), and the table reports
the mean return with its 95% CI after 0, 1, 2 and 5 updates, beside anchors stepped in the
env on the same tasks:
- zero action (every family): the agent does nothing; on Navigation2D the point stands
  still, return = -100 * |goal|;
- oracle (Navigation2D): per axis, the action clip(goal - position, -0.1, 0.1), the fastest
  way to the goal.

    python scripts/benchmarks/rl_compare.py                                 # Navigation2D (~25 min)
    python scripts/benchmarks/rl_compare.py --recipe halfcheetah-dir         # HalfCheetahDir
    python scripts/benchmarks/rl_compare.py --iterations 5 --eval-tasks 8    # smoke
    python scripts/benchmarks/rl_compare.py --recipe metaworld-ml1-reach --only reptile,joint \
        --eval-tasks 8 --steps 0,2     # needs the [metaworld] extra; also prints success rates

Results are also written to `--out/results.json`, the curves to `--out/curves.png`.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

import metarl  # noqa: F401  (registers the environment families)
from metarl.config import Algorithm, OptimizerName, Recipe, with_overrides
from metarl.curves import Curve, mean_ci95
from metarl.envs.base import episode_return
from metarl.envs.distribution import EnvTask
from metarl.envs.navigation import oracle_action
from metarl.learners import build_meta_learner
from metarl.learners.batched_rl import BatchedRLMetaLearner
from metarl.learners.sb3_ppo import SB3MetaLearner
from metarl.plots import plot_curves
from metarl.progress import ProgressCallback
from metarl.registry import resolve_recipe
from metarl.rl.baselines import joint_outer_recipe, joint_recipe, meta_env_steps
from metarl.train import MetaTrainer

CPU = torch.device("cpu")
err = Console(stderr=True)


def anchors(
    meta: SB3MetaLearner | BatchedRLMetaLearner, tasks: list[EnvTask]
) -> dict[str, np.ndarray]:
    """Per-task returns of doing nothing and, on Navigation2D, of the greedy oracle."""
    env = meta.dist.make_env(tasks[0])
    zero = np.zeros(env.action_space.shape, dtype=np.float32)
    result = {"zero action": [episode_return(env, t.params, lambda _: zero)[0] for t in tasks]}
    if "Navigation2D" in getattr(tasks[0], "env_id", ""):
        result["oracle"] = [
            episode_return(env, t.params, partial(oracle_action, goal=t.params["goal"]))[0]
            for t in tasks
        ]
    env.close()
    return {name: np.asarray(values) for name, values in result.items()}


def train(recipe: Recipe, out: Path, name: str) -> tuple[dict[str, torch.Tensor], float]:
    started = time.perf_counter()
    trainer = MetaTrainer.start(recipe, out / name, CPU, callbacks=[ProgressCallback(err)])
    trainer.fit()
    weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    return weights, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="navigation2d", help="an RL recipe (name or path)")
    parser.add_argument("--iterations", type=int, default=None, help="meta-iterations")
    parser.add_argument("--meta-batch", type=int, default=None)
    parser.add_argument("--inner-steps", type=int, default=None, help="PPO updates per task")
    parser.add_argument("--inner-lr", type=float, default=None, help="PPO learning rate")
    parser.add_argument("--meta-step", type=float, default=None)
    parser.add_argument("--log-std", type=float, default=None, help="log_std_init")
    parser.add_argument("--n-steps", type=int, default=None, help="env steps per PPO update")
    parser.add_argument(
        "--fomaml-meta-step",
        type=float,
        default=0.01,
        help="FOMAML's outer Adam lr (its delta is a gradient, not phi - W: Reptile's "
        "SGD step of 0.5 on it would throw the value network far away)",
    )
    parser.add_argument("--seed", type=int, default=None, help="train.seed (init and tasks)")
    parser.add_argument("--eval-tasks", type=int, default=40)
    parser.add_argument("--steps", default="0,1,2,5", help="adaptation updates to report")
    parser.add_argument(
        "--only",
        default="reptile,fomaml,joint",
        help="what to train (also: maml and metasgd with TRPO, promp; with --recipe "
        "navigation2d-maml and --only maml,promp,metasgd,fomaml,reptile,joint,joint-trpo: the "
        "ablation at equal env steps; joint-trpo is the joint baseline with TRPO as its step)",
    )
    parser.add_argument("--out", type=Path, default=None, help="default runs/rl-RECIPE")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small MLPs: threads only add overhead (and the box is shared)

    recipe = resolve_recipe(args.recipe)
    recipe = with_overrides(
        recipe,
        "train",
        meta_iterations=args.iterations,
        meta_batch=args.meta_batch,
        inner_steps=args.inner_steps,
        inner_lr=args.inner_lr,
        meta_step=args.meta_step,
        seed=args.seed,
    )
    recipe = with_overrides(recipe, "learner", log_std_init=args.log_std, n_steps=args.n_steps)
    steps = [int(s) for s in args.steps.split(",")]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = (args.out or Path(f"runs/rl-{Path(args.recipe).stem}")) / stamp
    # Reptile (and the joint baseline built from it) step with SGD/Adam, never TRPO. On a
    # MAML-RL recipe (one VPG step) Reptile takes two steps per task (one would make it joint
    # training; two spend the env steps of maml's pre- and post-update rollouts) and its own
    # outer step, epsilon 1 -> 0 as in the Reptile paper
    reptile = with_overrides(recipe, "train", algorithm=Algorithm.REPTILE)
    if recipe.train.outer_optimizer.value in ("trpo", "promp"):
        reptile = with_overrides(
            reptile,
            "train",
            outer_optimizer="sgd",
            inner_steps=max(2, recipe.train.inner_steps),
            meta_step=1.0,
            meta_step_final=0.0,
        )
    recipes = {
        "maml": with_overrides(recipe, "train", algorithm=Algorithm.MAML, outer_optimizer="trpo"),
        "promp": with_overrides(
            recipe,
            "train",
            algorithm=Algorithm.MAML,
            outer_optimizer="promp",
            meta_step=1e-3,  # ProMP's Adam lr, held (its code does not anneal it)
            meta_step_final=1e-3,
        ),
        "metasgd": with_overrides(
            recipe, "train", algorithm=Algorithm.METASGD, outer_optimizer="trpo"
        ),
        "reptile": reptile,
        "fomaml": with_overrides(
            recipe,
            "train",
            algorithm=Algorithm.FOMAML,
            outer_optimizer=OptimizerName.ADAM,
            meta_step=args.fomaml_meta_step,
        ),
        "joint": joint_recipe(reptile),
        "joint-trpo": joint_outer_recipe(recipe),
    }
    inits: dict[str, dict[str, torch.Tensor] | None] = {"random": None}
    info: dict[str, dict[str, float]] = {"random": {"env_steps": 0, "train_s": 0.0}}
    for name in args.only.split(","):
        err.print(f"training {name}: {meta_env_steps(recipes[name]):,} env steps")
        inits[name], seconds = train(recipes[name], out, name)
        info[name] = {"env_steps": meta_env_steps(recipes[name]), "train_s": seconds}

    meta = build_meta_learner(recipe, CPU)
    assert isinstance(meta, SB3MetaLearner | BatchedRLMetaLearner)
    random_init = {k: v.clone() for k, v in meta.model.state_dict().items()}
    curves: dict[str, Curve] = {}
    others: dict[str, dict[str, Curve]] = {}  # metrics a distribution scores besides the return
    for name, weights in inits.items():
        meta.model.load_state_dict(random_init if weights is None else weights)
        started = time.perf_counter()
        scored = getattr(meta, "curves", None)
        by_metric = scored(steps, args.eval_tasks) if scored else {}
        if "return" in by_metric:
            curves[name] = by_metric.pop("return")
            others[name] = by_metric
        else:
            curves[name] = meta.curve(steps, args.eval_tasks)
        info[name]["eval_s"] = time.perf_counter() - started
        err.print(f"evaluated {name} in {info[name]['eval_s']:.0f} s", highlight=False)
    tasks, _ = meta.eval_tasks(args.eval_tasks)
    anchor = anchors(meta, tasks)

    table = Table(
        title=f"{args.recipe}, {args.eval_tasks} held-out tasks: return after k inner updates "
        f"(mean ± 95% CI); n_steps {recipe.learner['n_steps']}, lr {recipe.train.inner_lr}, "
        f"log_std_init {recipe.learner['log_std_init']}"
    )
    table.add_column("init")
    for s in steps:
        table.add_column(f"k={s}", justify="right")
    table.add_column(f"gain k={steps[-1]} - k={steps[0]}", justify="right")
    table.add_column("train env steps", justify="right")
    table.add_column("train s", justify="right")
    results: dict[str, object] = {"recipe": recipe.to_dict(), "steps": steps}
    for name, values in anchor.items():
        m, c = mean_ci95(values)
        table.add_row(name, *[f"{m:.1f} ± {c:.1f}"] * len(steps), "", "", "")
        results[name] = {"mean": m, "ci95": c}
    for name, curve in curves.items():
        gain, gain_ci = curve.gains()[-1]
        cells = [f"{m:.1f} ± {c:.1f}" for m, c in zip(curve.mean, curve.ci95, strict=True)]
        table.add_row(
            name,
            *cells,
            f"{gain:+.1f} ± {gain_ci:.1f}",
            f"{int(info[name]['env_steps']):,}",
            f"{info[name]['train_s']:.0f}",
        )
        results[name] = {**curve.to_json(), **info[name]}
    # paired over the same held-out tasks (same seeds): meta-trained minus each baseline
    for name in ("maml", "promp", "metasgd", "reptile", "fomaml"):
        for base in ("random", "joint", "joint-trpo"):
            if name not in curves or base not in curves:
                continue
            diff = curves[name].per_task - curves[base].per_task
            pairs = [mean_ci95(row) for row in diff]
            table.add_row(
                f"{name} − {base} (paired)", *[f"{m:+.1f} ± {c:.1f}" for m, c in pairs], "", "", ""
            )
            results[f"{name}-{base}"] = {"steps": steps, "diff": pairs}
    Console(width=160).print(table)
    for metric in sorted({m for by_metric in others.values() for m in by_metric}):
        extra = Table(title=f"{args.recipe}: {metric} after k inner updates (mean ± 95% CI)")
        extra.add_column("init")
        for s in steps:
            extra.add_column(f"k={s}", justify="right")
        for name, by_metric in others.items():
            curve = by_metric[metric]
            cells = [f"{m:.2f} ± {c:.2f}" for m, c in zip(curve.mean, curve.ci95, strict=True)]
            extra.add_row(name, *cells)
            entry = results[name]
            assert isinstance(entry, dict)
            entry[metric] = curve.to_json()
        Console(width=160).print(extra)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_curves(curves, out / "curves.png", title=f"{args.recipe}: return after k updates")
    err.print(f"wrote {out / 'results.json'}", highlight=False)


if __name__ == "__main__":
    main()
