"""A run directory: `config.toml` (the recipe, so a run is itself a recipe), `metrics.jsonl`
(one JSON object per logged iteration) and `checkpoint.pt`.

Checkpoints are written to a temporary file and renamed, so a crash leaves the previous
checkpoint intact, and are read with `torch.load(weights_only=True)`, so a checkpoint from
elsewhere cannot run code.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import metarl
from metarl.atomic import atomic_write_bytes
from metarl.config import Recipe, recipe_from_dict
from metarl.errors import UserError
from metarl.jsonio import dumps as dumps_json
from metarl.tomlio import dumps_toml, read_toml

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


@dataclass
class Checkpoint:
    iteration: int
    """Meta-iterations completed."""
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    config: dict[str, Any]
    learner: dict[str, Any] = field(default_factory=dict)
    """The meta-learner's training state beyond the weights (carried inner moments)."""


class RunDir:
    """Paths and file I/O of one run."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def check_new(cls, path: Path) -> None:
        """Refuse a path that already holds a run, holds anything else (training would append
        to its files, and a resume truncate them), or cannot be created."""
        run = cls(path)
        if run.config_path.exists() or run.checkpoint_path.exists():
            raise UserError(
                f"{path} already holds a run; continue it with `metarl train --resume {path}` "
                "or choose another --out"
            )
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path}: exists and is not a directory")
        if path.is_dir() and any(path.iterdir()):
            held = ", ".join(sorted(p.name for p in path.iterdir())[:3])
            raise UserError(
                f"--out {path}: a directory that is not a metarl run (holds {held}); "
                "give a new or empty directory"
            )
        check_writable(path, "--out")

    @classmethod
    def create(cls, path: Path, recipe: Recipe) -> RunDir:
        """A new run; refuses a directory that already holds one."""
        cls.check_new(path)
        run = cls(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run.config_path, dumps_toml(recipe.to_dict()).encode())
        except OSError as e:
            raise UserError(f"--out {path}: cannot be written ({e.strerror})") from None
        return run

    def discard_unstarted(self) -> None:
        """Remove a run that failed before its first checkpoint: its config.toml,
        metrics.jsonl and TensorBoard event files, then the directory if nothing else is left,
        so the same --out works again. A run with a checkpoint is never touched."""
        if self.checkpoint_path.exists():
            return
        for path in (self.config_path, self.metrics_path, *self.path.glob("events.out.tfevents.*")):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: leave it
            self.path.rmdir()

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run; a clear error when `path` is not one."""
        run = cls(path)
        if path.is_file():
            raise UserError(f"run directory {str(path)!r} is a file, not a run directory")
        if not path.is_dir():
            raise UserError(f"run directory {str(path)!r} does not exist")
        if not run.config_path.is_file():
            raise UserError(f"{path} is not a run directory: it has no {CONFIG}")
        return run

    def recipe(self) -> Recipe:
        return recipe_from_dict(read_toml(self.config_path), source=str(self.config_path))

    # -- metrics --------------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(dumps_json(row) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a crash: everything before it is good
        return rows

    def truncate_metrics(self, iteration: int) -> None:
        """Drop rows past `iteration` (logged after the checkpoint a resume starts from)."""
        rows = [r for r in self.read_metrics() if r.get("iteration", 0) <= iteration]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.metrics_path, text.encode())

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, ckpt: Checkpoint) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "metarl_version": metarl.__version__,
            "torch_version": str(torch.__version__),
            "python": platform.python_version(),
            "iteration": ckpt.iteration,
            "model": ckpt.model,
            "optimizer": ckpt.optimizer,
            "rng": ckpt.rng,
            "learner": ckpt.learner,
            # JSON keeps the checkpoint loadable with weights_only=True whatever the config holds
            "config": json.dumps(ckpt.config),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.checkpoint_path, buffer.getvalue())

    def load_checkpoint(
        self, map_location: torch.device | str = "cpu", *, lazy: bool = False
    ) -> Checkpoint:
        """The checkpoint, its weights and optimizer state on `map_location`. The RNG state
        stays a CPU ByteTensor whatever the device: `torch.set_rng_state` takes nothing else
        (loading it onto a GPU was what broke resuming there). `lazy` memory-maps the file so
        tensors are read only when touched (to look at its iteration and config)."""
        path = self.checkpoint_path
        if not path.is_file():
            raise UserError(f"{self.path} has no {CHECKPOINT} yet (was the run started?)")
        try:
            with warnings.catch_warnings():  # the refusal below is the whole message
                warnings.simplefilter("ignore")
                payload = torch.load(path, map_location="cpu", weights_only=True, mmap=lazy)
        except Exception as e:  # torch raises several types for a damaged or foreign file
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"{path}: not a readable metarl checkpoint ({first_line[:160]}); it is damaged "
                "or was not written by metarl"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{path}: not a metarl checkpoint of format {CHECKPOINT_FORMAT}")
        return Checkpoint(
            iteration=int(payload["iteration"]),
            model=_to_device(payload["model"], map_location),
            optimizer=_to_device(payload["optimizer"], map_location),
            learner=_to_device(payload.get("learner", {}), map_location),
            rng=payload["rng"],
            config=json.loads(payload["config"]),
        )

    def edited_since(self, ckpt: Checkpoint) -> bool:
        """`config.toml` no longer says what the checkpoint was trained with (a resume would
        silently change the recipe mid-run, so it is refused). Both go through the same
        defaults: a field added since the run began is no edit."""
        saved = recipe_from_dict(ckpt.config, source=str(self.checkpoint_path)).to_dict()
        return saved != self.recipe().to_dict()


def _to_device(value: Any, device: torch.device | str) -> Any:
    """`value` with every tensor (in nested dicts and lists) moved to `device`."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def check_writable(path: Path, what: str) -> None:
    """Refuse a file or directory path that cannot be created: its nearest existing ancestor
    must be a writable directory. Checked before long work, not after it."""
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor != path and not ancestor.is_dir():
        raise UserError(f"{what} {path}: cannot be created, {ancestor} is not a directory")
    if ancestor.is_dir() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{what} {path}: cannot be created, {ancestor} is not writable")
