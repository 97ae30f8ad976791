"""Omniglot N-way episodes with the Reptile paper's splits, over the decoded images that
`metarl.data.omniglot` reads from the data root (see there for files, splits and the cache)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.data.episodes import NWayImages, support_and_query
from metarl.data.omniglot import IMAGE_SIZE, OmniglotImages, load
from metarl.errors import ConfigError
from metarl.models import conv_classifier
from metarl.protocol import Split, TaskBatch


@dataclass(frozen=True)
class OmniglotTask:
    """One N-way episode: class `i` (label `i`) is character `characters[i]` turned by
    `rotations[i]` quarter turns; its support drawings come first in `drawings[i]` (a
    permutation of the character's drawings), its query drawings next."""

    split: str
    characters: tuple[int, ...]
    rotations: tuple[int, ...]
    drawings: tuple[tuple[int, ...], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "characters": list(self.characters),
            "rotations": list(self.rotations),
            "drawings": [list(d) for d in self.drawings],
        }


class OmniglotDistribution(NWayImages):
    """N-way Omniglot episodes, 28x28 grayscale, with the Reptile paper's splits.

    Args:
        ways: classes per task (N).
        split_mode: "paper" (1623 characters pooled: 1200 train incl. validation, 423 test) or
            "background" (images_background for train/val, images_evaluation for test).
        rotations: augment training classes with 90/180/270-degree rotations.
        train_classes: characters for train + validation in "paper" mode (default 1200).
        val_classes: the last characters of the training ones, kept for validation.
        split_seed: seeds the shuffle that assigns characters to splits.
        data_dir: the data root (default `$METARL_DATA`, else the per-user cache).
        data: decoded images to use instead of reading the data root (tests, custom data).
    """

    def __init__(
        self,
        ways: int = 5,
        split_mode: str = "paper",
        rotations: bool = True,
        train_classes: int | None = None,
        val_classes: int = 100,
        split_seed: int = 0,
        data_dir: str | None = None,
        data: OmniglotImages | None = None,
    ) -> None:
        if split_mode not in ("paper", "background"):
            raise ConfigError(f"task.split_mode = {split_mode!r}: expected paper or background")
        if split_mode == "background" and train_classes is not None:
            raise ConfigError("task.train_classes only applies to split_mode = 'paper'")
        if data is None:
            data = load(Path(data_dir) if data_dir is not None else None)
        self.rotations = rotations
        self.names = data.names
        self._images = torch.from_numpy(np.array(data.images))  # one read of the memory-map
        splits = _split_characters(
            len(data.names), data.background, split_mode, train_classes, val_classes, split_seed
        )
        turns = 4 if rotations else 1
        self.classes: dict[Split, np.ndarray] = {
            s: np.array(
                [(c, r) for r in range(turns if s is Split.TRAIN else 1) for c in chars],
                dtype=np.int64,
            ).reshape(-1, 2)
            for s, chars in splits.items()
        }
        sizes = {s.value: len(c) for s, c in self.classes.items() if len(c)}
        self.ways = self.checked_ways(ways, sizes)

    def to(self, device: torch.device) -> OmniglotDistribution:
        """Hold the images on `device` (uint8, 25 MB), so episodes are assembled there by
        indexing, with no host-to-device copy of images per meta-iteration."""
        self._images = self._images.to(device)
        return self

    @property
    def drawings(self) -> int:
        return int(self._images.shape[1])

    def sample(
        self, n: int, rng: np.random.Generator, split: Split = Split.TRAIN
    ) -> list[OmniglotTask]:
        split = Split(split)
        classes = self.classes[split]
        if not len(classes):
            raise ConfigError(f"the {split.value} split is empty (task.val_classes = 0?)")
        tasks = []
        for _ in range(n):
            picked = classes[rng.choice(len(classes), self.ways, replace=False)]
            drawings = rng.permuted(np.tile(np.arange(self.drawings), (self.ways, 1)), axis=1)
            tasks.append(
                OmniglotTask(
                    split.value,
                    tuple(int(c) for c in picked[:, 0]),
                    tuple(int(r) for r in picked[:, 1]),
                    tuple(tuple(int(d) for d in row) for row in drawings),
                )
            )
        return tasks

    def episodes(
        self,
        tasks: Sequence[OmniglotTask],
        rng: np.random.Generator,
        *,
        support: int,
        query: int,
        evaluation: bool = False,
    ) -> TaskBatch:
        """Support and query tensors: `x` is `float32 [tasks, ways * shots, 1, 28, 28]` in
        [0, 1], `y` is `int64 [tasks, ways * shots]`. `support` and `query` count drawings per
        class and must not add up to more than 20. Examples are shuffled within each set (the
        inner loop takes consecutive minibatches). `evaluation` changes nothing: evaluation
        episodes are drawn like training ones, only from another split."""
        if support + query > self.drawings or support < 1 or query < 0:
            raise ConfigError(
                f"support_shots = {support}, query_shots = {query}: Omniglot has "
                f"{self.drawings} drawings per character, so support >= 1 and "
                f"support + query <= {self.drawings}"
            )
        device = self._images.device  # episodes are assembled where the images live
        chars = torch.tensor([t.characters for t in tasks], device=device)  # [T, W]
        turns = torch.tensor([t.rotations for t in tasks], device=device)
        draws = torch.tensor(
            [[d[: support + query] for d in t.drawings] for t in tasks], device=device
        )
        x = self._images[chars[..., None], draws]  # [T, W, S+Q, 28, 28], an index, no I/O
        for k in (1, 2, 3):
            mask = turns == k
            if mask.any():
                x[mask] = torch.rot90(x[mask], k, dims=(-2, -1))
        return support_and_query(x, support, rng, channels=1)

    def build_model(self, filters: int = 64, layers: int = 4) -> torch.nn.Module:
        """The Reptile paper's Omniglot network: `layers` x [conv 3x3 stride 2, BatchNorm with
        batch statistics only, ReLU] then a linear layer to `ways` logits."""
        return omniglot_model(self.ways, filters=filters, layers=layers)


def omniglot_model(ways: int, filters: int = 64, layers: int = 4) -> torch.nn.Module:
    """The network of `OmniglotDistribution.build_model`, built without reading the data (for
    shipped pretrained weights and the demo)."""
    return conv_classifier(1, IMAGE_SIZE, ways, filters=filters, layers=layers)


def _split_characters(
    n: int,
    background: int,
    mode: str,
    train_classes: int | None,
    val_classes: int,
    seed: int,
) -> dict[Split, np.ndarray]:
    """Character indices of each split (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if mode == "paper":
        train_val = 1200 if train_classes is None else int(train_classes)
        if not 0 < train_val < n:
            raise ConfigError(f"task.train_classes = {train_val}: must be between 1 and {n - 1}")
        order = rng.permutation(n)
        pool, test = order[:train_val], order[train_val:]
    else:
        pool, test = rng.permutation(background), np.arange(background, n)
    if not 0 <= val_classes < len(pool):
        raise ConfigError(f"task.val_classes = {val_classes}: must be in [0, {len(pool) - 1}]")
    cut = len(pool) - val_classes
    return {Split.TRAIN: pool[:cut], Split.VAL: pool[cut:], Split.TEST: test}


__all__ = ["OmniglotDistribution", "OmniglotTask", "omniglot_model"]
