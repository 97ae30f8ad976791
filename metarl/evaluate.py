"""Evaluating a run: its recipe and meta-trained parameters, ready to adapt to held-out tasks.

The evaluation tasks are a pure function of `eval.seed`, so numbers compare across runs and
across initializations.
"""

from __future__ import annotations

from pathlib import Path

import torch

from metarl.config import Recipe
from metarl.meta_learners import MetaLearner, build_meta_learner
from metarl.run import RunDir


def load_run(path: Path, device: torch.device) -> tuple[Recipe, MetaLearner]:
    """The recipe and meta-learner of a run directory, with the checkpoint's weights."""
    run = RunDir.open(path)
    recipe = run.recipe()
    meta = build_meta_learner(recipe, device)
    meta.model.load_state_dict(run.load_checkpoint(device).model)
    return recipe, meta
