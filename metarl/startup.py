"""Ctrl-C while the command line starts: one line and exit code 130, at any moment.

`metarl ...` (the console script) and `python -m metarl ...` import the package and then
`metarl.cli` (gymnasium's registry, typer, rich: a noticeable while) before a command is
there to catch a KeyboardInterrupt: Python's default handler printed a traceback for a
Ctrl-C in that window, and typer turns one raised while it parses the line into a silent
exit 130.
`metarl/__init__.py` imports this module first (it needs only the standard library): where
this process is the command line, SIGINT ends it at once with "interrupted" and 130 until a
command's own handling takes over (`hand_over`, called by `cli.user_errors`). A program that
imports metarl as a library keeps its own Ctrl-C handling: nothing changes there.
"""

from __future__ import annotations

# Only modules a Python process has loaded before it runs any code of ours: `signal` (its
# enums take a while to build, longer on a loaded machine) would leave a window in which
# Ctrl-C still printed a traceback, so the handler is set through its C module `_signal`.
import _signal
import os
import sys

TYPE_CHECKING = False  # not `typing`'s, which is slow to import
if TYPE_CHECKING:
    from types import FrameType

_SCRIPT_LINE = "from metarl.cli import main"
"""What the console script that pip writes for `metarl` imports (pyproject.toml's
`[project.scripts]`)."""


def _interrupted(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"interrupted\n")
    os._exit(130)


def _run_as_module() -> bool:
    """`python [options] -m metarl ...` (torchrun's workers too), from the interpreter's own
    command line: a program named anything else, or `-m metarl.x`, is not the CLI."""
    args = iter(getattr(sys, "orig_argv", [])[1:])
    for arg in args:
        if arg == "-m":
            return next(args, None) == "metarl"
        if arg.startswith("-m"):
            return arg[2:] == "metarl"
        if arg in ("-X", "-W"):
            next(args, None)
        elif arg.startswith("-c") or not arg.startswith("-"):
            return False
    return False


def _run_as_console_script() -> bool:
    """The `metarl` script pip installs is the program (`__main__`) and imports `cli.main`."""
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if not script or os.path.basename(script) not in ("metarl", "metarl-script.py"):
        return False
    try:
        with open(script, encoding="utf-8", errors="replace") as f:
            return _SCRIPT_LINE in f.read(4096)
    except OSError:
        return False


def quiet_while_starting(at_start: object, held: list[int]) -> None:
    """In the command line's process, Ctrl-C from now on exits 130 with one line; elsewhere
    SIGINT raises KeyboardInterrupt as before. `at_start`: SIGINT's handler when the package
    began to import (one that is not Python's, or SIGINT ignored as in a background job, is
    left alone); `held`: the SIGINTs that came while this module loaded, acted on now."""
    if at_start is not _signal.default_int_handler:
        return
    if _run_as_module() or _run_as_console_script():
        _signal.signal(_signal.SIGINT, _interrupted)
        if held:
            _interrupted(_signal.SIGINT, None)
        return
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    if held:
        raise KeyboardInterrupt


def hand_over() -> None:
    """A command is ready to catch KeyboardInterrupt (a training then writes its checkpoint
    before it stops): Ctrl-C raises it again."""
    if _signal.getsignal(_signal.SIGINT) is _interrupted:
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
