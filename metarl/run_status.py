"""Where each run under a folder stands (`metarl runs`): its task, iterations done out of
planned, the last logged metrics and whether `metarl train --resume` would continue it.

A run is read from its `config.toml`, the last line of `metrics.jsonl` and the checkpoint's
iteration and config; the checkpoint is memory-mapped, so its weights are not read.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from metarl.errors import UserError
from metarl.run import CONFIG, METRICS, RunDir

# (before, after) metric pairs in the order they are looked for in a metrics row
METRIC_PAIRS = (
    ("loss_before", "loss_last_step"),
    ("loss_before", "query_loss"),
    ("return_before", "return_after"),
)


@dataclass
class RunStatus:
    """One run directory as `metarl runs` shows it."""

    name: str
    """The path relative to the folder listed."""
    task: str
    algorithm: str
    iteration: int
    """Meta-iterations done: the checkpoint's (what a resume continues from), else the last
    logged row's."""
    planned: int
    last: dict[str, float] = field(default_factory=dict)
    """The last metrics row's before/after values (losses, or returns for RL)."""
    resumable: bool = False
    state: str = ""
    """yes, finished, or why not (no checkpoint, config edited, unreadable ...)."""
    path: Path | None = None
    """The run directory (not in the JSON: `name` says it relative to the folder listed)."""

    def last_text(self) -> str:
        """`loss 1.88 -> 0.513`, `return -30.1`, or '-'."""
        for before, after in METRIC_PAIRS:
            if before in self.last and after in self.last:
                kind = before.split("_")[0]
                return f"{kind} {self.last[before]:.4g} -> {self.last[after]:.4g}"
        for key in ("return_before", "loss_before", *self.last):  # a run with no "after"
            if key in self.last:
                return f"{key.split('_')[0]} {self.last[key]:.4g}"
        return "-"

    def to_json(self) -> dict[str, Any]:
        row = asdict(self)
        del row["path"]
        return row


def run_status(path: Path, root: Path) -> RunStatus:
    """The status of the run in `path` (which holds a `config.toml`)."""
    run = RunDir(path)
    name = str(path.relative_to(root)) if path != root else path.name
    try:
        recipe = run.recipe()
    except (UserError, OSError) as e:
        return RunStatus(name, "?", "?", 0, 0, state=f"no: bad {CONFIG} ({e})", path=path)
    try:
        rows, damaged = run.read_metrics_checked()
    except OSError as e:
        rows, damaged = [], True
        damage = e.strerror
    else:
        damage = "not JSON lines"
    last = rows[-1] if rows else {}
    status = RunStatus(
        name=name,
        path=path,
        task=recipe.task_name,
        algorithm=recipe.train.algorithm.value,
        iteration=int(last.get("iteration", 0)),
        planned=recipe.train.meta_iterations,
        last={
            k: float(last[k])
            for pair in METRIC_PAIRS
            for k in pair
            if isinstance(last.get(k), float)
        },
    )
    if damaged:
        status.state = f"no: damaged {METRICS} ({damage})"
        return status
    holder = run.holder()
    if holder is not None:
        status.state = f"no: being trained (pid {holder})"
        return status
    if not run.checkpoint_path.is_file():
        status.iteration = 0  # a resume would start over
        status.state = "no: no checkpoint"
        return status
    try:
        status.iteration, config = run.peek_checkpoint()
    except (UserError, OSError):
        status.state = "no: unreadable checkpoint"
        return status
    if run.config_edited(config):
        status.state = f"no: {CONFIG} edited"
    elif status.iteration >= status.planned:
        status.state = "finished"
    else:
        status.resumable, status.state = True, "yes"
    return status


def scan_runs(root: Path) -> list[RunStatus]:
    """Every run directory under `root` (any depth; `root` itself if it is one), by path."""
    if not root.is_dir():
        raise UserError(f"runs {str(root)!r}: not a directory (give a folder of run directories)")
    return [run_status(run, root) for run in sorted(run_directories(root))]


def run_directories(root: Path) -> list[Path]:
    """The directories under `root` (itself included) that hold a `config.toml`, following
    symbolic links (a folder of links to runs kept elsewhere is a natural way to compare
    them; `Path.rglob` does not follow them before Python 3.13), each real directory once."""
    found: list[Path] = []
    seen: set[str] = set()
    for folder, subdirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree, or two links to one run
            subdirs.clear()
            continue
        seen.add(real)
        if CONFIG in files:
            found.append(Path(folder))
    return found
