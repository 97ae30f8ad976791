"""The tables of `metarl tasks list`, `metarl envs list` and `metarl runs` at any terminal
width (80 columns or a pipe included); where even the uncut columns do not fit, the lines run
past the edge rather than lose a column.

No value is cut: names and ids are for copying, so they stay on their row's first line; the
free text (descriptions, parameter summaries, a run's last metrics) takes the width that is
left and wraps at words onto more lines when it does not fit.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
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
    """A borderless table of `rows` that fits `width` columns: every column but `free` keeps
    its full width on one line, `free` takes what is left and wraps at words (never cut).
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
    room = width - fixed - GAP * (len(headers) - 1)
    free_width = widths[list(headers).index(free)]
    if room < MIN_FREE:  # the uncut columns alone overflow: the lines run past the edge anyway,
        room = free_width  # so a narrow column of wrapped text would only be harder to read
    for header, w in zip(headers, widths, strict=True):
        if header == free:
            table.add_column(header, overflow="fold", max_width=min(w, room))
        else:
            table.add_column(header, no_wrap=True, min_width=w)
    at = list(headers).index(free)
    for row in rows:
        table.add_row(*[escape(c) for c in row])
    # the width the uncut columns need: where it exceeds `width`, `show` prints wider lines
    # rather than let rich drop whole columns (long run names in an 80-column pipe did)
    table.min_width = fixed + GAP * (len(headers) - 1) + min(widths[at], room)
    return table


def show(console: Console, table: Table) -> None:
    """Print a `compact_table`: at the console's width, or at the table's own when its uncut
    columns need more (lines then run past the edge; no column disappears)."""
    # the title on its own line, never cut (it names the folder listed, for copying); rich
    # would fit it to the table's width and end it in "..."
    title, table.title = table.title, None
    if title is not None:
        console.print(title, style="bold", soft_wrap=True, highlight=False)
    wide = table.min_width or 0
    if wide <= console.width:
        console.print(table)
        return
    # rich caps a print's width at its console's: print through one as wide as the table
    Console(
        file=console.file,
        width=wide,
        force_terminal=console.is_terminal,
        color_system=console.color_system,  # type: ignore[arg-type]
    ).print(table)


GAP = 2
"""Characters between two columns (right and left padding)."""
MIN_FREE = 12
"""Below this, the free column is not wrapped: the uncut columns overflow the width already."""
READABLE_FREE = 24
"""Below this many characters for the free column, optional columns make room for it."""


def param_summary(params: dict[str, ParamDist]) -> str:
    """`goal U[-0.5, 0.5]^2`, `m x U[0.5, 2]` (a factor on the default), comma-separated."""
    return ", ".join(
        f"{name} {str(dist).replace('default x ', 'x ')}" for name, dist in params.items()
    )


def base_name(fam: FamilySpec) -> str:
    """The base Gymnasium id, or the class name of a hand-written family."""
    return fam.base or (fam.entry_point or "").rsplit(":", 1)[-1]
