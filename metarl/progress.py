"""Progress bars (rich, on stderr) with a rate and an ETA, for every long operation, and the
meta-training callback that shows one."""

from __future__ import annotations

import time
from typing import Any

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
    label: str,
    console: Console,
    *,
    enabled: bool = True,
    unit: str = "it",
    download: bool = False,
    bar_width: int | None = 40,
) -> Progress:
    """A transient bar: `label`, done/total (bytes for a download), the rate and the ETA."""
    counts: tuple[ProgressColumn, ...] = (
        (DownloadColumn(), TransferSpeedColumn())
        if download
        else (MofNCompleteColumn(), RateColumn(unit))
    )
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(bar_width=bar_width),
        *counts,
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )


class ProgressCallback:
    """Shows a rich progress bar with rate, ETA and the current meta-loss (for RL with
    Reptile, which has no loss, the mean return of the meta-batch before adaptation)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=12),
            MofNCompleteColumn(),
            RateColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"),
            console=console,
            transient=False,
        )
        self.task_id: Any = None
        self._last = 0.0

    def on_start(self, trainer: Any) -> None:
        t = trainer.recipe.train
        self.progress.start()
        self.task_id = self.progress.add_task(
            "meta-train",
            total=t.meta_iterations,
            completed=trainer.iteration,
            loss="loss --",
            tasks_per_iteration=t.meta_batch,
        )

    def on_iteration(self, trainer: Any, metrics: dict[str, float]) -> None:
        now = time.monotonic()
        final = metrics["iteration"] == trainer.recipe.train.meta_iterations
        if now - self._last < 0.1 and not final:  # rich refreshes at 10 Hz anyway
            return
        self._last = now
        loss = metrics.get("query_loss", metrics.get("loss_last_step"))
        if loss is None and "return_before" in metrics:  # RL: the pre-adaptation return
            text = f"return {metrics['return_before']:.2f}"
        else:
            text = f"loss {float('nan') if loss is None else loss:.4f}"
        self.progress.update(self.task_id, completed=metrics["iteration"], loss=text)

    def on_end(self, trainer: Any) -> None:
        self.progress.stop()

    def close(self) -> None:
        if self.task_id is not None:  # never started (--quiet): nothing to stop
            self.progress.stop()
