"""Meta-World stepping: how fast each way of stepping N envs of one ML1 skill runs here.

Sides, in one process run, alternated over rounds (median env steps/s; ratio to `loop`):
- `physics`: the bound, `mujoco.mj_step` x frame_skip on each env's own MjData, random
  controls, no Meta-World Python (no reward, no observation);
- `loop`: metarl's `MetaWorldEnv` (Meta-World's env with a task set) stepped in a Python loop,
  Meta-World's own code;
- `loop-fast`: the same with `metarl.envs.metaworld_speed`'s fast paths (metarl's default: the
  same numbers bit for bit, `tests/test_metaworld.py`);
- `sync`: the same envs in Gymnasium's `SyncVectorEnv` (fast paths);
- `sync-own`: the same `SyncVectorEnv` on Meta-World's own code (no fast paths: what a user of
  Gymnasium and Meta-World steps; `--suite` only);
- `async2`: Gymnasium's `AsyncVectorEnv` over 2 envs (2 worker processes, fast paths);
- `batched`, `batched2`: metarl's batched step (`metarl.envs.metaworld_vector`: the physics
  through `mujoco.batch` on 1 and 2 threads, observations, rewards and infos in NumPy; equal to
  Meta-World's own step bit for bit, `tests/test_metaworld_vector.py`), the same N sub-envs;
- `batch-physics`: the batched step's own bound, `Batch.step` alone on the same rows (1 thread);
- `envpool1`, `envpool2`: EnvPool's native `MetaWorld/<Skill>-v3` (C++), 1 and 2 threads, when
  the `envpool` package is importable. EnvPool draws each env's goal from its seed; it has no
  way to set Meta-World's fixed ML1 goal lists (its spec has no goal field), so it cannot run
  ML1's protocol as is: measured for the bound it sets, not adopted.

`--suite ML10` measures every skill of ML10 (its 10 training and 5 test skills, each on its
ML1 goals) in one run with the sides `physics`, `loop`, `loop-fast`, `sync-own`, `sync`,
`batched` and `batch-physics`, one skill's envs built, timed over the rounds and closed before
the next skill's, and prints one row per skill with its family and the batched step's share of
the physics bound, then the same per family (env steps summed over its skills, as time).

    python scripts/benchmarks/bench_metaworld_step.py                 # push, 20 envs, 3 rounds
    python scripts/benchmarks/bench_metaworld_step.py --skill reach --envs 10 --rounds 1
    python scripts/benchmarks/bench_metaworld_step.py --suite ML10 --envs 10 --steps 100
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

ORIGINAL_CODE = {"physics", "loop", "sync-own"}
"""The sides timed with Meta-World's own touching_object and quaternion."""
SUITE_SIDES = ("physics", "loop", "loop-fast", "sync-own", "sync", "batched", "batch-physics")
"""The sides `--suite` times for each skill (no second thread, process pool or EnvPool)."""
FAMILIES = {
    "reach-v3": "reach, push, pick (one object)",
    "push-v3": "reach, push, pick (one object)",
    "pick-place-v3": "reach, push, pick (one object)",
    "peg-insert-side-v3": "carry and place",
    "basketball-v3": "carry and place",
    "shelf-place-v3": "carry and place",
    "sweep-v3": "sweep",
    "sweep-into-v3": "sweep",
    "door-open-v3": "doors and drawers",
    "door-close-v3": "doors and drawers",
    "drawer-open-v3": "doors and drawers",
    "drawer-close-v3": "doors and drawers",
    "button-press-topdown-v3": "button, window, lever",
    "window-open-v3": "button, window, lever",
    "lever-pull-v3": "button, window, lever",
}
"""ML10's skills by what their reward reads: an object carried or pushed, a sweep's own
caging, or a joint or handle site of an articulated fixture."""


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


Runners = dict[str, tuple[Callable[[np.ndarray], Any], int]]


def sides(
    skill: str, n: int, wanted: tuple[str, ...] | None = None
) -> tuple[Runners, Callable[[], None]]:
    """The sides' step functions (all, or `wanted`) and a function that closes their envs."""
    import mujoco

    envs = [make_env(skill, i % 50) for i in range(n)]
    closers: list[Callable[[], Any]] = [env.close for env in envs]

    def close() -> None:
        for closer in closers:
            closer()

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
        for threads in (1, 2) if wanted is None else (1,):
            tasks = [MetaWorldTask("ML1", skill, "train", i % 50, 0) for i in range(n)]
            batched[threads] = MetaWorldVector(dist, translated, n, 1, threads=threads)
            batched[threads].set_tasks(tasks)
            batched[threads].reset()
            closers.append(batched[threads].close)

    vec = gymnasium.vector.SyncVectorEnv([maker(i) for i in range(n)])
    vec.reset(seed=0)
    closers.append(vec.close)
    out: Runners = {
        "physics": (physics, n),
        "loop": (loop, n),
        "loop-fast": (loop, n),
        "sync": (lambda a: vec.step(a), n),
    }
    if wanted is not None:
        out["sync-own"] = (lambda a: vec.step(a), n)
    else:
        two = gymnasium.vector.AsyncVectorEnv([maker(i) for i in range(2)])
        two.reset(seed=0)
        closers.append(two.close)
        out["async2"] = (lambda a: two.step(a[:2]), 2)
    if batched:
        one = batched[1]
        out["batched"] = (one.step, n)
        if 2 in batched:
            out["batched2"] = (batched[2].step, n)
        out["batch-physics"] = (lambda a: one._batch.step(nstep=one.frame_skip), n)
    if wanted is not None:
        return {name: out[name] for name in wanted if name in out}, close
    try:
        import envpool
    except ImportError:
        return out, close
    camel = "".join(p[:1].upper() + p[1:] for p in full_skill_name(skill)[:-3].split("-"))
    for threads in (1, 2):
        pool = envpool.make_gymnasium(
            f"MetaWorld/{camel}-v3", num_envs=n, num_threads=threads, seed=0
        )
        pool.reset()
        out[f"envpool{threads}"] = (pool.step, n)
        closers.append(pool.close)
    return out, close


def measure(runners: Runners, steps: int, rounds: int) -> dict[str, float]:
    """Median env steps/s of each side over `rounds`, the sides alternated within a round."""
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, (step, envs) in runners.items():
            use_fast_paths(name not in ORIGINAL_CODE)
            rates[name].append(rate(step, envs, steps))
    use_fast_paths(True)
    return {name: statistics.median(values) for name, values in rates.items()}


def suite(name: str, envs: int, steps: int, rounds: int, markdown: bool) -> None:
    """Every skill of benchmark `name` (ML10): one row per skill, then per family."""
    from metarl.envs.metaworld_tasks import load_benchmark

    bench = load_benchmark(name, None, 0)
    splits = {s: "train" for s in bench.train_classes} | {s: "test" for s in bench.test_classes}
    rows: list[list[str]] = []
    seconds: dict[str, dict[str, float]] = {}  # per family and side: time for `envs * steps`
    for skill, split in splits.items():
        runners, close = sides(skill, envs, SUITE_SIDES)
        try:
            rates = measure(runners, steps, rounds)
        finally:
            close()
        family = FAMILIES.get(skill, "other")
        for side, value in rates.items():
            spent = seconds.setdefault(family, {})
            spent[side] = spent.get(side, 0.0) + envs * steps / value
        cells = [f"{rates[c]:,.0f}" if c in rates else "-" for c in SUITE_SIDES]
        share = rates["batched"] / rates["physics"] if "batched" in rates else float("nan")
        rows.append([skill, split, family, *cells, f"{share:.0%}"])
        Console(stderr=True).print(
            f"{skill}: " + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items())
        )
    family_rows: list[list[str]] = []
    for family, spent in seconds.items():
        count = sum(1 for s in splits if FAMILIES.get(s, "other") == family)
        total = count * envs * steps
        cells = [f"{total / spent[c]:,.0f}" if c in spent else "-" for c in SUITE_SIDES]
        share = spent["physics"] / spent["batched"] if "batched" in spent else float("nan")
        family_rows.append([family, str(count), *cells, f"{share:.0%}"])
    sizes = f"{envs} envs, {steps} steps, median of {rounds} rounds"
    show(
        f"Meta-World {name}: env steps/s per skill ({sizes})",
        ["skill", "split", "family"],
        rows,
        markdown,
    )
    show(
        f"Meta-World {name}: env steps/s per family (its skills' env steps / their time)",
        ["family", "skills"],
        family_rows,
        markdown,
    )


def show(title: str, keys: list[str], rows: list[list[str]], markdown: bool) -> None:
    """The rows as a rich table, or as a Markdown table (for the results page)."""
    header = [*keys, *SUITE_SIDES, "batched / physics"]
    if markdown:
        print(f"\n{title}\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    table = Table(title=title)
    for col in header:
        table.add_column(col, justify="left" if col in keys else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=220).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skill", default="push")
    parser.add_argument("--suite", choices=("ML10",), default=None)
    parser.add_argument("--envs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="--suite: Markdown tables")
    args = parser.parse_args()
    if args.suite is not None:
        suite(args.suite, args.envs, args.steps, args.rounds, args.markdown)
        return
    skill = full_skill_name(args.skill)
    runners, close = sides(skill, args.envs)
    try:
        medians = measure(runners, args.steps, args.rounds)
    finally:
        close()
    table = Table(title=f"Meta-World {skill}: env steps/s (median of {args.rounds} rounds)")
    for col in ("side", "envs", "env steps/s", "x loop"):
        table.add_column(col, justify="right" if col != "side" else "left")
    base = medians["loop"]
    for name, (_, envs) in runners.items():
        median = medians[name]
        table.add_row(name, str(envs), f"{median:,.0f}", f"{median / base:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
