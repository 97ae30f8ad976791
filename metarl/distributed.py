"""Several processes, one meta-batch: torch.distributed under torchrun.

Every rank draws the same tasks and data for an iteration (they are a function of the seed and
the iteration, not of the rank) and adapts its own contiguous share of the meta-batch slots;
the sum of the per-task deltas is one `all_reduce`, divided by the global meta-batch. So the
tasks an iteration sees, and the parameters a run ends with, do not depend on how many ranks
split the work (up to float summation order). Rank 0 alone writes checkpoints, metrics and
progress; the metrics are the whole meta-batch's, every rank's combined in the same
all-reduce (`MetricsLayout`).

    torchrun --nproc-per-node 2 -m metarl train omniglot-5way-1shot --out runs/omni

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; without them this is one process
and nothing here does anything.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from metarl.errors import UserError
from metarl.protocol import AcrossRanks

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class World:
    """This process's place among the ranks."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def slots(self, n: int) -> slice:
        """This rank's contiguous share of `n` meta-batch slots (the first `n % size` ranks
        take one more)."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def all_reduce_sum(self, tensors: Params) -> Params:
        """Elementwise sum over ranks, as one collective on one flat buffer of the widest
        dtype among the tensors; each comes back in its own dtype. (With the float64 metrics
        riding along, float32 deltas are summed in float64 and rounded back: for two ranks,
        one addition, that is float32's own sum bit for bit.)"""
        if self.size == 1:
            return tensors
        names = list(tensors)
        flat = torch.cat([tensors[k].reshape(-1) for k in names])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out, offset = {}, 0
        for k in names:
            n = tensors[k].numel()
            out[k] = flat[offset : offset + n].view_as(tensors[k]).to(tensors[k].dtype)
            offset += n
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


@dataclass(frozen=True)
class MetricsLayout:
    """An iteration's metrics laid out as one flat float64 tensor (names in sorted order) for
    the sum over ranks that carries the deltas, and read back as the whole meta-batch's:
    what one rank adapting every task would have logged, up to float summation order.

    Each rank adapts its share of the tasks, so its metrics describe that share. How a name
    combines is its learner's `metrics_across_ranks` (`AcrossRanks`; a name not listed is a
    mean over the tasks): a `MEAN` travels as value x this rank's task count and comes back
    divided by the ranks' total count, a `SUM` is summed, a `SAME` travels twice (rank 0's
    value alone, and every rank's) so rank 0's is kept and checked against every rank's, and
    an `OWN` (a timing of this process) does not travel: each rank keeps its own and rank 0's
    is logged. The names and kinds themselves travel as a checksum, checked like a `SAME`: every
    rank must report the same metrics (the same learner on the same distribution does).

    One rank takes no part: its metrics are logged as they are, bit for bit (`of` gives
    None), as the one-rank sum is the identity.

    Examples:
        Two ranks, 3 tasks and 1 (summed by hand here, as the all-reduce would):

        >>> from metarl.protocol import AcrossRanks
        >>> kinds = {"env_steps": AcrossRanks.SUM}
        >>> ranks = [({"loss": 1.0, "env_steps": 30.0}, 3), ({"loss": 5.0, "env_steps": 10.0}, 1)]
        >>> layouts = [
        ...     MetricsLayout.of(m, kinds, n, World(rank, 2)) for rank, (m, n) in enumerate(ranks)
        ... ]
        >>> total = sum(layout.values for layout in layouts)
        >>> layouts[0].combined(total, ranks[0][0])
        {'loss': 2.0, 'env_steps': 40.0}
    """

    names: tuple[str, ...]
    """The metrics that travel, sorted (the same order on every rank)."""
    kinds: tuple[AcrossRanks, ...]
    values: torch.Tensor
    """This rank's part of the sum: a task count, the key checksum twice, then each name's
    slots (`SAME`: two)."""
    size: int
    """The number of ranks (a `SAME` is checked against `size` times rank 0's)."""

    @classmethod
    def of(
        cls,
        metrics: Mapping[str, float],
        across: Mapping[str, AcrossRanks],
        tasks: int,
        world: World,
        device: torch.device | str = "cpu",
    ) -> MetricsLayout | None:
        """This rank's metrics of its `tasks` tasks laid out for the sum (None for one rank).

        Args:
            metrics: this rank's metrics of the iteration, by name.
            across: how names combine (`MetaLearner.metrics_across_ranks`); others: `MEAN`.
            tasks: the number of tasks this rank adapted.
            world: this rank's place.
            device: where the tensor goes (the collective's device).
        """
        if world.size == 1:
            return None
        kinds = {k: across.get(k, AcrossRanks.MEAN) for k in sorted(metrics)}
        names = tuple(k for k, kind in kinds.items() if kind is not AcrossRanks.OWN)
        kind_of = tuple(kinds[k] for k in names)
        checksum = float(zlib.crc32(repr(list(zip(names, kind_of, strict=True))).encode()))
        main = float(world.is_main)
        slots = [float(tasks), main * checksum, checksum]
        for name, kind in zip(names, kind_of, strict=True):
            value = float(metrics[name])
            if kind is AcrossRanks.MEAN:
                slots.append(value * tasks)
            elif kind is AcrossRanks.SUM:
                slots.append(value)
            else:
                slots += [main * value, value]
        values = torch.tensor(slots, dtype=torch.float64, device=device)
        return cls(names, kind_of, values, world.size)

    def combined(self, total: torch.Tensor, local: Mapping[str, float]) -> dict[str, float]:
        """The whole meta-batch's metrics from the sum over ranks of every rank's `values`,
        in `local`'s order (this rank's metrics, whose `OWN` names are kept as they are).

        Raises:
            RuntimeError: the ranks reported other metrics, or a `SAME` metric differs
                between ranks (a learner that declared it wrongly).
        """
        sums = total.tolist()
        tasks, checksum = sums[0], sums[1]
        _check_same("the metrics' names (a checksum)", checksum, sums[2], self.size)
        out, at = {}, 3
        for name, kind in zip(self.names, self.kinds, strict=True):
            if kind is AcrossRanks.MEAN:
                out[name], at = sums[at] / tasks, at + 1
            elif kind is AcrossRanks.SUM:
                out[name], at = sums[at], at + 1
            else:
                _check_same(f"metric {name!r}", sums[at], sums[at + 1], self.size)
                out[name], at = sums[at], at + 2
        return {k: out.get(k, v) for k, v in local.items()}


def _check_same(what: str, first: float, total: float, size: int) -> None:
    """Refuse a value that is not the same on every rank: `total` (the sum over ranks) must
    be `size` times rank 0's `first`, to the rounding of the sum (skipped where not finite:
    the trainer's divergence check reports those)."""
    finite = math.isfinite(first) and math.isfinite(total)
    if finite and not math.isclose(total, size * first, rel_tol=1e-9, abs_tol=0.0):
        raise RuntimeError(
            f"{what}: not the same on every rank, though declared so (AcrossRanks.SAME): "
            f"rank 0 has {first!r}, the mean over the {size} ranks is {total / size!r}"
        )


def world_from_env(device: torch.device, timeout_s: float = 300.0) -> tuple[World, torch.device]:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on
    CUDA), with a timeout on collectives so a dead rank ends the run instead of hanging it.
    Returns the world and this rank's device (`cuda:LOCAL_RANK` on GPUs)."""
    size = _env_int("WORLD_SIZE", "1", 1)
    if size <= 1:
        return World(), device
    if "RANK" not in os.environ:
        raise UserError(f"WORLD_SIZE={size} is set but RANK is not: start ranks with torchrun")
    rank = _env_int("RANK", "0", 0)
    if rank >= size:
        raise UserError(f"RANK={rank}: expected 0 to WORLD_SIZE - 1 = {size - 1}")
    if device.type == "cuda":
        local = _env_int("LOCAL_RANK", "0", 0)
        if local >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK={local}: this machine has {torch.cuda.device_count()} GPU(s)"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                backend, rank=rank, world_size=size, timeout=timedelta(seconds=timeout_s)
            )
        except (RuntimeError, ValueError) as e:
            # c10 errors append a C++ backtrace to the message: its first line says it all
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"could not join the process group ({backend}): {first}") from None
    return World(rank, size), device


def _env_int(name: str, default: str, minimum: int) -> int:
    """An integer environment variable torchrun sets, checked."""
    text = os.environ.get(name, default)
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"{name}={text!r}: expected an integer >= {minimum}") from None
    if value < minimum:
        raise UserError(f"{name}={value}: expected an integer >= {minimum}")
    return value


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
