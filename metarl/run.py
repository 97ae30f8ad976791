"""A run directory: `config.toml` (the recipe, so a run is itself a recipe), `metrics.jsonl`
(one JSON object per logged iteration) and `checkpoint.pt`.

Checkpoints are written to a temporary file and renamed, so a crash leaves the previous
checkpoint intact, and are read with `torch.load(weights_only=True)`, so a checkpoint from
elsewhere cannot run code.
"""

from __future__ import annotations

import io
import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import metarl
from metarl.atomic import atomic_write_bytes
from metarl.config import Recipe, recipe_from_dict
from metarl.errors import UserError
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
        """Refuse a path that already holds a run or is not a directory."""
        run = cls(path)
        if run.config_path.exists() or run.checkpoint_path.exists():
            raise UserError(
                f"{path} already holds a run; continue it with `metarl train --resume {path}` "
                "or choose another --out"
            )
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path}: exists and is not a directory")

    @classmethod
    def create(cls, path: Path, recipe: Recipe) -> RunDir:
        """A new run; refuses a directory that already holds one."""
        cls.check_new(path)
        run = cls(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run.config_path, dumps_toml(recipe.to_dict()).encode())
        return run

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run; a clear error when `path` is not one."""
        run = cls(path)
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
            f.write(json.dumps(row) + "\n")

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
            # JSON keeps the checkpoint loadable with weights_only=True whatever the config holds
            "config": json.dumps(ckpt.config),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.checkpoint_path, buffer.getvalue())

    def load_checkpoint(self, map_location: torch.device | str = "cpu") -> Checkpoint:
        path = self.checkpoint_path
        if not path.is_file():
            raise UserError(f"{self.path} has no {CHECKPOINT} yet (was the run started?)")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
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
            model=payload["model"],
            optimizer=payload["optimizer"],
            rng=payload["rng"],
            config=json.loads(payload["config"]),
        )
