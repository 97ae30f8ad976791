"""File plumbing shared by the dataset modules: atomic installs and checked downloads.

Everything lands in the data root through a temporary name in the same folder and one
`os.replace`, so an interrupted copy or download never leaves a half file where a loader would
read it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from metarl.atomic import atomic_file
from metarl.errors import UserError
from metarl.progress import progress_bar

CHUNK = 1 << 20

stderr = Console(stderr=True)


def install_file(src: Path, dest: Path) -> None:
    """Copy `src` to `dest` atomically."""
    with atomic_file(dest) as tmp:
        shutil.copyfile(src, tmp)


def install_tree(src: Path, dest: Path) -> None:
    """Copy the folder `src` to `dest`, swapped in by renames (see `atomic_dir`)."""
    with atomic_dir(dest) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: Path, expected: str, *, what: str) -> None:
    """Raise a `UserError` naming `what` unless `path` has the md5 `expected`."""
    got = md5sum(path)
    if got != expected:
        raise UserError(
            f"{what}: md5 {got} does not match the published {expected} (a truncated or "
            "changed download); try again, or get the file yourself and import it"
        )


def download(url: str, dest: Path, md5: str, *, fix: str, progress: bool = True) -> None:
    """Download `url` to `dest` through a temporary file, installing it only if its md5 is
    `md5`. Network failures become a `UserError` that names the URL and `fix`."""
    with atomic_file(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response, tmp.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress_bar(dest.name, stderr, enabled=progress, download=True) as bar:
                    task = bar.add_task("download", total=total)
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        bar.advance(task, len(chunk))
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise UserError(f"could not download {url} ({reason}); {fix}") from None
        check_md5(tmp, md5, what=f"download of {url}")


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `dest`; on success it replaces `dest` by two
    renames (a folder cannot be replaced in one step, so the old one is moved aside first and
    deleted last). On failure `dest` is untouched and the temporary folder is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    old = tmp.with_suffix(".old")
    try:
        yield tmp
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
