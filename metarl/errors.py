"""Errors a user can fix. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: an unknown name, a malformed file, a value out of range.

    The message names the bad value and what would be accepted; it is shown to the user as is,
    without a traceback.
    """


class ConfigError(UserError):
    """A recipe, config file or option that cannot be used as given."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """ " Did you mean 'x'?" for the closest of `choices` to a mistyped `name`, else ""."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def utf8_name(path: os.PathLike[str] | str) -> bool:
    """Whether `path` is valid UTF-8: the bytes of a name that is not decode to surrogates,
    which writers that encode their paths as UTF-8 (TensorBoard, torch's memory map)
    refuse."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def os_error_message(e: OSError) -> str:
    """An operating-system error on a path as one line naming the path: "PATH: reason"
    (a full disk, a read-only file system, a name too long, a folder where a file is
    expected). The user gave the path, so the CLI reports it as bad input."""
    reason = e.strerror or type(e).__name__
    if e.filename is None:
        return f"{reason} ({type(e).__name__})"
    where = os.fsdecode(e.filename)
    if e.filename2 is not None:
        where += f" -> {os.fsdecode(e.filename2)}"
    hint = HINTS.get(e.errno or 0, "")
    return f"{where}: {reason}{hint}"


HINTS = {
    errno.ENOSPC: " (free some space, or write somewhere else)",
    errno.EDQUOT: " (over the disk quota: free some space, or write somewhere else)",
    errno.EROFS: " (a read-only file system: write somewhere else)",
    errno.ENAMETOOLONG: " (a file name is limited to 255 bytes, a path to 4096)",
}
