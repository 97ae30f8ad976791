"""Turning the images picked for a batch of N-way tasks into support and query sets, and
what the N-way image distributions are besides (`NWayImages`).

Both image datasets (Omniglot, Mini-ImageNet) pick, per task and class, `support + query`
images by indexing a uint8 tensor held on the device; this module does the rest the same way
for both: labels are the class positions, each set is shuffled per task (the inner loop takes
consecutive minibatches), and pixels become float32 in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from metarl.errors import ConfigError
from metarl.protocol import TaskBatch


class NWayImages:
    """What the N-way image distributions (Omniglot, Mini-ImageNet) are alike in: supervised
    classification scored by accuracy, with `ways` classes per task that every split must
    hold."""

    kind = "supervised"
    loss = "cross_entropy"
    metric = "accuracy"

    @staticmethod
    def checked_ways(ways: int, classes: Mapping[str, int]) -> int:
        """`ways` as an int, or a one-line refusal where a split (`classes`: its class
        count) has fewer classes."""
        if not 1 <= int(ways) <= min(classes.values()):
            raise ConfigError(f"task.ways = {ways}: must be between 1 and the classes {classes}")
        return int(ways)


def support_and_query(
    images: torch.Tensor, support: int, rng: np.random.Generator, channels: int
) -> TaskBatch:
    """`images` is `uint8 [tasks, ways, support + query, (channels,) size, size]`, class `j`
    of each task at position `j`; returns `x` as `float32 [tasks, ways * shots, channels,
    size, size]` and `y` as `int64 [tasks, ways * shots]` for both sets, on the images'
    device. `rng` shuffles the support set, then the query set."""
    n, ways, shots = images.shape[:3]
    size = images.shape[-1]
    device = images.device
    labels = torch.arange(ways, device=device).view(1, ways, 1).expand(n, ways, shots)
    rows = torch.arange(n, device=device)[:, None]

    def shuffled(xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xs = xs.reshape(n, -1, channels, size, size)
        ys = ys.reshape(n, -1)
        order = rng.permuted(np.tile(np.arange(ys.shape[1]), (n, 1)), axis=1)
        index = torch.from_numpy(order).to(device)
        return xs[rows, index].float().div_(255.0), ys[rows, index].contiguous()

    sx, sy = shuffled(images[:, :, :support], labels[:, :, :support])
    qx, qy = shuffled(images[:, :, support:], labels[:, :, support:])
    return TaskBatch(sx, sy, qx, qy)
