"""Errors a user can fix. The CLI turns them into one line on stderr and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: an unknown name, a malformed file, a value out of range.

    The message names the bad value and what would be accepted; it is shown to the user as is,
    without a traceback.
    """


class ConfigError(UserError):
    """A recipe, config file or option that cannot be used as given."""
