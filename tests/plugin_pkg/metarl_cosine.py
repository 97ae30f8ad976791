"""A task distribution in one small class: y = A cos(w x), A and w drawn per task."""

from dataclasses import asdict, dataclass

import numpy as np
import torch

from metarl.models import mlp
from metarl.protocol import TaskBatch


@dataclass(frozen=True)
class Cosine:
    amplitude: float
    frequency: float

    def to_dict(self):
        return asdict(self)


class CosineDistribution:
    kind, loss, metric = "supervised", "mse", "mse"

    def sample(self, n, rng, split="train"):
        return [Cosine(rng.uniform(0.5, 2.0), rng.uniform(0.5, 1.5)) for _ in range(n)]

    def episodes(self, tasks, rng, *, support, query, evaluation=False):
        a = np.array([[t.amplitude] for t in tasks])
        w = np.array([[t.frequency] for t in tasks])
        sx = rng.uniform(-3, 3, (len(tasks), support))
        qx = rng.uniform(-3, 3, (len(tasks), query))

        def col(v):
            return torch.tensor(v, dtype=torch.float32)[..., None]

        return TaskBatch(col(sx), col(a * np.cos(w * sx)), col(qx), col(a * np.cos(w * qx)))

    def build_model(self, hidden=(32, 32)):
        return mlp(1, 1, hidden, "tanh")


def register_envs():
    """The `metarl.envs` entry point: register this package's environment families."""
    from pathlib import Path

    from metarl.envs import register_family
    from metarl.envs.spec import family_from_dict

    declaration = {
        "name": "LongPole",
        "base": "CartPole-v1",
        "params": {"length": {"uniform": [1.0, 2.0]}},
    }
    register_family(family_from_dict(declaration, Path("longpole.toml")))
