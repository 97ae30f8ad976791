"""Keep freed tensor memory in the process (glibc's malloc), so large tensors are not paid
for in page faults again at every operation.

A meta-RL update works on tensors of tens of MB (`[tasks, episodes, steps, 64]` activations of
HalfCheetah's 40 x 20 x 200 batch are 40 MB each). glibc serves any allocation above its mmap
threshold (at most 32 MB) with a fresh `mmap` and returns it to the kernel on free, so every
such temporary costs one page fault per page, each zeroing the page, at every operation.
Telling malloc never to mmap and never to trim the heap keeps freed blocks for the next
tensor of the same size; torch has no caching allocator on CPU that would do it. What it
saves is measured by `scripts/benchmarks/bench_trpo.py` (docs/results.md, "The TRPO step's
cost").

Peak memory is unchanged (the heap grows to the same peak); memory freed after the peak is
kept by the process until it exits. Only glibc (Linux) has `mallopt`; elsewhere, or with
`METARL_MALLOC=system`, this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_applied = False


def keep_freed_memory() -> bool:
    """Apply the setting once per process; True where glibc took it."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("METARL_MALLOC") == "system":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the trim threshold is an int, so at most 2 GiB - 1
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


__all__ = ["keep_freed_memory"]
