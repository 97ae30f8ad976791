from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from metarl.config import OptimizerName
from metarl.distributions.sine import SineDistribution
from metarl.learners.inner_loop import InnerLoop, InnerOptimizer

# The tests run `metarl train` / `eval` in this process hundreds of times (typer's CliRunner):
# keeping freed memory (`metarl.allocator`, process-wide) would let this process's heap grow
# to its peak and never shrink over the whole suite. tests/test_allocator.py checks the
# setting in its own processes.
os.environ.setdefault("METARL_MALLOC", "system")


@pytest.fixture
def sine() -> SineDistribution:
    return SineDistribution()


@pytest.fixture
def sine_batch(sine: SineDistribution):
    rng = np.random.default_rng(0)
    return sine.episodes(sine.sample(6, rng), rng, support=10, query=20)


@pytest.fixture
def small_mlp(sine: SineDistribution) -> torch.nn.Module:
    torch.manual_seed(0)
    return sine.build_model(hidden=[16, 16])


def learner_for(model: torch.nn.Module, name: str, lr: float, inner_batch: int = 0) -> InnerLoop:
    return InnerLoop(model, "mse", InnerOptimizer(OptimizerName(name), lr, beta1=0.5), inner_batch)
