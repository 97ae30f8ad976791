"""Tests for the mutants of the core that scripts/tools/mutation_check.py found surviving
(`python scripts/tools/mutation_check.py metarl/algorithms.py tests/test_algorithms.py
--limit 0`: 11 of 13 killed before these)."""

from __future__ import annotations

import numpy as np
import torch

from metarl import algorithms
from metarl.config import Algorithm, with_overrides
from metarl.protocol import Split
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

CPU = torch.device("cpu")


def test_a_two_iteration_schedule_ends_at_its_end_value():
    """`max(total - 1, 1)` -> `max(total - 1, 2)` survived: the schedules tested were longer."""
    assert algorithms.linear_schedule(1.0, 0.0, 0, 2) == 1.0
    assert algorithms.linear_schedule(1.0, 0.0, 1, 2) == 0.0
    assert algorithms.linear_schedule(0.5, 0.1, 0, 1) == 0.5  # one iteration: the start


def _adapted(tmp_path, algorithm: str):
    """sine-maml's init adapted to 3 training tasks, under `algorithm`."""
    recipe = with_overrides(resolve_recipe("sine-maml"), "train", meta_batch=3, algorithm=algorithm)
    trainer = MetaTrainer.start(recipe, tmp_path / algorithm, CPU)
    rng = np.random.default_rng(0)
    tasks = trainer.meta.dist.sample(3, rng, Split.TRAIN)
    phi = trainer.phi()
    return trainer, phi, trainer.meta.adapt(phi, tasks, rng, trainer.world.slots(3))


def test_second_order_maml_takes_the_second_order_meta_gradient(tmp_path):
    """`second_order or GRADIENTS` -> `and` survived: MAML's meta-gradient would silently be
    first-order (FOMAML's) and every MAML test that only trains would still pass."""
    maml, phi, adaptation = _adapted(tmp_path, "maml")
    delta, _ = algorithms.meta_delta(Algorithm.MAML, maml.meta, phi, adaptation)
    fomaml, phi_again, again = _adapted(tmp_path, "fomaml")
    for k in phi:  # the same init, the same tasks: only the order of the derivative differs
        torch.testing.assert_close(phi[k], phi_again[k], rtol=0, atol=0)
    first_order, _ = algorithms.meta_delta(Algorithm.FOMAML, fomaml.meta, phi, again)
    gap = max((delta[k] - first_order[k]).abs().max().item() for k in delta)
    scale = max(first_order[k].abs().max().item() for k in delta)
    assert gap > 1e-3 * scale, (gap, scale)  # the second-order terms are there
