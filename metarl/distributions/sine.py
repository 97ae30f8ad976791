"""Sine-wave regression, the toy problem of MAML and Reptile.

Each task is y = A sin(x + b). The Reptile paper draws A ~ U[0.1, 5], b ~ U[0, 2pi] and
x ~ U[-5, 5]; MAML's variant draws b ~ U[0, pi] (pass `phase = [0, 3.14159...]`).
Evaluation follows the Reptile blog's protocol: K support points uniform on [-5, 5], and the
query is 100 evenly spaced points on [-5, 5].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from metarl.errors import ConfigError
from metarl.models import mlp
from metarl.protocol import Split, TaskBatch


@dataclass(frozen=True)
class SineTask:
    amplitude: float
    phase: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.amplitude * np.sin(x + self.phase)


def _interval(name: str, value: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"task.{name} = {value!r}: expected [low, high]") from None
    if not lo <= hi:
        raise ConfigError(f"task.{name} = {list(value)}: low must not exceed high")
    return lo, hi


class SineDistribution:
    """Sine regression tasks (the Reptile and MAML papers' toy problem): y = A sin(x + b) with
    A, b and x drawn uniformly; infinite, so splits are independent random streams.

    Args:
        amplitude: `[low, high]` of A.
        phase: `[low, high]` of b.
        x_range: `[low, high]` of the inputs.

    Examples:
        >>> import numpy as np
        >>> from metarl.distributions.sine import SineDistribution
        >>> dist = SineDistribution(amplitude=[1.0, 2.0])
        >>> tasks = dist.sample(4, np.random.default_rng(0))
        >>> batch = dist.episodes(tasks, np.random.default_rng(1), support=10, query=20)
        >>> batch.num_tasks, tuple(batch.support_x.shape)
        (4, (4, 10, 1))
        >>> model = dist.build_model(hidden=[40, 40])
        >>> tuple(model(batch.query_x).shape)
        (4, 20, 1)
    """

    kind = "supervised"
    loss = "mse"
    metric = "mse"

    def __init__(
        self,
        amplitude: Sequence[float] = (0.1, 5.0),
        phase: Sequence[float] = (0.0, 2 * math.pi),
        x_range: Sequence[float] = (-5.0, 5.0),
    ) -> None:
        self.amplitude = _interval("amplitude", amplitude)
        self.phase = _interval("phase", phase)
        self.x_range = _interval("x_range", x_range)

    def sample(
        self, n: int, rng: np.random.Generator, split: Split = Split.TRAIN
    ) -> list[SineTask]:
        """Draw `n` tasks (amplitude and phase) using only `rng`."""
        amplitudes = rng.uniform(*self.amplitude, size=n)
        phases = rng.uniform(*self.phase, size=n)
        return [SineTask(float(a), float(b)) for a, b in zip(amplitudes, phases, strict=True)]

    def episodes(
        self,
        tasks: Sequence[SineTask],
        rng: np.random.Generator,
        *,
        support: int,
        query: int,
        evaluation: bool = False,
    ) -> TaskBatch:
        """Support and query points of each task.

        Args:
            tasks: Tasks of this distribution.
            rng: The only source of randomness.
            support: Support points per task, drawn uniformly from `x_range`.
            query: Query points per task: uniform in training, evenly spaced over `x_range`
                in evaluation.
            evaluation: Whether the batch is for evaluation.

        Returns:
            `[tasks, points, 1]` tensors of inputs and targets.
        """
        n = len(tasks)
        amplitude = np.array([t.amplitude for t in tasks])[:, None]
        phase = np.array([t.phase for t in tasks])[:, None]
        support_x = rng.uniform(*self.x_range, size=(n, support))
        if evaluation:
            query_x = np.broadcast_to(np.linspace(*self.x_range, query), (n, query))
        else:
            query_x = rng.uniform(*self.x_range, size=(n, query))

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[..., None]

        return TaskBatch(
            tensor(support_x),
            tensor(amplitude * np.sin(support_x + phase)),
            tensor(query_x),
            tensor(amplitude * np.sin(query_x + phase)),
        )

    def build_model(
        self, hidden: Sequence[int] = (64, 64), activation: str = "tanh"
    ) -> torch.nn.Module:
        """The regressor: an MLP 1-hidden-1 (`metarl.models.mlp`); the recipe's `[model]`."""
        return mlp(1, 1, hidden, activation)
