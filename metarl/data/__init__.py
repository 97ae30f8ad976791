"""Datasets read from the data root: verified on disk, never downloaded behind the user's back.

`metarl data fetch NAME` downloads (with checksums), `metarl data import NAME PATH` copies files
a user already has, `metarl data verify NAME` checks what is there; loaders only read.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from metarl.errors import UserError, did_you_mean

DATASETS = {
    "omniglot": "metarl.data.omniglot",
    "miniimagenet": "metarl.data.miniimagenet",
}
"""Dataset name -> module offering `verify(root)`, `import_(src, root)` and `fetch(root)`."""


def dataset_module(name: str) -> ModuleType:
    """The module of dataset `name` (imported on first use)."""
    if name not in DATASETS:
        raise UserError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}."
            + did_you_mean(name, DATASETS)
        )
    return importlib.import_module(DATASETS[name])
