"""Where datasets live: `--data-dir`, else `$METARL_DATA`, else a per-user cache folder.

One function decides, so the CLI, the loaders and the tests agree on the same folder.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "METARL_DATA"


def user_cache_dir() -> Path:
    """The per-user cache folder: `$XDG_CACHE_HOME/metarl`, else `~/.cache/metarl`."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "metarl"


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data root for this call.

    Args:
        data_dir: an explicit folder (the CLI's `--data-dir`); wins over everything else.

    Returns:
        `data_dir` if given, else `$METARL_DATA` if set and non-empty, else `user_cache_dir()`.
        The folder need not exist yet: readers report what is missing, writers create it.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return user_cache_dir()
