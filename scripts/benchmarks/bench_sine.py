"""Sine regression: metarl's default recipe against the Reptile blog's PyTorch example.

The reference is the sequential Reptile loop published with OpenAI's Reptile blog post: one
task per outer step, Tanh MLP 1-64-64-1, one epoch of SGD (lr 0.02) over 50 grid points in
minibatches of 10, outer step 0.1 annealed linearly to 0, `copy.deepcopy` / `load_state_dict`
per task, one thread. It is re-implemented here and timed in the same run as metarl.

Both initializations are evaluated on the same 1000 held-out tasks (fixed by a seed, K = 10
support points uniform on [-5, 5], query = 100 evenly spaced points, MSE) with the same two
protocols: the reference's inner SGD lr 0.02, and metarl's recipe's inner lr (0.03), so neither
side is evaluated with a learning rate the other was not. Time to quality compares both under
the reference's protocol. Evaluation time is not training time.

    python scripts/benchmarks/bench_sine.py          # full: reference 30,000 tasks (~90 s) + metarl
    python scripts/benchmarks/bench_sine.py --quick      # smoke: reference 3,000 tasks

Prints a table: wall time, tasks/s, MSE after 1 / 10 / 32 steps, the time each needs to reach
the reference's final 10-step quality, the speed-up, and the peak RSS of `metarl train sine`.
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from metarl.config import OptimizerName, Recipe, with_overrides
from metarl.curves import Curve
from metarl.learners import build_meta_learner
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

CPU = torch.device("cpu")
STEPS = [0, 1, 10, 32]


def reference_model() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(1, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 1),
    )


def train_reference(
    iterations: int, seed: int, snapshot_every: int
) -> tuple[torch.nn.Module, list[tuple[int, float, dict[str, torch.Tensor]]]]:
    """The blog's loop, verbatim in spirit. Returns the model and (iteration, seconds, weights)
    snapshots taken outside the timed region."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    model = reference_model()
    x_all = np.linspace(-5, 5, 50)[:, None]
    inner_step, inner_epochs, ntrain, outer0 = 0.02, 1, 10, 0.1

    def to_torch(x: np.ndarray) -> torch.Tensor:
        return torch.tensor(x, dtype=torch.float32)

    def train_on_batch(x: np.ndarray, y: np.ndarray) -> None:
        xt, yt = to_torch(x), to_torch(y)
        model.zero_grad()
        loss = (model(xt) - yt).pow(2).mean()
        loss.backward()
        for param in model.parameters():
            assert param.grad is not None
            param.data -= inner_step * param.grad.data

    snapshots = []
    elapsed = 0.0
    start = time.perf_counter()
    for iteration in range(iterations):
        weights_before = copy.deepcopy(model.state_dict())
        phase = rng.uniform(low=0, high=2 * np.pi)
        ampl = rng.uniform(0.1, 5)
        y_all = np.sin(x_all + phase) * ampl
        inds = rng.permutation(len(x_all))
        for _ in range(inner_epochs):
            for begin in range(0, len(x_all), ntrain):
                mbinds = inds[begin : begin + ntrain]
                train_on_batch(x_all[mbinds], y_all[mbinds])
        weights_after = model.state_dict()
        outer = outer0 * (1 - iteration / iterations)
        model.load_state_dict(
            {
                name: weights_before[name] + (weights_after[name] - weights_before[name]) * outer
                for name in weights_before
            }
        )
        if (iteration + 1) % snapshot_every == 0 or iteration + 1 == iterations:
            elapsed += time.perf_counter() - start
            snapshots.append((iteration + 1, elapsed, copy.deepcopy(model.state_dict())))
            start = time.perf_counter()
    return model, snapshots


def reference_eval_recipe() -> Recipe:
    """The same evaluation protocol with the reference's inner optimizer: SGD, lr 0.02."""
    return with_overrides(
        resolve_recipe("sine"), "train", inner_lr=0.02, inner_optimizer=OptimizerName.SGD
    )


def curve_of(
    recipe: Recipe, weights: dict[str, torch.Tensor], n_tasks: int, steps: list[int] = STEPS
) -> Curve:
    """The evaluation protocol of `recipe`, adapting from `weights`."""
    meta = build_meta_learner(recipe, CPU)
    meta.model.load_state_dict(weights)
    return meta.curve(steps, n_tasks)


def train_metarl(
    recipe: Recipe, snapshots: int
) -> list[tuple[int, float, dict[str, torch.Tensor]]]:
    """metarl's loop on the default recipe, snapshotting weights outside the timed region."""
    total = recipe.train.meta_iterations
    marks = {round(total * (i + 1) / snapshots) for i in range(snapshots)}
    out: list[tuple[int, float, dict[str, torch.Tensor]]] = []

    class Snap:
        elapsed = 0.0
        started = 0.0

        def on_start(self, trainer: MetaTrainer) -> None:
            self.started = time.perf_counter()

        def on_iteration(self, trainer: MetaTrainer, metrics: dict[str, float]) -> None:
            if metrics["iteration"] in marks:
                self.elapsed += time.perf_counter() - self.started
                state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
                out.append((int(metrics["iteration"]), self.elapsed, state))
                self.started = time.perf_counter()

        def on_end(self, trainer: MetaTrainer) -> None:
            pass

    with tempfile.TemporaryDirectory() as tmp:
        MetaTrainer.start(recipe, Path(tmp) / "run", CPU, callbacks=[Snap()]).fit()
    return out


def time_to_reach(points: list[tuple[float, float]], target: float) -> float | None:
    """First wall time at which the 10-step MSE is at or below `target`."""
    for seconds, mse in points:
        if mse <= target:
            return seconds
    return None


def peak_rss_of_cli(iterations: int) -> float:
    """Peak RSS (MiB) of a real `metarl train sine` process."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "metarl", "train", "sine", "--out", f"{tmp}/run", "-q"]
        cmd += ["--meta-iterations", str(iterations)]
        subprocess.run(cmd, check=True, capture_output=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 reference tasks")
    parser.add_argument("--tasks", type=int, default=1000, help="held-out evaluation tasks")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console(width=150)

    ref_iters = 3000 if args.quick else 30000
    console.print(f"reference: {ref_iters} tasks, serial Reptile, 1 thread ...")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    _, ref_snaps = train_reference(ref_iters, args.seed, snapshot_every=max(ref_iters // 10, 1))
    torch.set_num_threads(threads)
    ref_recipe = reference_eval_recipe()
    ref_points = [(s, curve_of(ref_recipe, w, args.tasks).mean[2]) for _, s, w in ref_snaps]
    ref_curve = curve_of(ref_recipe, ref_snaps[-1][2], args.tasks)
    ref_time = ref_snaps[-1][1]

    recipe = resolve_recipe("sine")
    t = recipe.train
    console.print(
        f"metarl: default recipe, {t.meta_iterations} x {t.meta_batch} tasks, "
        f"{torch.get_num_threads()} threads ..."
    )
    ours = train_metarl(recipe, snapshots=10)
    our_points = []  # under the reference's protocol, like ref_points
    for _, seconds, weights in ours:
        our_points.append((seconds, curve_of(ref_recipe, weights, args.tasks, [10]).mean[0]))
    our_curve = curve_of(ref_recipe, ours[-1][2], args.tasks)
    our_own = curve_of(recipe, ours[-1][2], args.tasks)
    ref_at_ours = curve_of(recipe, ref_snaps[-1][2], args.tasks)
    our_time = ours[-1][1]

    target = ref_curve.mean[2]
    ref_reach = time_to_reach(ref_points, target)
    our_reach = time_to_reach(our_points, target)
    our_tasks = t.meta_iterations * t.meta_batch

    table = Table(title=f"sine regression, {args.tasks} held-out tasks (MSE, mean ± 95% CI)")
    for col in (
        "",
        "train s",
        "tasks/s",
        "task-steps/s",
        "MSE@1",
        "MSE@10",
        "MSE@32",
        "s to ref MSE@10",
    ):
        table.add_column(col, justify="right")

    def row(
        name: str, seconds: float, tasks: int, steps: int, curve: Curve, reach: float | None
    ) -> None:
        cells = [f"{m:.3f} ± {c:.3f}" for m, c in zip(curve.mean[1:], curve.ci95[1:], strict=True)]
        table.add_row(
            name,
            f"{seconds:.1f}",
            f"{tasks / seconds:,.0f}",
            f"{tasks * steps / seconds:,.0f}",
            *cells,
            "not reached" if reach is None else f"{reach:.1f}",
        )

    lr = f"{t.inner_lr:g}"
    row("reference (blog, serial), eval lr 0.02", ref_time, ref_iters, 5, ref_curve, ref_reach)
    row(
        "metarl sine (default), eval lr 0.02",
        our_time,
        our_tasks,
        t.inner_steps,
        our_curve,
        our_reach,
    )
    row(f"reference (blog, serial), eval lr {lr}", ref_time, ref_iters, 5, ref_at_ours, None)
    row(f"metarl sine (default), eval lr {lr}", our_time, our_tasks, t.inner_steps, our_own, None)
    console.print(table)
    speedup = (
        f"{ref_time / our_time:.1f}x"
        if our_curve.mean[2] <= target
        else "n/a (quality not matched)"
    )
    console.print(f"wall-time ratio, reference / metarl at the reference's quality: {speedup}")
    if ref_reach is not None and our_reach is not None:
        console.print(
            f"time-to-quality ratio (first snapshot at or below {target:.3f}): "
            f"{ref_reach / our_reach:.1f}x"
        )
    rss = peak_rss_of_cli(t.meta_iterations)
    console.print(f"peak RSS of `metarl train sine`: {rss:.0f} MiB (target < 1024)")
    console.print(f"snapshots (s, MSE@10): reference {fmt(ref_points)}; metarl {fmt(our_points)}")
    console.print(
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!r}, torch {torch.__version__}"
    )


def fmt(points: list[tuple[float, float]]) -> str:
    return ", ".join(f"({s:.1f}, {m:.3f})" for s, m in points)


if __name__ == "__main__":
    main()
