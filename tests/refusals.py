"""What the table-driven bad-input tests share: placeholders in a command line, and the
one-line refusal every case must end in (exit 2, `error: ...` naming the value, no traceback,
nothing written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def substitute(args: list[str], paths: dict[str, Path], out: Path) -> list[str]:
    """`OUT` becomes `out`; `NAME` or `NAME/rest` becomes `paths[NAME]` (joined with rest)."""
    result = []
    for a in args:
        if a == "OUT":
            a = str(out)
        else:
            head, _, rest = a.partition("/")
            if head in paths:
                a = str(paths[head] / rest) if rest else str(paths[head])
        result.append(a)
    return result


def assert_refused_in_one_line(result: Any, message: str, out: Path) -> None:
    """Exit 2, exactly one stderr line `error: ...` containing `message`, no traceback, and
    no `out` written."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()
