"""Datasets read from the data root: verified on disk, never downloaded behind the user's back.

`metarl data fetch NAME` downloads (with checksums), `metarl data import NAME PATH` copies files
a user already has, `metarl data verify NAME` checks what is there; loaders only read.
"""

from __future__ import annotations

import difflib
import importlib
from types import ModuleType

from metarl.errors import UserError

DATASETS = {
    "omniglot": "metarl.data.omniglot",
    "miniimagenet": "metarl.data.miniimagenet",
}
"""Dataset name -> module offering `verify(root)`, `import_(src, root)` and `fetch(root)`."""


def dataset_module(name: str) -> ModuleType:
    """The module of dataset `name` (imported on first use)."""
    if name not in DATASETS:
        close = difflib.get_close_matches(name, list(DATASETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}.{hint}")
    return importlib.import_module(DATASETS[name])
