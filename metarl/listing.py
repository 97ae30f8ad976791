"""The tables of `metarl tasks list`, `metarl envs list` and `metarl runs`: one line per row
at any terminal width (80 columns or a pipe included).

Names and ids are for copying, so they are never cut; the free text (descriptions, parameter
summaries) takes the width that is left and ends in an ellipsis when it does not fit. The full
text stays one command away (`metarl tasks show NAME`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from metarl.envs.spec import FamilySpec, ParamDist


def compact_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    free: str,
    width: int,
    optional: Sequence[str] = (),
) -> Table:
    """A borderless table of `rows` that fits `width` columns without wrapping: every column
    but `free` keeps its full width, `free` is cut at a word with an ellipsis to what is left.
    The `optional` columns are dropped, in order, while `free` would get fewer than
    `READABLE_FREE` characters (e.g. a recipe's task name, which mostly repeats its name)."""
    for name in optional:
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
        fixed = sum(w for h, w in zip(headers, widths, strict=True) if h != free)
        if width - fixed - GAP * (len(headers) - 1) >= READABLE_FREE or name not in headers:
            break
        at = list(headers).index(name)
        headers = [h for i, h in enumerate(headers) if i != at]
        rows = [[c for i, c in enumerate(r) if i != at] for r in rows]
    table = Table(
        title=escape(title),
        box=None,
        pad_edge=False,
        title_justify="left",
        title_style="bold",
        header_style="bold underline",
    )
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fixed = sum(w for h, w in zip(headers, widths, strict=True) if h != free)
    room = max(MIN_FREE, width - fixed - GAP * (len(headers) - 1))
    for header, w in zip(headers, widths, strict=True):
        if header == free:
            table.add_column(header, no_wrap=True, max_width=min(w, room))
        else:
            table.add_column(header, no_wrap=True, min_width=w)
    at = list(headers).index(free)
    for row in rows:
        cells = [escape(c) for c in row]
        cells[at] = escape(shorten(row[at], room))
        table.add_row(*cells)
    return table


GAP = 2
"""Characters between two columns (right and left padding)."""
MIN_FREE = 12
"""The free column never shrinks below this (on a very narrow terminal the table overflows)."""
READABLE_FREE = 24
"""Below this many characters for the free column, optional columns make room for it."""


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters at a word boundary, ending in an ellipsis."""
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    if " " in cut[width // 2 :]:  # a word boundary in the second half: cut there
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip(" ,;:(-") + "…"


def param_summary(params: dict[str, ParamDist]) -> str:
    """`goal U[-0.5, 0.5]^2`, `m x U[0.5, 2]` (a factor on the default), comma-separated."""
    return ", ".join(
        f"{name} {str(dist).replace('default x ', 'x ')}" for name, dist in params.items()
    )


def base_name(fam: FamilySpec) -> str:
    """The base Gymnasium id, or the class name of a hand-written family."""
    return fam.base or (fam.entry_point or "").rsplit(":", 1)[-1]
