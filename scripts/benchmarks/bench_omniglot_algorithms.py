"""The five algorithms on Omniglot 5-way 1-shot at equal wall time.

Each algorithm trains with its shipped recipe (`omniglot-5way-1shot` for Reptile,
`omniglot-5way-1shot-maml` for MAML and, with `algorithm = "fomaml"`, first-order MAML,
`omniglot-5way-1shot-imaml`, `omniglot-5way-1shot-metasgd`; iMAML once more with inner steps
of 0.03) for the same number of seconds: its meta-iterations per second are measured first (a
probe of `--probe` seconds after a warm-up iteration),
the run is given as many meta-iterations as fit the budget at that rate (so an annealed
meta-step anneals over them), trained, and evaluated on the same held-out test tasks (the
same `eval.seed`, so the tasks are the same and the differences are paired). Accuracy is
reported after 0, 1 and K steps of each recipe's own evaluation inner loop (K: the last of its
`eval.steps`), all transductive (the query batch through BatchNorm, as MAML's evaluation); for
Reptile, whose recipe evaluates each query example with the support set alone, that protocol
too.

    python scripts/benchmarks/bench_omniglot_algorithms.py --seconds 240 --threads 2
    python scripts/benchmarks/bench_omniglot_algorithms.py --seconds 10 --eval-tasks 20  # smoke

Needs the Omniglot data (`metarl data import omniglot PATH`, or METARL_DATA pointing at it).
The machine should be quiet: the budget is wall time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from metarl.config import Recipe, with_overrides
from metarl.curves import Curve, mean_ci95
from metarl.learners import build_meta_learner
from metarl.learners.supervised import SupervisedMetaLearner
from metarl.plots import plot_curves
from metarl.progress import ProgressCallback
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

CPU = torch.device("cpu")
ALGORITHMS: dict[str, tuple[str, dict[str, dict[str, object]]]] = {
    "Reptile": ("omniglot-5way-1shot", {}),
    "FOMAML": ("omniglot-5way-1shot-maml", {"train": {"algorithm": "fomaml"}}),
    "MAML": ("omniglot-5way-1shot-maml", {}),
    "iMAML": ("omniglot-5way-1shot-imaml", {}),
    # the shipped iMAML recipe's 16 steps of 0.1 leave the proximal problem far from solved
    # (relative residual ~0.5, CG meets negative curvature on a third of the tasks); with steps
    # of 0.03 (trained and evaluated) the residual is ~0.2: the row says whether that matters
    "iMAML (inner lr 0.03)": (
        "omniglot-5way-1shot-imaml",
        {"train": {"inner_lr": 0.03}, "eval": {"inner_lr": 0.03}},
    ),
    "Meta-SGD": ("omniglot-5way-1shot-metasgd", {}),
}
"""Each row: the recipe and its overrides, by section."""


@dataclass
class Result:
    """One algorithm's training at the budget and its evaluation."""

    name: str
    recipe: str
    iterations: int
    train_s: float
    curve: Curve
    """Transductive accuracy after 0, 1 and K steps."""
    own: Curve | None
    """Accuracy after K steps with the recipe's own, non-transductive protocol (else None)."""

    def to_dict(self) -> dict[str, object]:
        own = None if self.own is None else {"mean": self.own.mean[0], "ci95": self.own.ci95[0]}
        return {
            "algorithm": self.name,
            "recipe": self.recipe,
            "iterations": self.iterations,
            "train_s": self.train_s,
            "steps": self.curve.steps,
            "accuracy": self.curve.mean,
            "ci95": self.curve.ci95,
            "own_protocol_at_k": own,
        }


def recipe_of(name: str) -> Recipe:
    """The recipe of row `name` of `ALGORITHMS`, its overrides applied."""
    recipe_name, overrides = ALGORITHMS[name]
    recipe = resolve_recipe(recipe_name)
    for section, values in overrides.items():
        recipe = with_overrides(recipe, section, **values)
    return recipe


def budgeted(recipe: Recipe, iterations: int) -> Recipe:
    """`recipe` trained for `iterations`, no checkpoints or TensorBoard along the way."""
    return with_overrides(
        recipe,
        "train",
        meta_iterations=iterations,
        checkpoint_every=10**9,
        checkpoint_seconds=1e12,
        log_every=1,
        tensorboard=False,
    )


def iterations_per_second(recipe: Recipe, probe_seconds: float) -> float:
    """Meta-iterations/s of `recipe` on this machine over at least `probe_seconds` (the first,
    warm-up iteration excluded: data loading, vmap's first trace), from the median iteration
    time: on a shared machine a burst of another job during the probe skews a total (the
    first table's FOMAML probe under-estimated its rate by a third), a median much less."""
    probe = 2
    while True:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = MetaTrainer.start(budgeted(recipe, probe + 1), Path(tmp) / "probe", CPU)
            trainer.fit(progress=False)
            rows = trainer.history
        elapsed = np.array([row["elapsed_s"] for row in rows])
        if elapsed[-1] - elapsed[0] >= probe_seconds:
            return 1.0 / float(np.median(np.diff(elapsed)))
        seconds = elapsed[-1] - elapsed[0]
        probe = max(probe + 1, int(probe * probe_seconds / max(seconds, 1e-3) * 1.2))


def train(
    recipe: Recipe, iterations: int, run: Path, console: Console
) -> tuple[float, SupervisedMetaLearner]:
    """Train a fresh run of `recipe` in `run` for `iterations`; the wall seconds and learner."""
    trainer = MetaTrainer.start(
        budgeted(recipe, iterations), run, CPU, callbacks=[ProgressCallback(console)]
    )
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    assert isinstance(trainer.meta, SupervisedMetaLearner)
    return seconds, trainer.meta


def paired(a: np.ndarray, b: np.ndarray) -> str:
    mean, ci = mean_ci95(a - b)
    return f"{mean * 100:+.1f} ± {ci * 100:.1f}"


def percent(curve: Curve, i: int) -> str:
    return f"{curve.mean[i] * 100:.1f} ± {curve.ci95[i] * 100:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=240.0, help="training budget each")
    parser.add_argument("--probe", type=float, default=10.0, help="seconds of the rate probe")
    parser.add_argument("--eval-tasks", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default=",".join(ALGORITHMS), help="comma-separated subset")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of accuracy against steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=150, stderr=True)
    wanted = [a.strip() for a in args.only.split(",")]
    unknown = [a for a in wanted if a not in ALGORITHMS]
    if unknown:
        parser.error(f"--only {','.join(unknown)}: choose from {', '.join(ALGORITHMS)}")

    results: list[Result] = []
    for name in wanted:
        recipe_name = ALGORITHMS[name][0]
        recipe = recipe_of(name)
        rate = iterations_per_second(recipe, args.probe)
        iterations = max(1, round(rate * args.seconds))
        console.print(
            f"{name}: {rate:.2f} it/s -> {iterations} meta-iterations in {args.seconds} s"
        )
        with tempfile.TemporaryDirectory() as tmp:
            seconds, meta = train(recipe, iterations, Path(tmp) / "run", console)
        k = max(recipe.eval.steps)
        curve = meta.curve([0, 1, k], args.eval_tasks, transductive=True)
        own = None
        if not meta.held_out.transductive:
            own = meta.curve([k], args.eval_tasks, transductive=False)
        results.append(Result(name, recipe_name, iterations, seconds, curve, own))
        console.print(
            f"{name}: {seconds:.0f} s, accuracy@0/1/{k} "
            + ", ".join(percent(curve, i) for i in range(3))
        )

    # the untrained network, adapted with the first algorithm's evaluation inner loop
    untrained = build_meta_learner(recipe_of(wanted[0]), CPU)
    assert isinstance(untrained, SupervisedMetaLearner)
    random_curve = untrained.curve(results[0].curve.steps, args.eval_tasks, transductive=True)

    first = results[0]
    table = Table(
        title=(
            f"Omniglot 5-way 1-shot, {args.seconds:.0f} s of training each, "
            f"{args.eval_tasks} test tasks, {args.threads} thread(s); accuracy %, transductive"
        )
    )
    columns = ["algorithm", "meta-its", "train s", "@0", "@1", "@K (K)", f"@K - {first.name}"]
    for col in [*columns, "own protocol @K"]:
        table.add_column(col, justify="left" if col == "algorithm" else "right")
    for r in results:
        table.add_row(
            r.name,
            f"{r.iterations:,}",
            f"{r.train_s:.0f}",
            percent(r.curve, 0),
            percent(r.curve, 1),
            f"{percent(r.curve, 2)} ({r.curve.steps[2]})",
            paired(r.curve.per_task[2], first.curve.per_task[2]) if r is not first else "",
            percent(r.own, 0) if r.own is not None else "same",
        )
    table.add_row(
        f"random init ({first.name}'s inner loop)",
        "0",
        "0",
        percent(random_curve, 0),
        percent(random_curve, 1),
        f"{percent(random_curve, 2)} ({random_curve.steps[2]})",
        paired(random_curve.per_task[2], first.curve.per_task[2]),
        "",
    )
    Console(width=160).print(table)
    if args.plot is not None:
        series = [(f"{r.name} ({r.iterations:,} its, {r.train_s:.0f} s)", r.curve) for r in results]
        plot_curves(
            [*series, ("random init", random_curve)],
            args.plot,
            title=f"Omniglot 5-way 1-shot, {args.seconds:.0f} s of training each",
            symlog_steps=True,
        )
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2))


if __name__ == "__main__":
    main()
