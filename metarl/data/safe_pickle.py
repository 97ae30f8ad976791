"""Reading pickles of numpy arrays without running the code a pickle may carry.

`pickle.load` calls whatever callable a file names, so loading a downloaded
`mini-imagenet-cache-train.pkl` with it would run anything its author chose (`os.system(...)`).
The pickles users hold for Mini-ImageNet (learn2learn's caches) contain only dicts, lists,
strings, integers and numpy arrays, so `load_arrays` resolves only the few globals those need
and refuses every other one before it could be called.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from metarl.errors import UserError


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it to store bytes, limited to latin-1."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(text, "latin1")


def _allowed() -> dict[tuple[str, str], Any]:
    """(module, name) -> the object the unpickler may use for it."""
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("collections", "OrderedDict"): dict,
    }
    try:  # numpy >= 2 moved numpy.core to numpy._core; files name either
        multiarray = importlib.import_module("numpy._core.multiarray")
        numeric = importlib.import_module("numpy._core.numeric")
    except ModuleNotFoundError:
        multiarray = importlib.import_module("numpy.core.multiarray")
        numeric = importlib.import_module("numpy.core.numeric")
    for core in ("numpy.core", "numpy._core"):
        # array and numpy-scalar reconstruction, whichever numpy wrote the file: protocols
        # 2-4 rebuild arrays with _reconstruct, protocol 5 with _frombuffer
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allowed list."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler whose `find_class` knows only numpy array reconstruction and plain
    containers; every other global raises `RefusedGlobal` before anything is called."""

    ALLOWED = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None


def load_arrays(path: Path) -> Any:
    """Unpickle `path` with `ArrayUnpickler`.

    Raises:
        UserError: the file names a global outside the allowed list (the message names the file
            and the refused global), or it is not a readable pickle.
    """
    try:
        with path.open("rb") as f:
            return ArrayUnpickler(f, encoding="latin1").load()
    except RefusedGlobal as e:
        raise UserError(
            f"{path}: refused to load: the pickle calls {e.qualname}, which a pickle of numpy "
            "arrays does not need (loading it could run arbitrary code)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{path}: not a readable pickle of numpy arrays ({e})") from None
