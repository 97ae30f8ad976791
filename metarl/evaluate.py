"""Evaluating a run: its recipe and meta-trained parameters, ready to adapt to held-out tasks.

The evaluation tasks are a pure function of `eval.seed`, so numbers compare across runs and
across initializations: `load_run(..., init=...)` evaluates a run's recipe from its
meta-trained weights ("meta"), from the recipe's seed initialization without any training
("random"), or from the weights of another run of the same task and model ("joint": a
multi-task baseline trained with the same budget), always with the run's own protocol.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metarl.config import Recipe
from metarl.errors import UserError
from metarl.meta_learners import MetaLearner, build_meta_learner
from metarl.run import RunDir

INITS = ("meta", "random", "joint")


def load_run(
    path: Path, device: torch.device, init: str = "meta", joint_run: Path | None = None
) -> tuple[Recipe, MetaLearner]:
    """The recipe and meta-learner of a run directory, its model holding the initialization
    `init` (one of `INITS`; "joint" takes its weights from the run directory `joint_run`)."""
    if init not in INITS:
        raise UserError(f"--init {init!r}: expected one of {', '.join(INITS)}")
    if (init == "joint") != (joint_run is not None):
        raise UserError("--joint-run DIR goes with --init joint (and only with it)")
    run = RunDir.open(path)
    recipe = run.recipe()
    meta = build_meta_learner(recipe, device)
    if init == "meta":
        meta.model.load_state_dict(run.load_checkpoint(device).model)
    elif joint_run is not None:
        weights = RunDir.open(joint_run).load_checkpoint(device).model
        mine = meta.model.state_dict()
        if {k: tuple(v.shape) for k, v in weights.items()} != {
            k: tuple(v.shape) for k, v in mine.items()
        }:
            raise UserError(
                f"--joint-run {joint_run}: its model does not match the one of {path} "
                "(train it from the same recipe)"
            )
        meta.model.load_state_dict(weights)
    return recipe, meta
