"""Evaluate a meta-RL run against its baselines on the same held-out tasks, with paired gains.

    python scripts/benchmarks/rl_inits.py RUN [--joint-run JOINT] [--steps 0,1,2,3] [--tasks 40]

Adapts the run's meta-trained init, the recipe's random init and (with `--joint-run`) a joint
baseline's weights to the recipe's held-out tasks (eval.seed, eval.split: the same tasks and
seeds for every init), and prints a markdown table: mean return ± 95% CI after each number of
updates, and the paired difference (meta minus each baseline, per task) with its 95% CI. Writes
`inits.json` (per-task values) and `inits.png` in the run directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from metarl.curves import Curve, mean_ci95
from metarl.evaluate import compare_runs
from metarl.plots import plot_curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--joint-run", type=Path, default=None)
    parser.add_argument("--steps", default=None, help="e.g. 0,1,2,3 (default: the recipe's)")
    parser.add_argument("--tasks", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = [int(s) for s in args.steps.split(",")] if args.steps else None
    # the run and its baselines on the same held-out tasks and seeds
    comparison = compare_runs(
        [args.run],
        torch.device("cpu"),
        tasks=args.tasks,
        steps=steps,
        joint_run=args.joint_run,
        random_baseline=True,
    )
    curves: dict[str, Curve] = {"meta": comparison.runs[0].curve}
    curves.update({b.init: b.curve for b in comparison.baselines})
    first = curves["meta"]
    header = "| init | " + " | ".join(f"k={k}" for k in first.steps) + " |"
    print(header)
    print("|---" * (len(first.steps) + 1) + "|")
    for init, c in curves.items():
        cells = [f"{m:.1f} ± {ci:.1f}" for m, ci in zip(c.mean, c.ci95, strict=True)]
        print(f"| {init} | " + " | ".join(cells) + " |")
    for init, c in curves.items():
        if init == "meta":
            continue
        diffs = first.per_task - c.per_task
        cells = []
        for row in diffs:
            m, ci = mean_ci95(row)
            cells.append(f"{m:+.1f} ± {ci:.1f}")
        print(f"| meta − {init} (paired) | " + " | ".join(cells) + " |")
    out = {k: {"steps": c.steps, "per_task": c.per_task.tolist()} for k, c in curves.items()}
    (args.run / "inits.json").write_text(json.dumps(out))
    plot_curves(curves, args.run / "inits.png", title=f"{args.run.name}: return after k updates")
    print(f"wrote {args.run / 'inits.json'}, {args.run / 'inits.png'}")


if __name__ == "__main__":
    main()
