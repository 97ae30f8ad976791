"""Mini-ImageNet N-way K-shot episodes over the splits that `metarl.data.miniimagenet`
imported into the data root (see there for the accepted forms and the class checks)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.data.episodes import NWayImages, support_and_query
from metarl.data.miniimagenet import IMAGE_SIZE, SplitImages, load
from metarl.errors import ConfigError
from metarl.models import conv_classifier
from metarl.protocol import Split, TaskBatch


@dataclass(frozen=True)
class MiniImageNetTask:
    """One N-way episode: label `i` is class `classes[i]` of the split (indices into its class
    list, in random order, so labels are shuffled per task). `seed` fixes which images each
    class contributes: a permutation of the class's images whose first `support` are the
    support set and the next `query` the query set, so a larger query never changes the
    support."""

    split: str
    classes: tuple[int, ...]
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "classes": list(self.classes), "seed": self.seed}


class MiniImageNetDistribution(NWayImages):
    """N-way K-shot Mini-ImageNet episodes, 84x84 RGB in [0, 1], over the imported splits.

    Each split is the imported uint8 file, memory-mapped (the training split is 813 MB; ranks
    share it through the page cache instead of holding a copy each), so an episode is an
    index into a uint8 array, with no file reads once the pages are cached.

    Args:
        ways: classes per task (N).
        data_dir: the data root (default `$METARL_DATA`, else the per-user cache).
        data: split -> images to use instead of reading the data root (tests, custom data).
    """

    def __init__(
        self,
        ways: int = 5,
        data_dir: str | None = None,
        data: dict[str, SplitImages] | None = None,
    ) -> None:
        if data is None:
            data = load(Path(data_dir) if data_dir is not None else None)
        self.ways = self.checked_ways(ways, {s: len(d.classes) for s, d in data.items()})
        self.splits = data
        self.device = torch.device("cpu")
        self._images: dict[str, torch.Tensor] = {}

    def to(self, device: torch.device) -> MiniImageNetDistribution:
        """Hold the images on `device` (uint8; the training split is 813 MB), so episodes are
        assembled there by indexing, with no host-to-device copy of images per episode."""
        self.device = torch.device(device)
        self._images = {s: images.to(self.device) for s, images in self._images.items()}
        return self

    def images(self, split: str) -> torch.Tensor:
        """The split's images, `uint8 [N, 84, 84, 3]`. On the CPU this is the imported file's
        memory map itself, not a copy: pages are read on first touch and live in the page
        cache, which every process on the machine (every rank, every worker) shares. On
        another device the split is copied there once, on first use."""
        if split not in self._images:
            array = self.splits[split].images
            images = torch.from_numpy(array if array.flags.writeable else np.array(array))
            self._images[split] = images.to(self.device)
        return self._images[split]

    def sample(
        self, n: int, rng: np.random.Generator, split: Split = Split.TRAIN
    ) -> list[MiniImageNetTask]:
        split = Split(split)
        count = len(self.splits[split.value].classes)
        return [
            MiniImageNetTask(
                split.value,
                tuple(int(c) for c in rng.choice(count, self.ways, replace=False)),
                int(rng.integers(2**63 - 1)),
            )
            for _ in range(n)
        ]

    def episodes(
        self,
        tasks: Sequence[MiniImageNetTask],
        rng: np.random.Generator,
        *,
        support: int,
        query: int,
        evaluation: bool = False,
    ) -> TaskBatch:
        """Support and query tensors: `x` is `float32 [tasks, ways * shots, 3, 84, 84]` in
        [0, 1], `y` is `int64 [tasks, ways * shots]`; `support` and `query` count images per
        class. Examples are shuffled within each set with `rng` (the inner loop takes
        consecutive minibatches). `evaluation` changes nothing: evaluation episodes are drawn
        like training ones, only from another split."""
        if not tasks:
            raise ConfigError("no tasks to build episodes for")
        split = tasks[0].split
        if any(t.split != split for t in tasks):
            raise ConfigError("the tasks of one batch must come from one split")
        data = self.splits[split]
        fewest = min(data.counts[c] for t in tasks for c in t.classes)
        if support < 1 or query < 0 or support + query > fewest:
            raise ConfigError(
                f"support_shots = {support}, query_shots = {query}: the {split} classes have "
                f"as few as {fewest} images, so support >= 1 and support + query <= {fewest}"
            )
        shots = support + query
        offsets = data.offsets
        index = np.empty((len(tasks), self.ways, shots), dtype=np.int64)
        for i, t in enumerate(tasks):
            pick = np.random.default_rng(t.seed)
            for j, c in enumerate(t.classes):
                index[i, j] = offsets[c] + pick.permutation(data.counts[c])[:shots]
        images = self.images(split)
        x = images[torch.from_numpy(index).to(images.device)]  # [T, W, S+Q, 84, 84, 3], no I/O
        return support_and_query(x.permute(0, 1, 2, 5, 3, 4), support, rng, channels=3)

    def build_model(
        self, filters: int = 32, layers: int = 4, pool_before_norm: bool = False
    ) -> torch.nn.Module:
        """The Reptile paper's Mini-ImageNet network: `layers` x [conv 3x3, BatchNorm with batch
        statistics only, max-pool 2, ReLU] then a linear layer to `ways` logits.
        `pool_before_norm=True` swaps pooling and BatchNorm, as supervised-reptile's code has
        them."""
        return conv_classifier(
            3,
            IMAGE_SIZE,
            self.ways,
            filters=filters,
            layers=layers,
            pool=True,
            pool_before_norm=pool_before_norm,
        )


__all__ = ["MiniImageNetDistribution", "MiniImageNetTask"]
