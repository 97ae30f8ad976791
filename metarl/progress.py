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


LOG_LINE_SECONDS = 60.0
"""Where stderr is not a terminal (a log file, `nohup`, CI), one plain progress line this often."""


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def prints_lines(console: Console) -> bool:
    """Whether progress on `console` goes as plain lines: a file or a pipe, where a live bar
    draws nothing (a notebook is no terminal either, but rich draws its live widget there)."""
    return not (console.is_terminal or console.is_jupyter)


def _rate_eta(done: float, seconds: float, remaining: float | None, unit: str) -> str:
    """`, RATE, eta T` from the average since the start (rich's own speed needs updates
    within 30 s; a slow evaluation reports once per rollout, minutes apart); "" before any
    progress."""
    if done <= 0 or seconds <= 0:
        return ""
    per_second = done / seconds
    rate = f"{per_second:.1f} {unit}/s" if per_second >= 1 else f"{1 / per_second:.1f} s/{unit}"
    eta = "" if remaining is None else f", eta {_duration(remaining / per_second)}"
    return f", {rate}{eta}"


class LoggedProgress(Progress):
    """A rich `Progress` that, where its console is not a terminal (a log file, where a live
    bar draws nothing), prints one plain line per task every `LOG_LINE_SECONDS` instead:
    description, done/total, rate and ETA."""

    def __init__(self, *columns: Any, unit: str = "it", **kwargs: Any) -> None:
        super().__init__(*columns, **kwargs)
        self._unit = unit
        self._lines = prints_lines(self.console) and not self.disable
        self._last_line: dict[Any, float] = {}

    def start(self) -> None:
        if not self._lines:  # no live display into a file (it would print a blank line)
            super().start()

    def stop(self) -> None:
        if not self._lines:
            super().stop()

    def update(self, task_id: Any, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._maybe_line(task_id)

    def advance(self, task_id: Any, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_line(task_id)

    def _maybe_line(self, task_id: Any) -> None:
        if not self._lines:
            return
        now = time.monotonic()
        task = self._tasks[task_id]
        last = self._last_line.setdefault(task_id, task.start_time or now)
        if now - last < LOG_LINE_SECONDS:
            return
        self._last_line[task_id] = now
        line = f"{task.description}: {task.completed:,.0f}/{task.total or 0:,.0f} {self._unit}"
        remaining = task.total - task.completed if task.total else None
        line += _rate_eta(task.completed, task.elapsed or 0.0, remaining, self._unit)
        self.console.print(line, highlight=False, markup=False, soft_wrap=True)


def progress_bar(
    label: str,
    console: Console,
    *,
    enabled: bool = True,
    unit: str = "it",
    download: bool = False,
    bar_width: int | None = 40,
) -> Progress:
    """A transient bar: `label`, done/total (bytes for a download), the rate and the ETA; in a
    log file, a plain line every `LOG_LINE_SECONDS` (`LoggedProgress`)."""
    counts: tuple[ProgressColumn, ...] = (
        (DownloadColumn(), TransferSpeedColumn())
        if download
        else (MofNCompleteColumn(), RateColumn(unit))
    )
    return LoggedProgress(
        TextColumn(f"[bold]{label}"),
        BarColumn(bar_width=bar_width),
        *counts,
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not enabled,
        unit="bytes" if download else unit,
    )


class ProgressCallback:
    """Shows a rich progress bar with rate, ETA and the current meta-loss (for RL with
    Reptile, which has no loss, the mean return of the meta-batch before adaptation).

    A live bar draws nothing into a file, so where the console is not a terminal (a long run
    started with `nohup ... > train.log`) it prints a plain line every `LOG_LINE_SECONDS`
    instead, and at the last iteration: iteration, rate, ETA and the same loss or returns.

    Args:
        console: where the bar or the lines go (the CLI's is `Console(stderr=True)`).
    """

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
        self._lines = prints_lines(console)
        self._last_line = 0.0
        self._start = (0.0, 0)  # (monotonic time, iteration) when this process started

    def on_start(self, trainer: Any) -> None:
        t = trainer.recipe.train
        self._start = (time.monotonic(), trainer.iteration)
        self._last_line = self._start[0]
        if self._lines:
            return
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
        total = trainer.recipe.train.meta_iterations
        final = metrics["iteration"] == total
        if self._lines:
            if now - self._last_line >= LOG_LINE_SECONDS or final:
                self._last_line = now
                self._print_line(metrics, total, now)
            return
        if now - self._last < 0.1 and not final:  # rich refreshes at 10 Hz anyway
            return
        self._last = now
        self.progress.update(self.task_id, completed=metrics["iteration"], loss=_status(metrics))

    def _print_line(self, metrics: dict[str, float], total: int, now: float) -> None:
        iteration = int(metrics["iteration"])
        started, first = self._start  # this process's start (a resume counts from there)
        line = f"meta-train {iteration}/{total}"
        line += _rate_eta(iteration - first, now - started, total - iteration, "it")
        line += f", {_status(metrics, after=True)}"
        self.progress.console.print(line, highlight=False, markup=False, soft_wrap=True)

    def on_end(self, trainer: Any) -> None:
        if not self._lines:
            self.progress.stop()

    def close(self) -> None:
        if self.task_id is not None:  # never started (--quiet, or plain lines)
            self.progress.stop()


def _status(metrics: dict[str, float], after: bool = False) -> str:
    """The meta-loss; for RL the return before (and, in lines, after) adapting."""
    loss = metrics.get("query_loss", metrics.get("loss_last_step"))
    if "return_before" in metrics:  # RL: TRPO's surrogate "loss" says nothing to a person
        text = f"return {metrics['return_before']:.2f}"
        if after and "return_after" in metrics:
            text += f" -> {metrics['return_after']:.2f} after adapting"
        return text
    return f"loss {float('nan') if loss is None else loss:.4f}"
