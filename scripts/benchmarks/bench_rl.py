"""Meta-RL throughput: the batched learner against SB3's `PPO.learn()` and the machine's bound.

Every side runs in this process, alternately (rounds), with the same PPO settings (the
recipe's `[learner]` table with the overrides below, and its inner lr) and one torch thread
(`--threads N`: N torch threads and N physics threads):
- `sb3-learn`: SB3 `PPO.learn()` on one task of the family (its default task), `n_envs`
  envs in a `DummyVecEnv`, `--sb3-steps` env steps;
- `batched`: `MetaTrainer.fit()` of the recipe with `backend = "batched"`: the whole
  meta-training (rollouts of all `meta_batch x n_envs` sub-envs, inner updates, FOMAML's query
  rollouts, outer steps, checkpoints);
- `sb3`: the same meta-training with `backend = "sb3"` (one task after another through SB3's
  PPO), `--sb3-iterations` meta-iterations (it is slow);
- `batched-own`: Meta-World recipes only: the `batched` side with Meta-World's own envs
  stepped one by one (`ProtocolVectorEnv`) instead of the batched Meta-World step (how every
  Meta-World run stepped before it), for an A/B in one run;
- `bound`: the batched side's vector env (`meta_batch x n_envs` sub-envs, holding the tasks of
  the training's first iteration) stepped with fixed actions (the middle of the action space):
  no policy, no learning;
- `physics`: Meta-World recipes only: the physics bound of `bench_metaworld_step.py` over the
  same sub-envs of the same skills and goals: `mujoco.mj_step` x frame_skip on one `MjData`
  per sub-env of its slot's Meta-World model, from that slot's reset state (restored every
  episode), no Meta-World Python, no observation, no reward.
The rate is environment steps per second of wall time and per second of this process's CPU
time (on a shared machine the CPU-time rate is the steadier). The split: env (the vector env's
or `VecEnv`'s step calls), policy (the rest of the rollout: forwards, sampling, bookkeeping),
update (inner updates and query gradients) and other (outer steps, checkpoints, logging).
With `--as-recipe` a second table splits the whole training's wall time finer: the physics
(the time inside `mujoco.batch`'s step, timed during the training), the rest of the env step
(mocap, observations, rewards, infos, episode restarts), the policy, the inner update, the
meta-gradient (MAML-RL's objective and its gradient through the inner step; FOMAML's query
gradient), the outer step (the rest of the update time: TRPO's conjugate gradient and line
search, ProMP's steps), giving the vector env its tasks (the first iteration builds it), and
the trainer's own work (task sampling, metrics, checkpoints). `--markdown` prints the tables in
Markdown (for the results page).

    python scripts/benchmarks/bench_rl.py                                   # navigation2d
    python scripts/benchmarks/bench_rl.py --task halfcheetah-vel --n-steps 200 --meta-batch 40
    python scripts/benchmarks/bench_rl.py --sides sb3-learn,batched,sb3,bound --rounds 1

`--as-recipe` keeps the recipe's own training settings (algorithm, meta-batch, inner loop,
episodes, outer optimizer: e.g. a MAML-RL recipe's VPG step and TRPO) and changes only the
number of meta-iterations; only the `batched` and `bound` sides apply. The bound's share of the
whole training's rate is then what stepping leaves to everything else:

    python scripts/benchmarks/bench_rl.py --task halfcheetah-dir-maml --as-recipe \
        --iterations 3 --sides batched,bound --rounds 2
    python scripts/benchmarks/bench_rl.py --task metaworld-ml1-reach-maml --as-recipe \
        --iterations 2 --sides batched,bound --rounds 1
    python scripts/benchmarks/bench_rl.py --task metaworld-ml10-maml --as-recipe \
        --iterations 3 --sides batched,bound,physics --rounds 1 --markdown
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from metarl.config import Algorithm, Recipe, recipe_from_dict
from metarl.envs.vector import make_task_vector_env
from metarl.learners import distribution
from metarl.learners.batched_rl import BatchedRLMetaLearner
from metarl.learners.sb3_ppo import SB3MetaLearner
from metarl.protocol import Split, task_rng
from metarl.registry import resolve_recipe
from metarl.rl.baselines import meta_env_steps
from metarl.rl.settings import rl_settings
from metarl.train import MetaTrainer

CPU = torch.device("cpu")
SIDES = ("sb3-learn", "batched", "batched-own", "sb3", "bound", "physics")
RECIPE_SIDES = {"batched", "batched-own", "bound", "physics"}
"""The sides `--as-recipe` runs."""
PARTS = ("env", "policy", "update", "physics", "inner", "gradient", "outer", "tasks")
"""The seconds a side's result splits into (zero where a side has no such part)."""
Result = dict[str, float]


def timed(fn: Callable[..., Any], into: Result, key: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        tick = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into[key] += time.perf_counter() - tick

    return wrapper


def measure(run: Callable[[], Result]) -> Result:
    tick, cpu = time.perf_counter(), time.process_time()
    parts = run()
    return {**parts, "seconds": time.perf_counter() - tick, "cpu": time.process_time() - cpu}


def run_sb3_learn(recipe: Recipe, env_steps: int) -> Result:
    """SB3 PPO on one task of the family with the recipe's settings."""
    s = rl_settings(recipe)
    dist: Any = distribution(recipe)
    task = dist.sample(1, np.random.default_rng(0), Split.TRAIN)[0]
    vec_env = DummyVecEnv([lambda: Monitor(dist.make_env(task)) for _ in range(s.n_envs)])
    ppo = PPO(
        "MlpPolicy",
        vec_env,
        **s.ppo_kwargs(recipe.train.inner_lr, vec_env.action_space),
        device=CPU,
        seed=0,
        verbose=0,
    )
    parts = {"env": 0.0, "rollout": 0.0, "update": 0.0}
    vec_env.step_wait = timed(vec_env.step_wait, parts, "env")  # type: ignore[method-assign]
    ppo.collect_rollouts = timed(ppo.collect_rollouts, parts, "rollout")  # type: ignore[method-assign]
    ppo.train = timed(ppo.train, parts, "update")  # type: ignore[method-assign]

    def run() -> Result:
        ppo.learn(total_timesteps=env_steps)
        return {
            "env_steps": float(ppo.num_timesteps),
            "env": parts["env"],
            "policy": parts["rollout"] - parts["env"],
            "update": parts["update"],
        }

    return measure(run)


def run_meta(recipe: Recipe, out: Path) -> Result:
    """Whole meta-training of `recipe` (either backend), with its time split."""
    trainer = MetaTrainer.start(recipe, out, CPU)
    meta = trainer.meta
    if isinstance(meta, BatchedRLMetaLearner):
        parts = split_updates(meta)
        meta.timers.reset()

        def run() -> Result:
            with timed_physics() as physics:
                trainer.fit()
            t = meta.timers
            inner, gradient = parts["inner"], parts["gradient"]
            return {
                "env_steps": float(t.env_steps),
                "env": t.rollout.physics,
                "policy": t.rollout.policy,
                "update": t.update,
                "physics": physics[0],
                "inner": inner,
                "gradient": gradient,
                "outer": t.update - inner - gradient,
                "tasks": parts["tasks"],
            }

        return measure(run)
    assert isinstance(meta, SB3MetaLearner)
    env = {"env": 0.0}
    meta.vec_env.step_wait = timed(meta.vec_env.step_wait, env, "env")  # type: ignore[method-assign]
    meta.timers.reset()

    def run_sb3() -> Result:
        trainer.fit()
        t = meta.timers
        return {
            "env_steps": float(t.env_steps),
            "env": env["env"],
            "policy": t.collect - env["env"] + t.swap,
            "update": t.update,
        }

    return measure(run_sb3)


@contextlib.contextmanager
def timed_physics() -> Iterator[list[float]]:
    """The seconds spent in `mujoco.batch.Batch.step` while inside (the batched Meta-World
    step and the MuJoCo families build their `Batch` when a run first steps, so a subclass
    that times `step` is put in its place for the run)."""
    import mujoco.batch

    spent = [0.0]
    original = mujoco.batch.Batch

    class TimedBatch(original):  # type: ignore[misc,valid-type]
        def step(self, *args: Any, **kwargs: Any) -> Any:
            tick = time.perf_counter()
            try:
                return super().step(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - tick

    mujoco.batch.Batch = TimedBatch
    try:
        yield spent
    finally:
        mujoco.batch.Batch = original


def split_updates(meta: BatchedRLMetaLearner) -> Result:
    """Count the learner's update seconds by phase as it trains: `inner` (the update time
    inside `adapt`), `gradient` (inside `meta_gradient` or `query_gradient`; the rest, the
    outer step's, is the total less these two), and `tasks`: the wall time of giving the
    vector env its tasks (`_env`: built on the first call, its slots reset on new tasks)."""
    parts: Result = {"inner": 0.0, "gradient": 0.0, "tasks": 0.0}
    depth = [0]

    def counted(fn: Callable[..., Any], key: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            before = meta.timers.update
            depth[0] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                if depth[0] == 0:  # a phase inside another is the outer one's
                    parts[key] += meta.timers.update - before

        return wrapper

    meta.adapt = counted(meta.adapt, "inner")  # type: ignore[method-assign]
    for name in ("meta_gradient", "query_gradient"):
        setattr(meta, name, counted(getattr(meta, name), "gradient"))
    meta._env = timed(meta._env, parts, "tasks")  # type: ignore[method-assign]
    return parts


@contextlib.contextmanager
def metaworlds_own_envs() -> Iterator[None]:
    """Meta-World's distributions without their batched step (`make_vector_env` -> None)."""
    from metarl.envs.metaworld import MetaWorldDistribution

    batched = MetaWorldDistribution.make_vector_env
    MetaWorldDistribution.make_vector_env = lambda self, n, e: None  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        MetaWorldDistribution.make_vector_env = batched  # type: ignore[method-assign]


def first_tasks(recipe: Recipe) -> tuple[Any, list[Any]]:
    """The distribution and the tasks of the training's first meta-iteration (the draw
    `MetaTrainer.step` makes), so the bounds step the sub-envs the training stepped first."""
    dist: Any = distribution(recipe)
    rng = task_rng(recipe.train.seed, Split.TRAIN, 0)
    return dist, dist.sample(recipe.train.meta_batch, rng, Split.TRAIN)


def run_bound(recipe: Recipe, env_steps: int) -> Result:
    """The batched side's vector env stepped with fixed actions, no policy."""
    s = rl_settings(recipe)
    dist, tasks = first_tasks(recipe)
    env = make_task_vector_env(dist, tasks, s.n_envs)
    space: Any = env.single_action_space
    middle = (space.low + space.high) / 2 if hasattr(space, "low") else np.zeros((), np.int64)
    actions = np.stack([middle] * env.num_envs)
    steps = max(1, env_steps // env.num_envs)

    def run() -> Result:
        env.reset(seed=0)
        for _ in range(steps):
            env.step(actions)
        return {"env_steps": float(steps * env.num_envs), "env": 0.0, "policy": 0.0, "update": 0.0}

    result = measure(run)
    result["env"] = result["seconds"]
    env.close()
    return result


def run_physics(recipe: Recipe, env_steps: int) -> Result:
    """`bench_metaworld_step.py`'s physics bound over the batched side's sub-envs: for each
    sub-env, `mj_step` x frame_skip on its own `MjData` of its slot's Meta-World model (the
    model the batched step's row simulates), from the slot's reset state, restored every
    episode; zero controls, the mocap left where the reset put it (the per-env NumPy of that
    script's bound kept: `ctrl[:] = 0`, `mocap_pos[:] += 0 * action`)."""
    import mujoco

    from metarl.envs.metaworld_vector import MetaWorldMixedVector, MetaWorldVector

    s = rl_settings(recipe)
    dist, tasks = first_tasks(recipe)
    env = make_task_vector_env(dist, tasks, s.n_envs)
    groups = [g for g, _, _ in env._groups] if isinstance(env, MetaWorldMixedVector) else [env]
    rows: list[tuple[Any, Any, np.ndarray, int]] = []  # model, data, reset state, frame skip
    vectors: list[MetaWorldVector] = []
    for group in groups:
        if not isinstance(group, MetaWorldVector):
            raise SystemExit(f"--sides physics: {recipe.source} has a skill without a batched step")
        vectors.append(group)
        spec = group._state_spec()
        for slot in range(group.n_tasks):
            model = group._slot_envs[slot].model
            for _ in range(group.envs_per_task):
                rows.append((model, mujoco.MjData(model), group._snapshots[slot], group.frame_skip))
    steps = max(1, env_steps // len(rows))
    episode = vectors[0].max_episode_steps
    actions = np.random.default_rng(0).uniform(-1, 1, (episode, len(rows), 4))

    def run() -> Result:
        for t in range(steps):
            if t % episode == 0:
                for model, data, state, _ in rows:
                    mujoco.mj_setState(model, data, state, spec)
            for (model, data, _, skip), act in zip(rows, actions[t % episode], strict=True):
                data.ctrl[:] = 0.0
                data.mocap_pos[:] += 0.0 * act[0]
                mujoco.mj_step(model, data, nstep=skip)
        return {"env_steps": float(steps * len(rows)), "env": 0.0, "policy": 0.0, "update": 0.0}

    result = measure(run)
    result["env"] = result["seconds"]
    env.close()
    return result


def with_learner(recipe: Recipe, train: dict[str, Any], learner: dict[str, Any]) -> Recipe:
    data = recipe.to_dict()
    data["train"].update(train)
    data["learner"].update(learner)
    return recipe_from_dict(data, recipe.source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--task", default="navigation2d", help="an RL recipe of the catalog or a .toml path"
    )
    parser.add_argument("--iterations", type=int, default=3, help="meta-iterations (batched)")
    parser.add_argument("--meta-batch", type=int, default=20)
    parser.add_argument("--n-envs", type=int, default=20, help="envs per task")
    parser.add_argument("--n-steps", type=int, default=100, help="steps per env and rollout")
    parser.add_argument("--inner-steps", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--algorithm", choices=["reptile", "fomaml"], default="reptile")
    parser.add_argument("--sb3-steps", type=int, default=20_000, help="env steps of PPO.learn")
    parser.add_argument("--sb3-iterations", type=int, default=1, help="meta-iterations (sb3)")
    parser.add_argument("--sides", default="sb3-learn,batched,bound", help=",".join(SIDES))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads, and so the physics pool's (the cores a run takes, as --threads)",
    )
    parser.add_argument(
        "--as-recipe",
        action="store_true",
        help="the recipe's own training settings, only --iterations changed (batched, bound)",
    )
    parser.add_argument("--markdown", action="store_true", help="Markdown tables")
    args = parser.parse_args()
    sides = [s for s in args.sides.split(",") if s]
    bad = [s for s in sides if s not in SIDES]
    if bad:
        parser.error(f"--sides {bad[0]!r}: expected a comma-separated list of {', '.join(SIDES)}")
    if args.as_recipe and not set(sides) <= RECIPE_SIDES:
        parser.error(
            f"--as-recipe runs the sides {', '.join(sorted(RECIPE_SIDES))} only, not {args.sides!r}"
        )
    torch.set_num_threads(args.threads)

    base = resolve_recipe(args.task)
    if "physics" in sides and not (args.as_recipe and base.task_name.startswith("metaworld-")):
        parser.error("--sides physics: Meta-World recipes with --as-recipe only")
    per_update = args.n_steps * args.n_envs
    batch_size = min(int(base.learner.get("batch_size", 64)), per_update)
    train: dict[str, Any] = {
        "meta_iterations": args.iterations,
        "meta_batch": args.meta_batch,
        "algorithm": Algorithm(args.algorithm).value,
        "checkpoint_every": args.iterations,
    }
    if args.inner_steps is not None:
        train["inner_steps"] = args.inner_steps
    learner = {"n_envs": args.n_envs, "n_steps": args.n_steps, "batch_size": batch_size}
    batched = with_learner(base, train, {**learner, "backend": "batched"})
    if args.as_recipe:
        own = {"meta_iterations": args.iterations, "checkpoint_every": args.iterations}
        batched = with_learner(base, own, {"backend": "batched"})
    serial = with_learner(
        base,
        {**train, "meta_iterations": args.sb3_iterations, "checkpoint_every": 1},
        {**learner, "backend": "sb3"},
    )
    env_steps = meta_env_steps(batched)
    rows: dict[str, list[Result]] = {s: [] for s in sides}
    with tempfile.TemporaryDirectory() as tmp, Progress(transient=True) as progress:
        job = progress.add_task("rounds x sides", total=args.rounds * len(sides))
        for r in range(args.rounds):
            for side in sides:
                if side == "sb3-learn":
                    rows[side].append(run_sb3_learn(batched, args.sb3_steps))
                elif side == "batched":
                    rows[side].append(run_meta(batched, Path(tmp) / f"batched{r}"))
                elif side == "batched-own":
                    with metaworlds_own_envs():
                        rows[side].append(run_meta(batched, Path(tmp) / f"own{r}"))
                elif side == "sb3":
                    rows[side].append(run_meta(serial, Path(tmp) / f"sb3{r}"))
                elif side == "physics":
                    rows[side].append(run_physics(batched, env_steps))
                else:
                    rows[side].append(run_bound(batched, env_steps))
                progress.advance(job)
    print_table(args, batched, rows)


def print_table(args: argparse.Namespace, recipe: Recipe, rows: dict[str, list[Result]]) -> None:
    t, s = recipe.train, rl_settings(recipe)
    inner = (
        f"{t.inner_steps} {recipe.learner.get('inner', 'ppo')} updates of {s.n_steps} steps/env"
        f" (outer {t.outer_optimizer.value})"
        if args.as_recipe
        else f"{t.inner_steps} updates of {s.n_steps} steps/env, {s.n_epochs} epochs, "
        f"minibatch {s.batch_size}"
    )
    title = (
        f"{args.task}: env steps/s, median of {args.rounds} alternating rounds; "
        f"{t.algorithm.value}, meta_batch {t.meta_batch} x {s.n_envs} envs, {inner}; "
        f"{args.threads} torch thread(s)"
    )
    median = {
        k: sorted(v, key=lambda m: m["env_steps"] / m["seconds"])[len(v) // 2]
        for k, v in rows.items()
    }
    ref, bound, physics = median.get("sb3-learn"), median.get("bound"), median.get("physics")

    def share(rate: float, of: Result | None, clock: str = "seconds") -> str:
        """`rate` as a share of `of`'s rate by the same clock (wall `seconds` or `cpu`): on a
        loaded machine the CPU-time share is the one that holds still."""
        return "-" if of is None else f"{rate / (of['env_steps'] / of[clock]):.0%}"

    header = ["side", "env steps", "wall s", "steps/s", "x SB3", "steps/CPU s", "x SB3 (CPU)"]
    header += [
        "of bound",
        "of physics",
        "of physics (CPU)",
        "env s",
        "policy s",
        "update s",
        "other s",
    ]
    lines: list[list[str]] = []
    for name, m in median.items():
        rate, cpu_rate = m["env_steps"] / m["seconds"], m["env_steps"] / m["cpu"]
        versus = versus_cpu = "-"
        if ref is not None:
            versus = f"{rate / (ref['env_steps'] / ref['seconds']):.1f}"
            versus_cpu = f"{cpu_rate / (ref['env_steps'] / ref['cpu']):.1f}"
        other = m["seconds"] - m["env"] - m["policy"] - m["update"]
        lines.append(
            [
                name,
                f"{int(m['env_steps']):,}",
                f"{m['seconds']:.2f}",
                f"{rate:,.0f}",
                versus,
                f"{cpu_rate:,.0f}",
                versus_cpu,
                share(rate, bound),
                share(rate, physics),
                share(cpu_rate, physics, "cpu"),
                f"{m['env']:.2f}",
                f"{m['policy']:.2f}",
                f"{m['update']:.2f}",
                f"{other:.2f}",
            ]
        )
    console = Console(width=170)
    render(console, title, header, lines, args.markdown)
    whole = median.get("batched")
    if args.as_recipe and whole is not None:
        render(console, *time_split(args.task, whole), args.markdown)
    every = {
        k: [
            f"{m['env_steps'] / m['seconds']:,.0f} ({m['env_steps'] / m['cpu']:,.0f} CPU)"
            for m in v
        ]
        for k, v in rows.items()
    }
    console.print(f"every round, steps/s (per CPU s): {every}", highlight=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    console.print(f"peak RSS of this process (all sides): {peak:.2f} GiB", highlight=False)


def time_split(task: str, m: Result) -> tuple[str, list[str], list[list[str]]]:
    """Where the whole training's wall time went, part by part: seconds, share, and the env
    steps per second the training would run at if that part were all it did."""
    parts = [
        ("physics (`mujoco.batch`'s step)", m["physics"]),
        (
            "env step overhead (mocap, observations, rewards, infos, restarts)",
            m["env"] - m["physics"],
        ),
        ("policy (forwards, sampling, rollout bookkeeping)", m["policy"]),
        ("inner update (the adaptation step)", m["inner"]),
        ("meta-gradient (through the inner step)", m["gradient"]),
        ("outer step (the rest of the update time)", m["outer"]),
        ("tasks into the vector env (built on the first call)", m["tasks"]),
    ]
    parts.append(
        ("trainer (task draws, metrics, checkpoint)", m["seconds"] - sum(v for _, v in parts))
    )
    rows = [
        [
            name,
            f"{seconds:.2f}",
            f"{seconds / m['seconds']:.0%}",
            f"{m['env_steps'] / seconds:,.0f}" if seconds > 0 else "-",
        ]
        for name, seconds in parts
    ]
    rows.append(
        ["whole training", f"{m['seconds']:.2f}", "100%", f"{m['env_steps'] / m['seconds']:,.0f}"]
    )
    title = f"{task}: where the whole training's wall time goes ({int(m['env_steps']):,} env steps)"
    return title, ["part", "seconds", "of wall", "env steps / its seconds"], rows


def render(
    console: Console, title: str, header: list[str], rows: list[list[str]], markdown: bool
) -> None:
    """The rows as a rich table, or as a Markdown table (for the results page)."""
    if markdown:
        print(f"\n{title}\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    table = Table(title=title)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
