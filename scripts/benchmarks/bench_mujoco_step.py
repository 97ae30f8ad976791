"""Ways of stepping many MuJoCo models in one process: env steps/s, same run, same actions.

For each size (tasks x envs per task sub-envs), every method steps the same pre-drawn random
actions for `--steps` control steps per sub-env (`frame_skip` = 5 physics steps each):

- gymnasium SyncVectorEnv: `gymnasium.make("metarl/HalfCheetahVel-v0")` per sub-env, each with
  its slot's task (the family env as users make it: reward, TimeLimit, autoreset).
- MjData loop: one `MjData` per sub-env, `mj_step(nstep=5)` in a Python loop, observation
  and x velocity read back (the physics a Gymnasium env runs, without its wrappers).
- mujoco.rollout, 1 control step per call: the full physics state of every sub-env carried
  from call to call, as a closed loop needs (a policy sees each observation before acting).
- mujoco.rollout, whole episode per call: open loop (all actions known up front), a bound
  a policy cannot use.
- mujoco.batch: `Batch.step(nstep=5)` over state rows, raw (no observation, no reward).
- TaskVectorEnv: `metarl.envs.vector_mujoco.HalfCheetahVelVector.step` (observation, reward,
  truncation, same-step autoreset), with fixed actions, and with one vmapped policy forward
  per step (SB3's 64x64 tanh MLP, per-task weights, `torch.func.functional_call` + `vmap`;
  its output dropped so that the motion is the same), whose share of the CPU time is shown.

`--family ant-dir` steps ants instead (`metarl/AntDir-v0`, Ant-v5's physics): SyncVectorEnv,
the raw step of a persistent batch (one MjData per sub-env, as the ant's vector env keeps) and
`AntDirVector.step` (which adds Gymnasium's `mj_rnePostConstraint` per sub-env for the contact
forces, and termination); random actions make ants fall, so every method also resets.

Methods run interleaved, `--rounds` times; the table shows each method's median rate and its
CPU seconds per 1,000 env steps (threads count). Timings on a shared machine are noisy: compare
rows of one run only.

    python scripts/benchmarks/bench_mujoco_step.py                       # 20x5 and 40x5, 400 steps
    python scripts/benchmarks/bench_mujoco_step.py --sizes 20x5 --steps 100 --rounds 1 # quick
    python scripts/benchmarks/bench_mujoco_step.py --family ant-dir --sizes 40x5 --steps 100
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import gymnasium
import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout
from mujoco.batch import Batch
from rich.console import Console
from rich.table import Table

import metarl  # noqa: F401  (registers the metarl/ envs)
from metarl.envs.vector_mujoco import AntDirVector, HalfCheetahVelVector, MujocoTaskVectorEnv
from metarl.progress import progress_bar

FAMILIES: dict[str, type[MujocoTaskVectorEnv]] = {
    "halfcheetah-vel": HalfCheetahVelVector,
    "ant-dir": AntDirVector,
}
"""--family: its vector env (whose model and task distribution the benchmark uses)."""
Runner = Callable[[np.ndarray], None]
"""Steps every sub-env through `actions [steps, num_envs, act_dim]`."""


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def parse_size(text: str) -> tuple[int, int]:
    try:
        tasks, envs = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected TASKSxENVS, e.g. 20x5") from None
    if tasks < 1 or envs < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both counts must be positive")
    return tasks, envs


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: MuJoCo's compiler warns about HalfCheetah's XML
    (`settotalmass`) from C once per model built, a hundred lines for a hundred envs."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def gym_sync(family: type[MujocoTaskVectorEnv], tasks: list[dict], per_task: int) -> Runner:
    def make(task: dict) -> Callable[[], gymnasium.Env]:
        def thunk() -> gymnasium.Env:
            env = gymnasium.make(family.family.family_name)
            env.get_wrapper_attr("set_task")(task)
            return env

        return thunk

    envs = gymnasium.vector.SyncVectorEnv(
        [make(task) for task in tasks for _ in range(per_task)],
        autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP,
    )
    envs.reset(seed=0)

    def run(actions: np.ndarray) -> None:
        for a in actions:
            envs.step(a)

    return run


def mjdata_loop(model: mujoco.MjModel, n: int) -> Runner:
    datas = [mujoco.MjData(model) for _ in range(n)]
    obs = np.empty((n, model.nq - 1 + model.nv))
    nq = model.nq

    def run(actions: np.ndarray) -> None:
        for a in actions:
            for i, d in enumerate(datas):
                x = d.qpos[0]
                d.ctrl[:] = a[i]
                mujoco.mj_step(model, d, nstep=5)
                _ = (d.qpos[0] - x) / 0.05
                obs[i, : nq - 1] = d.qpos[1:]
                obs[i, nq - 1 :] = d.qvel

    return run


def rollout_runner(model: mujoco.MjModel, n: int, threads: int, per_call: int | None) -> Runner:
    """`per_call` control steps per `rollout` call (None: all of them, open loop)."""
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS.value
    nstate = mujoco.mj_stateSize(model, spec)
    data = mujoco.MjData(model)
    start = np.empty(nstate)
    mujoco.mj_getState(model, data, start, spec)
    datas = [mujoco.MjData(model) for _ in range(threads)]
    pool = mj_rollout.Rollout(nthread=threads if threads > 1 else 0)
    models = [model] * n
    warm = np.zeros((n, model.nv))

    def run(actions: np.ndarray) -> None:
        steps = len(actions) if per_call is None else per_call
        state = np.ascontiguousarray(np.tile(start, (n, 1)))
        out = np.empty((n, 5 * steps, nstate))
        sensors = np.empty((n, 5 * steps, 0))
        for k in range(0, len(actions), steps):
            # [steps, n, nu] -> [n, 5 * steps, nu]: each action held for frame_skip substeps
            control = np.repeat(actions[k : k + steps].transpose(1, 0, 2), 5, axis=1)
            pool.rollout(
                models, datas, state, np.ascontiguousarray(control, np.float64), skip_checks=True,
                nstep=5 * steps, initial_warmstart=warm, state=out, sensordata=sensors,
                control_spec=mujoco.mjtState.mjSTATE_CTRL.value, chunk_size=None,
            )  # fmt: skip
            state = np.ascontiguousarray(out[:, -1])

    return run


def batch_runner(model: mujoco.MjModel, n: int, threads: int, persistent: bool) -> Runner:
    batch = Batch(model, n, nthread=threads, persistent=persistent)
    ctrl = batch.bind("ctrl")
    if persistent:
        batch.bind("xpos")  # the ant's vector env copies the torso position out of every step

    def run(actions: np.ndarray) -> None:
        for a in actions:
            ctrl[:] = a
            batch.step(nstep=5)

    return run


class Policy:
    """SB3's MlpPolicy actor (64x64 tanh) with per-task weights, one vmapped forward."""

    def __init__(self, n_tasks: int, obs_dim: int, act_dim: int) -> None:
        net = torch.nn.Sequential(
            torch.nn.Linear(obs_dim, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, 64), torch.nn.Tanh(),
            torch.nn.Linear(64, act_dim),
        )  # fmt: skip
        self.params = {
            k: v.detach().unsqueeze(0).repeat(n_tasks, *[1] * v.dim())
            for k, v in net.named_parameters()
        }
        self.forward = torch.func.vmap(
            lambda p, x: torch.func.functional_call(net, p, (x,)), in_dims=(0, 0)
        )
        self.n_tasks = n_tasks

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(obs).view(self.n_tasks, -1, obs.shape[-1])
        return self.forward(self.params, x).reshape(obs.shape[0], -1).clamp(-1, 1).numpy()


def vector_runner(
    family: type[MujocoTaskVectorEnv],
    tasks: list[dict],
    per_task: int,
    threads: int,
    policy: bool,
) -> tuple[Runner, list[float]]:
    """The TaskVectorEnv; with `policy`, the vmapped MLP also runs on every observation and
    its CPU seconds are collected. Its actions are dropped and the given ones stepped, so both
    rows simulate the same motion (the physics' cost depends on it: contacts, solver
    iterations) and differ by the policy's cost alone."""
    env = family(len(tasks), per_task, threads=threads)
    env.set_tasks(tasks)
    obs, _ = env.reset(seed=0)
    net = Policy(len(tasks), obs.shape[1], env.model.nu) if policy else None
    policy_s: list[float] = []

    def run(actions: np.ndarray) -> None:
        nonlocal obs
        spent = 0.0
        for a in actions:
            if net is not None:
                t = time.thread_time()  # CPU time: robust to other processes
                net(obs)
                spent += time.thread_time() - t
            obs, *_ = env.step(a)
        policy_s.append(spent)

    return run, policy_s


def build_runners(
    family: type[MujocoTaskVectorEnv],
    model: mujoco.MjModel,
    tasks: list[dict],
    per_task: int,
    threads: list[int],
) -> tuple[dict[str, Runner], dict[str, list[float]]]:
    """Every method at one size; and, for the rows with a policy, where its seconds go."""
    n = len(tasks) * per_task
    vector = family.__name__
    runners: dict[str, Runner] = {"gymnasium SyncVectorEnv": gym_sync(family, tasks, per_task)}
    if family.persistent:  # the ant: its vector env against the raw step it adds to
        for t in threads:
            runners[f"mujoco.batch raw step, {t} thr"] = batch_runner(model, n, t, True)
            runners[f"{vector}, {t} thr"], _ = vector_runner(family, tasks, per_task, t, False)
        return runners, {}
    runners["MjData loop, mj_step"] = mjdata_loop(model, n)
    for t in threads:
        runners[f"mujoco.rollout, 1 step/call, {t} thr"] = rollout_runner(model, n, t, 1)
    for t in threads:
        runners[f"mujoco.rollout, open loop, {t} thr"] = rollout_runner(model, n, t, None)
    for t in threads:
        runners[f"mujoco.batch raw step, {t} thr"] = batch_runner(model, n, t, False)
    policy_seconds: dict[str, list[float]] = {}
    for t in threads:
        runners[f"{vector}, {t} thr"], _ = vector_runner(family, tasks, per_task, t, False)
        name = f"{vector} + policy, {t} thr"
        runners[name], policy_seconds[name] = vector_runner(family, tasks, per_task, t, True)
    return runners, policy_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(20, 5), (40, 5)])
    parser.add_argument("--steps", type=positive, default=400, help="control steps per sub-env")
    parser.add_argument("--rounds", type=positive, default=3, help="interleaved repetitions")
    parser.add_argument("--threads", type=positive, nargs="+", default=[1, 2])
    parser.add_argument("--family", choices=sorted(FAMILIES), default="halfcheetah-vel")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    stderr = Console(stderr=True)
    family = FAMILIES[args.family]
    with quiet_stderr():
        probe = family(1, 1, threads=1)  # the family's model and task distribution
    model = probe.model
    rows: list[list[str]] = []

    for n_tasks, per_task in args.sizes:
        n = n_tasks * per_task
        rng = np.random.default_rng(0)
        tasks = probe.sample_tasks(n_tasks, rng)
        actions = rng.uniform(-1.0, 1.0, (args.steps, n, model.nu)).astype(np.float32)
        with quiet_stderr():
            runners, policy_seconds = build_runners(family, model, tasks, per_task, args.threads)
        for run in runners.values():  # warm-up: first calls, vmap's tracing, caches
            run(actions[:2])
        for spent in policy_seconds.values():
            spent.clear()
        wall: dict[str, list[float]] = {k: [] for k in runners}
        cpu: dict[str, list[float]] = {k: [] for k in runners}
        with progress_bar(f"{n_tasks}x{per_task}", stderr, unit="env steps") as bar:
            job = bar.add_task("", total=args.rounds * len(runners) * args.steps * n)
            for _ in range(args.rounds):
                for name, run in runners.items():
                    w, c = time.perf_counter(), time.process_time()
                    run(actions)
                    wall[name].append(time.perf_counter() - w)
                    cpu[name].append(time.process_time() - c)
                    bar.advance(job, args.steps * n)
        size = f"{n_tasks}x{per_task} ({n})"
        rate = {k: args.steps * n / statistics.median(v) for k, v in wall.items()}
        cpu_k = {k: statistics.median(v) / (args.steps * n) * 1000 for k, v in cpu.items()}
        sync = "gymnasium SyncVectorEnv"
        for name in runners:
            speedup = f"{rate[name] / rate[sync]:.1f}x / {cpu_k[sync] / cpu_k[name]:.1f}x"
            note = ""
            raw = f"mujoco.batch raw step, {name.split(', ')[-1]}"
            if name.startswith(family.__name__ + ",") and raw in rate:
                note = f"{rate[name] / rate[raw]:.0%} of the raw step"
            if name in policy_seconds:
                policy_cpu = statistics.median(policy_seconds[name])
                note = f"policy {policy_cpu / statistics.median(cpu[name]):.0%} of CPU"
            rows.append([size, name, f"{rate[name]:,.0f}", f"{cpu_k[name]:.3f}", speedup, note])

    probe.close()
    headers = ("size", "method", "env steps/s", "CPU s / 1k steps", "vs Sync (wall / CPU)", "note")
    if args.markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        table = Table(
            title=f"{family.family.family_name} stepping, {args.steps} steps/env, "
            f"median of {args.rounds}"
        )
        for h in headers:
            table.add_column(h, justify="left" if h in ("size", "method", "note") else "right")
        for row in rows:
            table.add_row(*row)
        Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
