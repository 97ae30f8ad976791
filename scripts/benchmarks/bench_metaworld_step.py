"""Meta-World stepping: how fast each way of stepping N envs of one ML1 skill runs here.

Sides, in one process run, alternated over rounds (median env steps/s; ratio to `loop`):
- `physics`: the bound, `mujoco.mj_step` x frame_skip on each env's own MjData, random
  controls, no Meta-World Python (no reward, no observation);
- `loop`: metarl's `MetaWorldEnv` (Meta-World's env with a task set) stepped in a Python loop,
  Meta-World's own code;
- `loop-fast`: the same with `metarl.envs.metaworld_speed`'s fast paths (metarl's default: the
  same numbers bit for bit, `tests/test_metaworld.py`);
- `sync`: the same envs in Gymnasium's `SyncVectorEnv` (fast paths);
- `async2`: Gymnasium's `AsyncVectorEnv` over 2 envs (2 worker processes, fast paths);
- `batched`, `batched2`: metarl's batched step (`metarl.envs.metaworld_vector`: the physics
  through `mujoco.batch` on 1 and 2 threads, observations, rewards and infos in NumPy; equal to
  Meta-World's own step bit for bit, `tests/test_metaworld_vector.py`), the same N sub-envs;
- `batch-physics`: the batched step's own bound, `Batch.step` alone on the same rows (1 thread);
- `envpool1`, `envpool2`: EnvPool's native `MetaWorld/<Skill>-v3` (C++), 1 and 2 threads, when
  the `envpool` package is importable. EnvPool draws each env's goal from its seed; it has no
  way to set Meta-World's fixed ML1 goal lists (its spec has no goal field), so it cannot run
  ML1's protocol as is: measured for the bound it sets, not adopted.

    python scripts/benchmarks/bench_metaworld_step.py                 # push, 20 envs, 3 rounds
    python scripts/benchmarks/bench_metaworld_step.py --skill reach --envs 10 --rounds 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from rich.console import Console
from rich.table import Table

from metarl.envs.metaworld import MetaWorldEnv, MetaWorldTask, full_skill_name
from metarl.envs.metaworld_speed import use_fast_paths

ORIGINAL_CODE = {"physics", "loop"}
"""The sides timed with Meta-World's own touching_object and quaternion."""


def make_env(skill: str, index: int) -> MetaWorldEnv:
    env = MetaWorldEnv("ML1", skill, seed=0)
    env.set_task(MetaWorldTask("ML1", skill, "train", index, 0))
    env.reset()
    return env


def rate(step: Callable[[np.ndarray], Any], envs: int, steps: int) -> float:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, envs, 4)).astype(np.float32)
    start = time.perf_counter()
    for t in range(steps):
        step(actions[t])
    return envs * steps / (time.perf_counter() - start)


def sides(skill: str, n: int) -> dict[str, tuple[Callable[[np.ndarray], Any], int]]:
    import mujoco

    envs = [make_env(skill, i % 50) for i in range(n)]

    def physics(a: np.ndarray) -> None:
        for env, act in zip(envs, a, strict=True):
            inner = env.skill_env
            inner.data.ctrl[:] = 0.0
            inner.data.mocap_pos[:] += 0.0 * act[0]
            mujoco.mj_step(inner.model, inner.data, nstep=inner.frame_skip)

    def loop(a: np.ndarray) -> None:
        for env, act in zip(envs, a, strict=True):
            _, _, term, trunc, _ = env.step(act)
            if term or trunc:
                env.reset()

    def maker(index: int) -> Callable[[], gymnasium.Env]:
        return lambda: make_env(skill, index % 50)

    from metarl.envs.metaworld import MetaWorldDistribution, MetaWorldTask
    from metarl.envs.metaworld_skills import skill as batched_skill
    from metarl.envs.metaworld_vector import MetaWorldVector

    dist = MetaWorldDistribution("ML1", skill.removesuffix("-v3"))
    translated = batched_skill(skill)
    batched: dict[int, MetaWorldVector] = {}
    if translated is not None:
        for threads in (1, 2):
            tasks = [MetaWorldTask("ML1", skill, "train", i % 50, 0) for i in range(n)]
            batched[threads] = MetaWorldVector(dist, translated, n, 1, threads=threads)
            batched[threads].set_tasks(tasks)
            batched[threads].reset()

    vec = gymnasium.vector.SyncVectorEnv([maker(i) for i in range(n)])
    vec.reset(seed=0)
    two = gymnasium.vector.AsyncVectorEnv([maker(i) for i in range(2)])
    two.reset(seed=0)
    out: dict[str, tuple[Callable[[np.ndarray], Any], int]] = {
        "physics": (physics, n),
        "loop": (loop, n),
        "loop-fast": (loop, n),
        "sync": (lambda a: vec.step(a), n),
        "async2": (lambda a: two.step(a[:2]), 2),
    }
    if batched:
        one = batched[1]
        out["batched"] = (one.step, n)
        out["batched2"] = (batched[2].step, n)
        out["batch-physics"] = (lambda a: one._batch.step(nstep=one.frame_skip), n)
    try:
        import envpool
    except ImportError:
        return out
    camel = "".join(p[:1].upper() + p[1:] for p in full_skill_name(skill)[:-3].split("-"))
    for threads in (1, 2):
        pool = envpool.make_gymnasium(
            f"MetaWorld/{camel}-v3", num_envs=n, num_threads=threads, seed=0
        )
        pool.reset()
        out[f"envpool{threads}"] = (pool.step, n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skill", default="push")
    parser.add_argument("--envs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    skill = full_skill_name(args.skill)
    runners = sides(skill, args.envs)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, (step, envs) in runners.items():
            use_fast_paths(name not in ORIGINAL_CODE)
            rates[name].append(rate(step, envs, args.steps))
    table = Table(title=f"Meta-World {skill}: env steps/s (median of {args.rounds} rounds)")
    for col in ("side", "envs", "env steps/s", "x loop"):
        table.add_column(col, justify="right" if col != "side" else "left")
    base = statistics.median(rates["loop"])
    for name, (_, envs) in runners.items():
        median = statistics.median(rates[name])
        table.add_row(name, str(envs), f"{median:,.0f}", f"{median / base:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
