"""The default sine recipe meets the quality targets (the full recipe, a few seconds)."""

from __future__ import annotations

import torch

from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer


def test_default_sine_recipe_reaches_the_targets(tmp_path):
    recipe = resolve_recipe("sine")
    trainer = MetaTrainer.start(recipe, tmp_path / "run", torch.device("cpu"))
    trainer.fit()
    curve = trainer.meta.curve([0, 1, 10], n_tasks=1000)
    before, one, ten = curve.mean
    assert ten <= 0.10, curve.mean
    assert one <= 0.66, curve.mean
    assert before > 2.0  # zero-shot prediction is impossible: the gain is adaptation
