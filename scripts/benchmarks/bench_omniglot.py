"""Omniglot 5-way 1-shot: metarl's meta-iterations/s against a straightforward PyTorch Reptile.

The reference is what most users write first: for every task of the meta-batch, one
`copy.deepcopy` of the model and a fresh Adam (lr 1e-3, beta1 = 0), 5 inner iterations on
minibatches of 10 of the task's 50 training images (10 shots x 5 classes), tasks one after
another, then phi <- phi + eps * mean(W - phi). Same network, same data, same recipe, same
threads, side by side in one run. The ceiling is the same network trained with one shared
set of weights on one batch of 250 images (the image-steps of one meta-iteration): a
meta-learner cannot beat that, since per-task weights only add work.

    python scripts/benchmarks/bench_omniglot.py                # 3 alternating rounds of 60 its each
    python scripts/benchmarks/bench_omniglot.py --iterations 300 --threads 2
    python scripts/benchmarks/bench_omniglot.py --rounds 1 --profile --eval-chunks # where time goes

`--equal-time` then trains both to accuracy (about 30 minutes): the reference for 3,000
meta-iterations (the meta-step annealed 1 -> 0 over them), metarl for as many as it runs in
the same wall time at the rates just measured (annealed over those), both evaluated at the
same fractions of training on the same held-out test tasks (transductive 5-way 1-shot
accuracy after the recipe's 50 evaluation steps; the clock stops while evaluating). Prints
the accuracy-against-wall-time table and the peak RSS of the process.

    python scripts/benchmarks/bench_omniglot.py --equal-time --plot omniglot-time.png   # the README

Needs the Omniglot data (`metarl data import omniglot PATH`, or METARL_DATA pointing at it).
"""

from __future__ import annotations

import argparse
import copy
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import cast

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from metarl.config import Recipe, with_overrides
from metarl.curves import mean_ci95
from metarl.learners import build_meta_learner
from metarl.learners.supervised import SupervisedMetaLearner
from metarl.protocol import Split, task_rng
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

CPU = torch.device("cpu")
err = Console(stderr=True)


def timed(
    iterations: int,
    step: Callable[[int], object],
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable[[int, float], None] | None = None,
) -> float:
    """Run `step(i)` for every iteration; after each of `checkpoints` iterations call
    `on_checkpoint(done, seconds so far)` with the clock stopped. Returns the seconds spent
    in `step` (evaluations at checkpoints do not count as training time)."""
    seconds, start = 0.0, time.perf_counter()
    for iteration in range(iterations):
        step(iteration)
        if on_checkpoint is not None and iteration + 1 in checkpoints:
            seconds += time.perf_counter() - start
            on_checkpoint(iteration + 1, seconds)
            start = time.perf_counter()
    return seconds + time.perf_counter() - start


def reference_train(
    meta: SupervisedMetaLearner,
    recipe: Recipe,
    iterations: int,
    seed: int,
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable[[int, float], None] | None = None,
) -> float:
    """Train `meta.model` with the deepcopy-per-task Reptile on the recipe's episodes (the
    meta-step annealed 1 -> 0 over `iterations`); returns the training seconds (`timed`)."""
    t, s = recipe.train, meta.settings
    model = meta.model
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(iteration: int) -> None:
        rng = task_rng(seed, Split.TRAIN, iteration)
        tasks = meta.dist.sample(t.meta_batch, rng, Split.TRAIN)
        batch = meta.dist.episodes(tasks, rng, support=s.support_shots, query=0)
        phi = {k: v.detach().clone() for k, v in model.state_dict().items()}
        new = {k: torch.zeros_like(v) for k, v in phi.items()}
        for i in range(t.meta_batch):
            task_model = copy.deepcopy(model)
            # foreach: the multi-tensor Adam (torch's default on GPU), as metarl's inner Adam
            opt = torch.optim.Adam(
                task_model.parameters(), lr=t.inner_lr, betas=(0.0, 0.999), foreach=True
            )
            x, y = batch.support_x[i], batch.support_y[i]
            for inner in range(meta.inner_steps):
                idx = (torch.arange(s.inner_batch) + inner * s.inner_batch) % len(x)
                opt.zero_grad()
                loss_fn(task_model(x[idx]), y[idx]).backward()
                opt.step()
            for k, v in task_model.state_dict().items():
                new[k] += v.detach() / t.meta_batch
        eps = 1.0 - iteration / iterations
        model.load_state_dict({k: phi[k] + eps * (new[k] - phi[k]) for k in phi})

    return timed(iterations, step, checkpoints, on_checkpoint)


def reference_rate(
    meta: SupervisedMetaLearner, recipe: Recipe, iterations: int, seed: int
) -> float:
    """Meta-iterations/s of the deepcopy-per-task Reptile on the recipe's episodes, after one
    warm-up iteration, as `metarl_rate` measures metarl."""
    first: list[float] = []
    total = reference_train(
        meta, recipe, iterations, seed, [1], lambda _i, seconds: first.append(seconds)
    )
    return (iterations - 1) / max(total - first[0], 1e-9)


def metarl_train(
    recipe: Recipe,
    iterations: int,
    checkpoints: Sequence[int] = (),
    on_checkpoint: Callable[[MetaTrainer, int, float], None] | None = None,
) -> float:
    """Train `recipe` for `iterations` with the trainer's own loop (no checkpoint files);
    returns the training seconds (`timed`)."""
    recipe = with_overrides(
        recipe, "train", meta_iterations=iterations, checkpoint_every=10**9, log_every=10**9
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MetaTrainer.start(recipe, Path(tmp) / "run", CPU)
        report = None if on_checkpoint is None else partial(on_checkpoint, trainer)
        return timed(iterations, lambda _: trainer.step(), checkpoints, report)


def metarl_rate(recipe: Recipe, iterations: int) -> float:
    """Meta-iterations/s of the trainer's own loop on the recipe, after one warm-up
    iteration (first-call allocations)."""
    first: list[float] = []
    total = metarl_train(recipe, iterations, [1], lambda _t, _i, seconds: first.append(seconds))
    return (iterations - 1) / max(total - first[0], 1e-9)


def ceiling_rate(meta: SupervisedMetaLearner, meta_batch: int, repeats: int) -> tuple[float, float]:
    """Meta-iterations/s of the shared-weight equivalent: inner_steps x meta_batch x
    inner_batch images per meta-iteration trained as plain Adam steps on one network. Also
    returns its GFLOP/s (forward + backward counted as 3x the forward's multiply-adds x 2)."""
    model = copy.deepcopy(meta.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.999), foreach=True)
    images = meta_batch * meta.settings.inner_batch
    x = torch.rand(images, 1, 28, 28)
    y = torch.randint(0, 5, (images,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(repeats * meta.inner_steps):
        step()
    seconds = (time.perf_counter() - start) / repeats
    macs = 0
    size = 28
    for layer in model.modules():
        if isinstance(layer, torch.nn.Conv2d):
            size = (size + 1) // 2
            macs += layer.in_channels * layer.out_channels * 9 * size * size
        elif isinstance(layer, torch.nn.Linear):
            macs += layer.in_features * layer.out_features
    flops = 3 * 2 * macs * images * meta.inner_steps
    return 1 / seconds, flops / seconds / 1e9


def eval_seconds(meta: SupervisedMetaLearner, tasks: int, steps: int, chunk: int | None) -> float:
    """Seconds to evaluate `tasks` held-out tasks with `steps` adaptation steps, adapting
    `chunk` tasks at a time (None: the evaluator's own choice, `CHUNK_INPUTS`)."""
    start = time.perf_counter()
    meta.curve([steps], tasks, chunk=chunk, transductive=True)
    return time.perf_counter() - start


def profile_shares(recipe: Recipe, iterations: int) -> tuple[float, str]:
    """torch.profiler over `iterations` of the trainer's loop: the share of CPU time in
    convolution and BatchNorm ops (forward and backward), and the top ops as a table."""
    from torch.profiler import ProfilerActivity, profile

    def run(trainer: MetaTrainer, _done: int, _seconds: float) -> None:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(iterations):
                trainer.step()
        events.extend(prof.key_averages())

    events: list = []
    metarl_train(recipe, 3, [3], run)  # after 3 warm-up iterations
    total = sum(e.self_cpu_time_total for e in events)
    conv_bn = sum(e.self_cpu_time_total for e in events if "conv" in e.key or "batch_norm" in e.key)
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
    lines = [f"  {e.self_cpu_time_total / total:6.1%}  {e.key}" for e in top]
    return conv_bn / total, "\n".join(lines)


@dataclass
class Point:
    """Accuracy at one checkpoint of an equal-time run."""

    iterations: int
    seconds: float
    accuracy: float
    ci95: float


def accuracy(meta: SupervisedMetaLearner, tasks: int) -> np.ndarray:
    """Per-task transductive accuracy after the recipe's last evaluation step, from
    `meta.model`, on the recipe's fixed held-out tasks (the same tasks for every model)."""
    steps = meta.evaluation.steps
    return meta.curve([steps[-1]], tasks, transductive=True).per_task[-1]


def equal_time(
    recipe: Recipe,
    ref_rate: float,
    ours_rate: float,
    ref_iterations: int,
    tasks: int,
    final_tasks: int,
    parts: int,
) -> tuple[dict[str, list[Point]], np.ndarray]:
    """Both loops trained to accuracy in the same wall time (see the module docstring).
    Returns each side's checkpoints and, on `final_tasks` tasks, the per-task accuracy of
    metarl's final model minus the reference's (the same tasks: a paired difference)."""
    seed = int(np.int64(recipe.train.seed))
    ours_iterations = round(ref_iterations * ours_rate / ref_rate)
    curves: dict[str, list[Point]] = {"reference": [], "metarl": []}
    finals: dict[str, np.ndarray] = {}

    def marks(n: int) -> list[int]:
        return [round(n * (i + 1) / parts) for i in range(parts)]

    def record(name: str, meta: SupervisedMetaLearner, done: int, total: int, s: float) -> None:
        values = accuracy(meta, final_tasks if done == total else tasks)
        if done == total:
            finals[name] = values
        curves[name].append(Point(done, s, *mean_ci95(values)))
        err.print(f"{name} {done} its {s:.0f} s: {curves[name][-1]}")

    ref_meta = cast(SupervisedMetaLearner, build_meta_learner(recipe, CPU))
    reference_train(
        ref_meta,
        recipe,
        ref_iterations,
        seed,
        marks(ref_iterations),
        lambda done, s: record("reference", ref_meta, done, ref_iterations, s),
    )
    metarl_train(
        recipe,
        ours_iterations,
        marks(ours_iterations),
        lambda trainer, done, s: record(
            "metarl", cast(SupervisedMetaLearner, trainer.meta), done, ours_iterations, s
        ),
    )
    return curves, finals["metarl"] - finals["reference"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="omniglot-5way-1shot")
    parser.add_argument("--iterations", type=int, default=60, help="per side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--eval-chunks",
        action="store_true",
        help="also time evaluation: 250 tasks at once vs default",
    )
    parser.add_argument("--profile", action="store_true", help="also profile metarl's step")
    parser.add_argument("--equal-time", action="store_true", help="then train both to accuracy")
    parser.add_argument("--reference-iterations", type=int, default=3000)
    parser.add_argument("--eval-tasks", type=int, default=250, help="test tasks per checkpoint")
    parser.add_argument(
        "--final-eval-tasks", type=int, default=1000, help="test tasks at the last checkpoint"
    )
    parser.add_argument("--checkpoints", type=int, default=4, help="evaluations per run")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of accuracy against time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=120)

    # The reference starts every task with a fresh Adam: both sides run that protocol (the
    # paper recipes carry the moments, which the deepcopy reference cannot).
    recipe = with_overrides(resolve_recipe(args.recipe), "train", inner_carry_moments=False)
    meta = cast(SupervisedMetaLearner, build_meta_learner(recipe, CPU))
    console.print(
        f"{args.recipe}: {args.rounds} alternating rounds of {args.iterations} meta-iterations "
        f"each, {args.threads} threads (median round)"
    )
    seed = int(np.int64(recipe.train.seed))
    rounds: dict[str, list[float]] = {"ceiling": [], "gflops": [], "reference": [], "metarl": []}
    for _ in range(args.rounds):  # alternating, so a noisy neighbour hits every side alike
        ceiling_round, gflops_round = ceiling_rate(
            meta, recipe.train.meta_batch, repeats=max(args.iterations // 5, 5)
        )
        rounds["ceiling"].append(ceiling_round)
        rounds["gflops"].append(gflops_round)
        rounds["reference"].append(reference_rate(meta, recipe, args.iterations, seed))
        rounds["metarl"].append(metarl_rate(recipe, args.iterations))
        err.print({k: [round(v, 2) for v in vs] for k, vs in rounds.items()})
    ceiling, gflops, ref, ours = (
        float(np.median(rounds[k])) for k in ("ceiling", "gflops", "reference", "metarl")
    )

    table = Table(title=f"{args.recipe}, meta-iterations per second ({args.threads} threads)")
    for col in ("", "meta-it/s", "vs reference", "of ceiling"):
        table.add_column(col, justify="right")
    table.add_row(
        "reference (deepcopy + fresh Adam per task)", f"{ref:.2f}", "1.00x", f"{ref / ceiling:.0%}"
    )
    table.add_row(
        "metarl (vmapped tasks)", f"{ours:.2f}", f"{ours / ref:.2f}x", f"{ours / ceiling:.0%}"
    )
    table.add_row(
        f"ceiling: shared weights, same image-steps ({gflops:.0f} GFLOP/s)",
        f"{ceiling:.2f}",
        f"{ceiling / ref:.2f}x",
        "100%",
    )
    console.print(table)
    if args.profile:
        share, top = profile_shares(recipe, 10)
        console.print(
            f"metarl's step, 10 iterations under torch.profiler: {share:.0%} of CPU "
            f"time in convolution and BatchNorm ops; top ops by self CPU time:\n{top}"
        )
    if args.eval_chunks:
        tasks, steps = 250, 10
        times: dict[int | None, float] = {}
        for chunk in (250, None, 250, None):  # alternating; the second run of each counts
            times[chunk] = eval_seconds(meta, tasks, steps, chunk)
        console.print(
            f"evaluation of {tasks} tasks x {steps} steps (second of two runs each): "
            f"250 tasks at once {times[250]:.1f} s, the default chunks {times[None]:.1f} s "
            f"({times[250] / times[None]:.2f}x)"
        )
    if not args.equal_time:
        return

    curves, paired = equal_time(
        recipe,
        ref,
        ours,
        args.reference_iterations,
        args.eval_tasks,
        args.final_eval_tasks,
        args.checkpoints,
    )
    table = Table(
        title=f"{args.recipe}: transductive accuracy after {recipe.eval.steps[-1]} steps "
        f"against training wall time ({args.eval_tasks} test tasks, the last checkpoint "
        f"{args.final_eval_tasks}; 95% CI; {args.threads} threads)"
    )
    for col in ("", "meta-iterations", "train s", "accuracy"):
        table.add_column(col, justify="right")
    for name, points in curves.items():
        for point in points:
            table.add_row(
                name,
                f"{point.iterations:,}",
                f"{point.seconds:.0f}",
                f"{point.accuracy:.1%} ± {point.ci95:.1%}",
            )
    console.print(table)
    diff, diff_ci = mean_ci95(paired)
    console.print(
        f"at equal wall time, metarl - reference on the same {len(paired)} test tasks "
        f"(paired): {diff:+.1%} ± {diff_ci:.1%}"
    )
    if args.plot is not None:
        from metarl.plots import plot_against_time

        series = {
            name: [(p.seconds, p.accuracy, p.ci95) for p in points]
            for name, points in curves.items()
        }
        plot_against_time(
            series,
            args.plot,
            f"transductive accuracy after {recipe.eval.steps[-1]} steps",
            f"{args.recipe}: the same wall time, the same test tasks",
        )
        console.print(f"wrote {args.plot}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak RSS of this process (both trainings and evaluations): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
