"""Validation at the door: a task distribution is checked before training starts.

A custom distribution that misses a protocol method, samples tasks that cannot be written to
a log, or returns support and query tensors of disagreeing shapes fails here, with one line
naming the task and the class -- not with a traceback deep inside the inner loop.
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from metarl.errors import UserError
from metarl.losses import LOSSES, METRICS
from metarl.protocol import RLDistribution, Split, SupervisedDistribution, TaskBatch

PROTOCOLS: dict[str, type] = {"supervised": SupervisedDistribution, "rl": RLDistribution}
"""A distribution's `kind` -> the Task protocol it must meet."""
REQUIRED = {
    "supervised": ("sample", "episodes", "build_model", "loss", "metric"),
    "rl": ("sample", "make_env"),
}
"""What each protocol asks for, in the order a refusal names what is missing."""


@runtime_checkable
class _Kinded(Protocol):
    kind: str


def check_distribution(dist: Any, name: str) -> None:
    """Raise `UserError` if `dist` does not meet the Task protocol of its kind."""
    where = f"task {name!r} ({type(dist).__module__}.{type(dist).__qualname__})"
    kind = dist.kind if isinstance(dist, _Kinded) else None
    if kind not in PROTOCOLS:
        raise UserError(f"{where}: kind = {kind!r}; expected one of {', '.join(PROTOCOLS)}")
    meets = isinstance(dist, PROTOCOLS[kind])  # (not narrowing `dist`: checked below)
    if not meets:
        missing = [m for m in REQUIRED[kind] if m not in dir(dist)]
        raise UserError(f"{where}: missing {', '.join(missing)} (the {kind} Task protocol)")
    if kind == "supervised":
        if dist.loss not in LOSSES:
            raise UserError(f"{where}: loss = {dist.loss!r}; expected one of {', '.join(LOSSES)}")
        if dist.metric not in METRICS:
            raise UserError(
                f"{where}: metric = {dist.metric!r}; expected one of {', '.join(METRICS)}"
            )
    rng = np.random.default_rng(0)
    tasks = dist.sample(2, rng, Split.TRAIN)
    if len(tasks) != 2:
        raise UserError(f"{where}: sample(2, rng, split) returned {len(tasks)} tasks")
    for task in tasks:
        try:
            json.dumps(task.to_dict())
        except (AttributeError, TypeError, ValueError) as e:
            raise UserError(
                f"{where}: sampled tasks must be serializable (to_dict() of plain values): {e}"
            ) from None
    if kind == "supervised":
        check_batch(dist.episodes(tasks, rng, support=2, query=2), 2, where)
    else:
        check_environment(dist, tasks[0], where)


def check_environment(dist: Any, task: Any, where: str) -> None:
    """Gymnasium's own checker on an env of the family with a sampled task set (its warnings
    stay warnings; a failed check is a `UserError`)."""
    import warnings

    import gymnasium
    from gymnasium.utils.env_checker import check_env

    env = dist.make_env(task)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # style advice (bounds, normalization), not errors
            check_env(env, skip_render_check=True)
    except (AssertionError, gymnasium.error.Error, TypeError, ValueError) as e:
        raise UserError(f"{where}: the environment fails Gymnasium's env checker: {e}") from None
    finally:
        env.close()


def check_batch(batch: Any, n: int, where: str) -> None:
    """Support and query tensors with a task axis of `n` and agreeing example shapes."""
    if not isinstance(batch, TaskBatch) or not all(isinstance(t, torch.Tensor) for t in batch):
        raise UserError(f"{where}: episodes() must return a TaskBatch of four tensors")
    for field, t in zip(TaskBatch._fields, batch, strict=True):
        if t.dim() < 2 or t.shape[0] != n:
            shape = tuple(t.shape)
            raise UserError(
                f"{where}: episodes() {field} has shape {shape}; expected [{n}, examples, ...]"
            )
    sx, sy, qx, qy = batch
    if sx.shape[1] != sy.shape[1] or qx.shape[1] != qy.shape[1]:
        raise UserError(
            f"{where}: episodes() x and y disagree on the number of examples (support "
            f"{tuple(sx.shape)} vs {tuple(sy.shape)}, query {tuple(qx.shape)} vs {tuple(qy.shape)})"
        )
    if sx.shape[2:] != qx.shape[2:] or sy.shape[2:] != qy.shape[2:]:
        raise UserError(
            f"{where}: episodes() support and query examples differ in shape "
            f"({tuple(sx.shape[2:])} vs {tuple(qx.shape[2:])})"
        )
