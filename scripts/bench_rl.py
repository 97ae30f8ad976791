"""Speed of the PPO inner loop inside meta-training against SB3 PPO's own `learn()`.

Both sides run in this process, alternately (rounds), with the same PPO settings (the
recipe's `[learner]` table and inner lr) and one torch thread each:
- SB3: `PPO.learn()` on a single task of the family (one env, the family's default task);
- metarl: `MetaTrainer.fit()` on the recipe (Reptile, or `--algorithm fomaml`), which swaps
  tasks, copies phi into the policy, resets Adam, seeds and resets the env per rollout and
  takes outer steps.
The rate is environment steps per second of wall time, and per second of this process's CPU
time (on a shared machine the CPU-time rate is the steadier of the two). The breakdown: rollout
(`collect_rollouts`), PPO update (`train()`, plus FOMAML's query gradients), swaps (loading
parameters, fresh optimizer, set_task, seeding and resetting the env) and the rest (outer
step, checkpoints and metrics on metarl's side; logging on SB3's).

    python scripts/bench_rl.py                          # navigation2d, 2 rounds
    python scripts/bench_rl.py --task halfcheetah-vel   # MuJoCo (needs gymnasium[mujoco])
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium
import torch
from rich.console import Console
from rich.table import Table
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from metarl.config import Algorithm, Recipe, with_overrides
from metarl.learners.sb3_ppo import PPOMetaLearner, PPOSettings
from metarl.registry import resolve_recipe
from metarl.rl.baselines import meta_env_steps
from metarl.train import MetaTrainer

CPU = torch.device("cpu")


def timed(fn: Callable[..., Any], into: dict[str, float], key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tick = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into[key] += time.perf_counter() - tick

    return wrapper


def run_sb3(recipe: Recipe, env_steps: int) -> dict[str, float]:
    """SB3 PPO on one task of the family, `env_steps` steps, with the recipe's settings."""
    s = PPOSettings.from_recipe(recipe)
    env_id = resolve_env_id(recipe)
    vec_env = DummyVecEnv([lambda: Monitor(gymnasium.make(env_id)) for _ in range(s.n_envs)])
    ppo = PPO(
        "MlpPolicy",
        vec_env,
        **s.ppo_kwargs(recipe.train.inner_lr, vec_env.action_space),
        device=CPU,
        seed=0,
        verbose=0,
    )
    parts = {"rollout": 0.0, "update": 0.0, "swap": 0.0}
    ppo.collect_rollouts = timed(ppo.collect_rollouts, parts, "rollout")  # type: ignore[method-assign]
    ppo.train = timed(ppo.train, parts, "update")  # type: ignore[method-assign]
    tick, cpu = time.perf_counter(), time.process_time()
    ppo.learn(total_timesteps=env_steps)
    total, cpu = time.perf_counter() - tick, time.process_time() - cpu
    return {"env_steps": float(ppo.num_timesteps), "seconds": total, "cpu": cpu, **parts}


def resolve_env_id(recipe: Recipe) -> str:
    from metarl.learners import distribution

    return str(distribution(recipe).env_id)  # type: ignore[attr-defined]


def run_metarl(recipe: Recipe, out: Path) -> dict[str, float]:
    trainer = MetaTrainer.start(recipe, out, CPU)
    meta = trainer.meta
    assert isinstance(meta, PPOMetaLearner)
    meta.timers.reset()
    tick, cpu = time.perf_counter(), time.process_time()
    trainer.fit()
    total, cpu = time.perf_counter() - tick, time.process_time() - cpu
    t = meta.timers
    return {
        "env_steps": float(t.env_steps),
        "seconds": total,
        "cpu": cpu,
        "rollout": t.rollout,
        "update": t.update,
        "swap": t.swap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="navigation2d", help="an RL recipe of the catalog")
    parser.add_argument("--iterations", type=int, default=8, help="meta-iterations per round")
    parser.add_argument("--algorithm", choices=["reptile", "fomaml"], default="reptile")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    recipe = with_overrides(
        resolve_recipe(args.task),
        "train",
        meta_iterations=args.iterations,
        algorithm=Algorithm(args.algorithm),
        checkpoint_every=args.iterations,
    )
    env_steps = meta_env_steps(recipe)
    rows: dict[str, list[dict[str, float]]] = {"SB3 PPO.learn (1 task)": [], "metarl": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rows["SB3 PPO.learn (1 task)"].append(run_sb3(recipe, env_steps))
            rows["metarl"].append(run_metarl(recipe, Path(tmp) / f"run{r}"))

    t = recipe.train
    learner = PPOSettings.from_recipe(recipe)
    table = Table(
        title=f"{args.task}: env steps/s, {args.rounds} alternating rounds (median round "
        "by wall rate shown); "
        f"{args.algorithm}, meta_batch {t.meta_batch} x {t.inner_steps} PPO updates of "
        f"n_steps {learner.n_steps}, {learner.n_epochs} epochs, batch {learner.batch_size}"
    )
    for col in ("side", "env steps", "wall s", "steps/s", "vs SB3", "steps/CPU s", "vs SB3 (CPU)"):
        table.add_column(col, justify="right")
    for col in ("rollout s", "PPO update s", "swaps s", "other s"):
        table.add_column(col, justify="right")
    best = {
        k: sorted(v, key=lambda m: m["env_steps"] / m["seconds"])[len(v) // 2]
        for k, v in rows.items()
    }
    sb3 = best["SB3 PPO.learn (1 task)"]
    sb3_rate, sb3_cpu = sb3["env_steps"] / sb3["seconds"], sb3["env_steps"] / sb3["cpu"]
    for name, m in best.items():
        rate, cpu_rate = m["env_steps"] / m["seconds"], m["env_steps"] / m["cpu"]
        other = m["seconds"] - m["rollout"] - m["update"] - m["swap"]
        table.add_row(
            name,
            f"{int(m['env_steps']):,}",
            f"{m['seconds']:.2f}",
            f"{rate:,.0f}",
            f"{100 * rate / sb3_rate:.0f}%",
            f"{cpu_rate:,.0f}",
            f"{100 * cpu_rate / sb3_cpu:.0f}%",
            f"{m['rollout']:.2f}",
            f"{m['update']:.2f}",
            f"{m['swap']:.3f}",
            f"{other:.2f}",
        )
    all_rates = {
        k: [
            f"{m['env_steps'] / m['seconds']:,.0f} ({m['env_steps'] / m['cpu']:,.0f} CPU)"
            for m in v
        ]
        for k, v in rows.items()
    }
    Console(width=160).print(table)
    Console(width=160).print(f"every round, steps/s (per CPU s): {all_rates}", highlight=False)


if __name__ == "__main__":
    main()
