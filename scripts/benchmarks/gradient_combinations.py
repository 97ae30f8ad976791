"""The Reptile blog's figure: meta-gradients built from combinations of inner-loop gradients.

With k inner steps on k different minibatches of a task's support set, g_i is the minibatch
gradient of step i, taken at the parameters after i - 1 steps (g1 at phi). The blog compares
meta-updates that use g1 alone (joint training: no learning to adapt), g2 alone (first-order
MAML with one inner step), and the sums g1 + g2, g1 + g2 + g3, g1 + g2 + g3 + g4 (Reptile-like:
the sum of all k is phi - W_k for SGD) on Omniglot 5-way 1-shot.

Each combination is trained from the `omniglot-5way-1shot` recipe with `algorithm =
"gradients"`, 4 inner steps (the recipe's Adam, minibatches of 10 of the 50 support images) and
an outer Adam (lr 1e-3, the gradient sums differ in scale, which Adam absorbs), for the same
number of meta-iterations; every `--eval-every` iterations it is evaluated on the same held-out
tasks (fixed by the recipe's eval seed) after `--eval-steps` adaptation steps. The script draws
accuracy against meta-iterations, one line per combination, and writes the numbers as JSON.

    python scripts/benchmarks/gradient_combinations.py --data-dir /tmp/data --iterations 300 \
        --out runs/gradient-combinations.png
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402

from metarl.atomic import atomic_write_bytes  # noqa: E402
from metarl.config import with_overrides  # noqa: E402
from metarl.progress import ProgressCallback  # noqa: E402
from metarl.registry import resolve_recipe  # noqa: E402
from metarl.train import MetaTrainer  # noqa: E402

COMBINATIONS = ["g1", "g2", "g1+g2", "g1+g2+g3", "g1+g2+g3+g4"]
CPU = torch.device("cpu")


class Evaluator:
    """A trainer callback: the held-out accuracy every `every` iterations (and at 0)."""

    def __init__(self, every: int, steps: int, tasks: int) -> None:
        self.every, self.steps, self.tasks = every, steps, tasks
        self.points: list[tuple[int, float, float]] = []
        self.eval_seconds = 0.0

    def measure(self, trainer: MetaTrainer) -> None:
        started = time.perf_counter()
        curve = trainer.meta.curve([self.steps], self.tasks)
        self.eval_seconds += time.perf_counter() - started
        self.points.append((trainer.iteration, curve.mean[-1], curve.ci95[-1]))

    def on_start(self, trainer: MetaTrainer) -> None:
        self.measure(trainer)

    def on_iteration(self, trainer: MetaTrainer, metrics: dict[str, float]) -> None:
        if trainer.iteration % self.every == 0:
            self.measure(trainer)

    def on_end(self, trainer: MetaTrainer) -> None:
        pass


def run(combination: str, args: argparse.Namespace, console: Console) -> dict[str, Any]:
    recipe = resolve_recipe("omniglot-5way-1shot")
    recipe = with_overrides(
        recipe,
        "train",
        algorithm="gradients",
        combination=combination,
        inner_steps=4,
        outer_optimizer="adam",
        meta_step=1e-3,
        meta_step_final=1e-3,
        meta_iterations=args.iterations,
        checkpoint_every=10**9,
        log_every=10**9,
    )
    evaluator = Evaluator(args.eval_every, args.eval_steps, args.eval_tasks)
    with tempfile.TemporaryDirectory() as tmp:
        progress = ProgressCallback(console)
        trainer = MetaTrainer.start(recipe, Path(tmp) / "run", CPU, [evaluator, progress])
        started = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - started - evaluator.eval_seconds
    last = evaluator.points[-1]
    console.print(
        f"{combination}: accuracy {last[1]:.3f} ± {last[2]:.3f} after {last[0]} iterations, "
        f"{seconds:.0f} s training"
    )
    return {"combination": combination, "train_seconds": seconds, "points": evaluator.points}


def plot(results: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in results:
        its, acc, ci = zip(*r["points"], strict=True)
        ax.errorbar(its, acc, yerr=ci, marker="o", ms=3, capsize=2, label=r["combination"])
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(f"accuracy after {args.eval_steps} steps ({args.eval_tasks} test tasks)")
    ax.set_title("Omniglot 5-way 1-shot: meta-gradients from inner-loop gradients")
    ax.axhline(0.2, color="grey", lw=0.5, ls=":")
    ax.legend(title="meta-gradient")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-steps", type=int, default=5)
    parser.add_argument("--eval-tasks", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=None, help="else $METARL_DATA")
    parser.add_argument("--combinations", default=",".join(COMBINATIONS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("gradient-combinations.png"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.data_dir is not None:
        os.environ["METARL_DATA"] = str(args.data_dir)
    console = Console(width=120)
    results = [run(c, args, console) for c in args.combinations.split(",")]
    plot(results, args, args.out)
    json_path = args.out.with_suffix(".json")
    atomic_write_bytes(json_path, json.dumps(results, indent=1).encode())
    console.print(f"wrote {args.out} and {json_path}")


if __name__ == "__main__":
    main()
