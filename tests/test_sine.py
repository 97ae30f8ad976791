from __future__ import annotations

import math

import numpy as np
import pytest

from metarl.distributions.sine import SineDistribution
from metarl.errors import ConfigError


def test_tasks_follow_the_papers_ranges(sine):
    tasks = sine.sample(2000, np.random.default_rng(1))
    amps = np.array([t.amplitude for t in tasks])
    phases = np.array([t.phase for t in tasks])
    assert amps.min() >= 0.1 and amps.max() <= 5.0
    assert phases.min() >= 0.0 and phases.max() <= 2 * math.pi
    assert amps.mean() == pytest.approx(2.55, abs=0.1)


def test_sampling_depends_only_on_the_generator(sine):
    a = sine.sample(5, np.random.default_rng(7))
    b = sine.sample(5, np.random.default_rng(7))
    assert [t.to_dict() for t in a] == [t.to_dict() for t in b]


def test_episodes_have_consistent_shapes_and_values(sine):
    rng = np.random.default_rng(3)
    tasks = sine.sample(4, rng)
    batch = sine.episodes(tasks, rng, support=10, query=100, evaluation=True)
    assert batch.support_x.shape == (4, 10, 1) and batch.query_y.shape == (4, 100, 1)
    assert batch.query_x[0, :, 0].tolist() == pytest.approx(np.linspace(-5, 5, 100).tolist())
    t = tasks[2]
    expected = t.amplitude * np.sin(batch.support_x[2, :, 0].numpy() + t.phase)
    assert batch.support_y[2, :, 0].numpy() == pytest.approx(expected, abs=1e-5)


def test_maml_variant_and_bad_ranges():
    maml = SineDistribution(phase=[0.0, math.pi])
    assert max(t.phase for t in maml.sample(500, np.random.default_rng(0))) <= math.pi
    with pytest.raises(ConfigError, match="task.amplitude"):
        SineDistribution(amplitude=[5.0, 0.1])
