"""Atomic writes: a file is written under a temporary name beside its destination and renamed
over it in one `os.replace`, so a crash leaves either the old file or the new one, never half
of one (checkpoints, run configs, metrics, figures, dataset files).

The file gets the mode a plain `open(path, "w")` would give (0644 under umask 022), not
`mkstemp`'s private 0600: runs and figures are shared. An `OSError` while writing (a full disk,
a read-only file system) names the destination, so the CLI can say which file in one line.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (`os.umask` sets it,
    so reading it that way races with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(dest: Path) -> Iterator[Path]:
    """Yield a temporary path beside `dest`; on success it replaces `dest` in one rename."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        finally:
            os.close(fd)
    except OSError as e:
        raise _naming(e, dest) from None
    tmp = Path(name)
    try:
        try:
            yield tmp
            os.replace(tmp, dest)
        except OSError as e:
            raise _naming(e, dest) from None
    finally:
        tmp.unlink(missing_ok=True)


def _naming(e: OSError, dest: Path) -> OSError:
    """`e` naming `dest` (a write() that fails on a full disk names no file; a temporary
    name is not the file the user asked for)."""
    if e.filename is None or str(e.filename).endswith(".part"):
        return type(e)(e.errno, e.strerror, str(dest))
    return e


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, flushed to disk before the rename."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
