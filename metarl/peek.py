"""Read a checkpoint's plain values (iteration, config) without importing torch.

`metarl runs` lists a folder of runs and says whether each would resume: it needs each
checkpoint's iteration and config, not its tensors, and importing torch to read them cost
more than the whole listing (scripts/benchmarks/bench_cli_startup.py). A `torch.save` file is
a zip whose `data.pkl` pickles the payload with tensors as references to other members; this
unpickles that one member with every tensor replaced by `None`. Nothing in the file is run:
the only globals it may name are torch's tensor-rebuilding functions and storage classes
(answered by a stub) and `collections.OrderedDict`; anything else makes it give up, and the
caller falls back to `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any


class NotPlain(Exception):
    """The file names a global this reader does not stand in for (read it with torch)."""


def _stub(*args: Any, **kwargs: Any) -> None:
    """Stands in for a tensor (or storage) rebuilt from the file: its value is not read."""
    return None


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" or module.startswith("torch."):
            return _stub
        raise NotPlain(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> None:  # a tensor's storage: another zip member
        return None


def plain_payload(path: Path) -> dict[str, Any]:
    """The checkpoint's payload with every tensor as `None`. Raises `NotPlain` where the file
    names other globals, `zipfile.BadZipFile`, `pickle.UnpicklingError`, `OSError` or
    `KeyError` where it is not a readable `torch.save` zip."""
    with zipfile.ZipFile(path) as archive:
        members = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        if len(members) != 1:
            raise KeyError("data.pkl")
        payload = _PlainUnpickler(io.BytesIO(archive.read(members[0]))).load()
    if not isinstance(payload, dict):
        raise pickle.UnpicklingError("not a dict")
    return payload
