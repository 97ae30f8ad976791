"""Where datasets live: `--data-dir`, else `$METARL_DATA`, else a per-user cache folder.

One function decides, so the CLI, the loaders and the tests agree on the same folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV_VAR = "METARL_DATA"


def user_cache_dir() -> Path:
    """The per-user cache folder: `$XDG_CACHE_HOME/metarl`, else `~/.cache/metarl`."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "metarl"


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data root for this call.

    Args:
        data_dir: an explicit folder (a recipe's `[task] data_dir`, `data verify --data-dir`).

    Returns:
        the folder of `metarl train/eval --data-dir` while one is in force (`using`), else
        `data_dir` if given, else `$METARL_DATA` if set and non-empty, else `user_cache_dir()`.
        The folder need not exist yet: readers report what is missing, writers create it.
    """
    if _command_line is not None:
        return _command_line
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return user_cache_dir()


_command_line: Path | None = None


@contextmanager
def using(data_dir: str | os.PathLike[str] | None) -> Iterator[None]:
    """Within the block, every loader reads `data_dir` (the `--data-dir` of `metarl train`
    and `metarl eval`: the command line wins over a recipe's `[task] data_dir`); None
    changes nothing."""
    global _command_line
    previous = _command_line
    if data_dir is not None:
        _command_line = Path(data_dir).expanduser()
    try:
        yield
    finally:
        _command_line = previous
