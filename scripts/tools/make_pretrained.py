"""Make the pretrained Omniglot model that ships in `metarl/weights/`.

Meta-trains a catalog recipe with metarl's own trainer (`python -m metarl train`, resumed with
`--resume` if the run directory holds an unfinished run, skipped if it holds a finished one),
writes its weights as float16 (`metarl.zoo.write_weights`), then loads them back through the
same checked path as `metarl.pretrained(NAME)` and evaluates them on the recipe's test split in
both evaluation modes, with the float32 weights evaluated on the same tasks beside them.
The provenance (`NAME.json`) records the recipe and its overrides, the meta-iterations, seed,
training time and device, the sha256 of `NAME.pt`, both accuracies with 95% CIs, the date and
the torch version.

    python scripts/tools/make_pretrained.py --meta-iterations 5000 --threads 1   # the Reptile model
    python scripts/tools/make_pretrained.py --recipe omniglot-5way-1shot-metasgd \
        --name omniglot-5way-1shot-metasgd --run RUN --meta-iterations N --threads 1 \
        --train-command "metarl train ... (resumed; stopped with SIGTERM at N)"   # stopped early
    python scripts/tools/make_pretrained.py --meta-iterations 200 --run runs/p --out-dir /tmp/w
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

import metarl
from metarl import zoo
from metarl.curves import Curve, mean_ci95
from metarl.learners import build_meta_learner
from metarl.learners.supervised import SupervisedMetaLearner
from metarl.models import default_device
from metarl.run import RunDir


def train(args: argparse.Namespace) -> tuple[RunDir, str]:
    """Train (or resume, or reuse) the run directory with the CLI, so the run is an ordinary
    `metarl train` run with its progress bar, checkpoints and metrics; returns the run and the
    command that trained it ("" for a finished run reused)."""
    run = RunDir(args.run)
    base = [sys.executable, "-m", "metarl", "train"]
    if not run.config_path.is_file():
        command = base + [
            args.recipe,
            f"--meta-iterations={args.meta_iterations}",
            f"--seed={args.seed}",
            f"--device={args.device}",
            f"--out={args.run}",
        ]
    elif run.checkpoint_path.is_file() and run.load_checkpoint().iteration >= args.meta_iterations:
        print(f"{args.run} is finished; evaluating it", file=sys.stderr)
        return run, ""
    else:
        command = base + ["--resume", str(args.run), f"--device={args.device}"]
    print(" ".join(command[1:]), file=sys.stderr)
    subprocess.run(command, check=True)
    return run, " ".join(["metarl", *command[3:]])


def train_seconds(metrics: list[dict[str, Any]]) -> float | None:
    """Training time of the run, summed over its resumes (`train_s`; runs written before it
    existed have only `elapsed_s`, one process's time)."""
    if not metrics:
        return None
    last = metrics[-1]
    return round(float(last.get("train_s", last["elapsed_s"])), 1)


def accuracy(curve: Curve) -> dict[str, Any]:
    """The accuracy after the last step count, with its 95% CI."""
    return {
        "mean": round(float(curve.mean[-1]), 5),
        "ci95": round(float(curve.ci95[-1]), 5),
        "steps": int(curve.steps[-1]),
        "tasks": int(curve.n_tasks),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipe", default="omniglot-5way-1shot")
    p.add_argument("--name", default="omniglot-5way-1shot", help="The shipped model's name.")
    p.add_argument("--meta-iterations", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run", type=Path, default=Path("runs/pretrained-omniglot-5way-1shot"))
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--train-command",
        default="",
        help="How the run of --run was trained, for the provenance, where it was trained "
        "before this script (e.g. by resumes, stopped with SIGTERM).",
    )
    p.add_argument("--tasks", type=int, default=1000, help="Test tasks per evaluation mode.")
    p.add_argument(
        "--check-tasks", type=int, default=200, help="Tasks of the float16/float32 comparison."
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default torch's).")
    p.add_argument("--out-dir", type=Path, default=zoo.WEIGHTS_DIR)
    args = p.parse_args()
    device = default_device(args.device)
    if args.threads is not None:  # a busy machine: OpenMP threads spin-wait on taken cores
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # for the training subprocess

    run, trained_with = train(args)
    checkpoint = run.load_checkpoint("cpu")
    recipe = run.recipe()
    metrics = run.read_metrics()
    sha = zoo.write_weights(args.name, checkpoint.model, args.out_dir)
    weights_file = args.out_dir / f"{args.name}.pt"
    info: dict[str, Any] = {
        "name": args.name,
        "recipe_name": args.recipe,
        "overrides": {  # as the run's config.toml has them
            "train.meta_iterations": recipe.train.meta_iterations,
            "train.seed": recipe.train.seed,
        },
        "algorithm": recipe.train.algorithm.value,
        "ways": int(recipe.task_options.get("ways", 5)),
        # fewer than the recipe's where the run was stopped (SIGTERM) and shipped as it stood
        "meta_iterations": checkpoint.iteration,
        "seed": recipe.train.seed,
        "train_seconds": train_seconds(metrics),
        "train_device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "weights": {
            "file": weights_file.name,
            "dtype": "float16",
            "bytes": weights_file.stat().st_size,
        },
        "sha256": sha,
        "date": datetime.date.today().isoformat(),
        "torch_version": str(torch.__version__),
        "metarl_version": metarl.__version__,
        "python": platform.python_version(),
        "command": "python scripts/tools/make_pretrained.py " + shlex.join(sys.argv[1:]),
        "train_command": args.train_command or trained_with,
        "recipe": recipe.to_dict(),
    }
    zoo.write_provenance(args.name, info, args.out_dir)

    # evaluate what ships: the float16 file, loaded back through the sha256-checked path
    shipped, _ = zoo.load_weights(args.name, args.out_dir)
    meta = build_meta_learner(recipe, device)
    assert isinstance(meta, SupervisedMetaLearner)
    steps = recipe.eval.steps
    meta.model.load_state_dict(shipped)
    transductive = meta.curve(steps, args.tasks, transductive=True)
    info["accuracy"] = {
        "split": recipe.eval.split,
        "eval_seed": recipe.eval.seed,
        "transductive": accuracy(transductive),
        "non_transductive": accuracy(meta.curve(steps, args.tasks, transductive=False)),
    }
    # does float16 cost accuracy? both on the same `--check-tasks` tasks (paired)
    last = [steps[-1]]
    half = meta.curve(last, args.check_tasks, transductive=True)
    meta.model.load_state_dict(checkpoint.model)
    full = meta.curve(last, args.check_tasks, transductive=True)
    difference, ci = mean_ci95(half.per_task[-1] - full.per_task[-1])
    info["accuracy"]["float16_check"] = {
        "float16": accuracy(half),
        "float32": accuracy(full),
        "float16_minus_float32": {"mean": round(difference, 5), "ci95": round(ci, 5)},
    }
    path = zoo.write_provenance(args.name, info, args.out_dir)
    print(json.dumps(info["accuracy"], indent=2))
    print(f"wrote {weights_file} ({info['weights']['bytes']} bytes, sha256 {sha}) and {path}")


if __name__ == "__main__":
    main()
