"""Fast-adaptation evaluation: the metric on held-out tasks after 0, 1, ... adaptation steps.

The evaluation tasks are a pure function of `eval.seed`, so numbers compare across runs and
across initializations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.config import Recipe
from metarl.learner import Params
from metarl.protocol import Split, TaskBatch
from metarl.run import RunDir
from metarl.train import build_model, make_learner, supervised_distribution, task_rng

Z95 = 1.959963984540054


@dataclass
class Curve:
    """Mean and 95% confidence half-width of a metric per number of adaptation steps."""

    metric: str
    steps: list[int]
    mean: list[float]
    ci95: list[float]
    n_tasks: int
    per_task: np.ndarray
    """`[len(steps), n_tasks]`: the raw values behind the means."""

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "n_tasks": self.n_tasks,
            "steps": self.steps,
            "mean": self.mean,
            "ci95": self.ci95,
            "curve": [
                {"step": s, "mean": m, "ci95": c}
                for s, m, c in zip(self.steps, self.mean, self.ci95, strict=True)
            ],
        }


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval."""
    n = len(values)
    mean = float(np.mean(values))
    if n < 2:
        return mean, math.nan
    return mean, float(Z95 * np.std(values, ddof=1) / math.sqrt(n))


def eval_batch(recipe: Recipe, n_tasks: int) -> TaskBatch:
    """The fixed evaluation tasks of a recipe."""
    dist = supervised_distribution(recipe)
    e = recipe.eval
    split = Split(e.split)
    rng = task_rng(e.seed, split)
    tasks = dist.sample(n_tasks, rng, split)
    return dist.episodes(tasks, rng, support=e.support_shots, query=e.query_shots, evaluation=True)


def adaptation_curve(
    recipe: Recipe,
    model: torch.nn.Module,
    steps: list[int],
    n_tasks: int,
    chunk: int = 250,
) -> Curve:
    """The metric on `n_tasks` held-out tasks after each of `steps` adaptation steps,
    adapting from the model's parameters (chunks of tasks bound the memory)."""
    dist = supervised_distribution(recipe)
    learner = make_learner(recipe, model, dist, evaluation=True)
    device = next(model.parameters()).device
    phi: Params = {k: v.detach() for k, v in model.named_parameters()}
    batch = eval_batch(recipe, n_tasks)
    wanted = sorted(set(steps))
    values = np.zeros((len(wanted), n_tasks))
    for start in range(0, n_tasks, chunk):
        part = batch.take(slice(start, start + chunk)).to(device)
        row = 0
        for t, (params, _) in enumerate(
            learner.adapt_steps(phi, part.support_x, part.support_y, max(wanted))
        ):
            if t in wanted:
                metric = learner.evaluate(params, part.query_x, part.query_y, dist.metric)
                values[row, start : start + part.num_tasks] = metric.cpu().numpy()
                row += 1
    stats = [mean_ci95(v) for v in values]
    return Curve(
        metric=dist.metric,
        steps=wanted,
        mean=[m for m, _ in stats],
        ci95=[c for _, c in stats],
        n_tasks=n_tasks,
        per_task=values,
    )


def load_run_model(path: Path, device: torch.device) -> tuple[Recipe, torch.nn.Module]:
    """The recipe and meta-trained network of a run directory."""
    run = RunDir.open(path)
    recipe = run.recipe()
    dist = supervised_distribution(recipe)
    model = build_model(recipe, dist, device)
    ckpt = run.load_checkpoint(device)
    model.load_state_dict(ckpt.model)
    return recipe, model
