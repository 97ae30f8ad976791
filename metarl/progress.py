"""Progress bars (rich, on stderr) with a rate and an ETA, for every long operation."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (`unit`/s), and tasks per second when the task has a
    `tasks_per_iteration` field (meta-training)."""

    def __init__(self, unit: str = "it") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text(f"-- {self.unit}/s", style="progress.data.speed")
        text = f"{speed:,.1f} {self.unit}/s"
        per = task.fields.get("tasks_per_iteration")
        if per is not None:
            text += f", {speed * per:,.0f} tasks/s"
        return Text(text, style="progress.data.speed")


def progress_bar(
    label: str, console: Console, *, enabled: bool = True, unit: str = "it", download: bool = False
) -> Progress:
    """A transient bar: `label`, done/total (bytes for a download), the rate and the ETA."""
    counts: tuple[ProgressColumn, ...] = (
        (DownloadColumn(), TransferSpeedColumn())
        if download
        else (MofNCompleteColumn(), RateColumn(unit))
    )
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        *counts,
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )
