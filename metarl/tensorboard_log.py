"""TensorBoard event files in the run directory, for `tensorboard --logdir runs/`.

Training writes the rows of `metrics.jsonl` (same keys, same iterations) as scalars: losses
and returns under `train/`, times and rates under `time/`, the iteration as the step. A resumed
run opens the stream with `purge_step` at its checkpoint's next iteration, so rows logged after
that checkpoint (and re-run now) are not shown twice. `metarl eval` writes each adaptation
curve into `eval-<init>/` beside them (the step is the number of adaptation steps; a new
evaluation replaces the last one).

The `tensorboard` package is optional (`pip install "metarl-torch[tensorboard]"`): without it
nothing is written, unless the recipe asks for it (`train.tensorboard = true`).
"""

from __future__ import annotations

import errno
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarl.config import Recipe
from metarl.errors import UserError, utf8_name

if TYPE_CHECKING:
    from metarl.evaluate import Evaluation

INSTALL = 'pip install "metarl-torch[tensorboard]"'


def enabled(recipe: Recipe, run_dir: Path | None = None) -> bool:
    """Whether to write event files into `run_dir`: `train.tensorboard` (default: when
    installed, and the directory's name can be written by TensorBoard, which encodes every
    path as UTF-8: a name holding other bytes trains without event files, or is refused
    before anything is written when they were asked for)."""
    wanted = recipe.train.tensorboard
    if wanted and not installed():
        raise UserError(
            f"train.tensorboard = true, but the tensorboard package is not installed ({INSTALL})"
        )
    if run_dir is not None and not utf8_name(run_dir):
        if wanted:
            raise UserError(
                f"{os.fsencode(run_dir)!r}: not a UTF-8 name, which TensorBoard cannot write "
                "into; choose a UTF-8 name for the run or train with --no-tensorboard"
            )
        return False
    return installed() if wanted is None else wanted


def installed() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def tag(key: str) -> str:
    """`train/loss_before`, `time/tasks_per_s`, `memory/peak_rss_mib`: SB3's grouping of
    scalars."""
    if key.endswith("_mib"):
        return f"memory/{key}"
    return f"time/{key}" if key.endswith("_s") else f"train/{key}"


class ScalarLog:
    """The training scalars of one run, as TensorBoard events in the run directory."""

    def __init__(self, run_dir: Path, first_step: int) -> None:
        """Open the stream; events at steps >= `first_step` (from an interrupted session
        past its checkpoint) are purged, so a resume never shows a step twice."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=first_step)

    def add_row(self, row: dict[str, Any]) -> None:
        """One row of metrics.jsonl, at its `iteration`."""
        step = int(row["iteration"])
        for key, value in row.items():
            if key != "iteration" and isinstance(value, int | float):
                self.writer.add_scalar(tag(key), float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def log_evaluation(evaluation: Evaluation) -> Path | None:
    """Write an adaptation curve (mean and 95% CI per step count) to `eval-<init>/` in the
    run directory, replacing an earlier one; None when TensorBoard is off for the run or
    the package is not installed (the import comes after that check: without the optional
    extra, `metarl eval` must still work). An `OSError` when the run cannot be written to."""
    # not `enabled`: a run trained where tensorboard was installed evaluates anywhere
    if (
        evaluation.run_dir is None  # a shipped model evaluated without a run
        or not installed()
        or evaluation.recipe.train.tensorboard is False
    ):
        return None
    from torch.utils.tensorboard import SummaryWriter

    log_dir = evaluation.run_dir / f"eval-{evaluation.init}"
    if not utf8_name(log_dir):  # TensorBoard encodes paths as UTF-8
        raise OSError(errno.EILSEQ, "not a UTF-8 name, which TensorBoard cannot write into")
    # tried first: SummaryWriter reports a write that fails from its own thread
    log_dir.mkdir(exist_ok=True)
    tempfile.TemporaryFile(dir=log_dir).close()
    curve = evaluation.curve
    # purge_step=0: TensorBoard drops the previous evaluation's points from this folder
    with SummaryWriter(log_dir=str(log_dir), purge_step=0) as writer:
        for step, mean, ci in zip(curve.steps, curve.mean, curve.ci95, strict=True):
            writer.add_scalar(f"eval/{curve.metric}", mean, step)
            writer.add_scalar(f"eval/{curve.metric}_ci95", ci, step)
    return log_dir
