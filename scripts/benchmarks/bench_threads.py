"""Thread settings under CPU contention: sine meta-training throughput with 1 thread and with
torch's default (one per core), each with the other cores idle and with one busy process per
other core (a pure-Python spin loop, as another user's job would be).

torch's idle intra-op threads spin-wait for work; when a core they count on is taken by another
process, every parallel region waits for the descheduled thread. This measures how much that
costs here, so the README can say which `--threads` (or METARL_THREADS) to use on a shared
machine. Both settings are measured in the same run, alternating, and the table reports the
median of the rounds.

    python scripts/benchmarks/bench_threads.py                      # sine, 150 iterations, 3 rounds
    python scripts/benchmarks/bench_threads.py --iterations 40 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from metarl.config import with_overrides
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

SPIN = "while True: pass"


class Clock:
    """Meta-iterations per second after the first (warm-up) iteration."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_start(self, trainer: MetaTrainer) -> None:
        pass

    def on_iteration(self, trainer: MetaTrainer, metrics: dict[str, float]) -> None:
        self.times.append(time.perf_counter())

    def on_end(self, trainer: MetaTrainer) -> None:
        pass

    def rate(self) -> float:
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])


def measure(threads: int, busy: int, iterations: int, work: Path, tag: str) -> float:
    """Iterations/s of the sine recipe with `threads` torch threads and `busy` spinners."""
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    try:
        torch.set_num_threads(threads)
        recipe = with_overrides(
            resolve_recipe("sine"),
            "train",
            meta_iterations=iterations,
            checkpoint_every=iterations,
        )
        clock = Clock()
        MetaTrainer.start(recipe, work / tag, torch.device("cpu"), callbacks=[clock]).fit()
        return clock.rate()
    finally:
        for p in spinners:
            p.kill()
            p.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    default = torch.get_num_threads()
    settings = sorted({1, default})
    rates: dict[tuple[int, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for busy in (0, max(cores - 1, 1)):
                for threads in settings:
                    rate = measure(
                        threads, busy, args.iterations, Path(tmp), f"{r}-{busy}-{threads}"
                    )
                    rates.setdefault((threads, busy), []).append(rate)
                    print(
                        f"round {r}: {threads} thread(s), {busy} busy: {rate:.1f} it/s", flush=True
                    )
    print(f"\nsine meta-training, {cores} cores, median of {args.rounds} round(s) (it/s):\n")
    print("| torch threads | other cores idle | other cores busy | busy / idle |")
    print("|---|---|---|---|")
    busy_n = max(cores - 1, 1)
    for threads in settings:
        idle = statistics.median(rates[(threads, 0)])
        loaded = statistics.median(rates[(threads, busy_n)])
        label = f"{threads}" + (" (torch default)" if threads == default else "")
        print(f"| {label} | {idle:.1f} | {loaded:.1f} | {loaded / idle:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
