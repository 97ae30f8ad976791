"""Errors a user can fix. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations

import difflib
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
