"""A custom task distribution is checked at the door, with one line naming the class."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metarl.distributions.sine import SineDistribution
from metarl.errors import UserError
from metarl.protocol import TaskBatch
from metarl.validate import check_distribution


class NoEpisodes:
    kind = "supervised"
    loss = "mse"
    metric = "mse"

    def sample(self, n, rng, split):
        return []

    def build_model(self):
        return torch.nn.Linear(1, 1)


class Unserializable(SineDistribution):
    def sample(self, n, rng, split=None):
        tasks = super().sample(n, rng)

        class Opaque:
            def to_dict(self):
                return {"f": object()}

        return [Opaque() for _ in tasks]


class RaggedEpisodes(SineDistribution):
    def episodes(self, tasks, rng, *, support, query, evaluation=False):
        b = super().episodes(tasks, rng, support=support, query=query)
        return TaskBatch(b.support_x, b.support_y[:, :1], b.query_x, b.query_y)


@pytest.mark.parametrize(
    "dist,message",
    [
        (NoEpisodes(), "NoEpisodes): missing episodes (the supervised Task protocol)"),
        (Unserializable(), "Unserializable): sampled tasks must be serializable"),
        (RaggedEpisodes(), "RaggedEpisodes): episodes() x and y disagree"),
    ],
)
def test_bad_distributions_are_named(dist, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_distribution(dist, "mine")


def test_a_good_distribution_passes():
    check_distribution(SineDistribution(), "sine")
    assert np.isfinite(SineDistribution().sample(1, np.random.default_rng(0))[0].amplitude)
