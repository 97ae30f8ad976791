"""Several processes, one meta-batch: torch.distributed under torchrun.

Every rank draws the same tasks and data for an iteration (they are a function of the seed and
the iteration, not of the rank) and adapts its own contiguous share of the meta-batch slots;
the sum of the per-task deltas is one `all_reduce`, divided by the global meta-batch. So the
tasks an iteration sees, and the parameters a run ends with, do not depend on how many ranks
split the work (up to float summation order). Rank 0 alone writes checkpoints, metrics and
progress.

    torchrun --nproc-per-node 2 -m metarl train omniglot-5way-1shot --out runs/omni

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; without them this is one process
and nothing here does anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from metarl.errors import UserError

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
        """Elementwise sum over ranks, as one collective on one flat buffer."""
        if self.size == 1:
            return tensors
        names = list(tensors)
        flat = torch.cat([tensors[k].reshape(-1) for k in names])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out, offset = {}, 0
        for k in names:
            n = tensors[k].numel()
            out[k] = flat[offset : offset + n].view_as(tensors[k])
            offset += n
        return out

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


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
