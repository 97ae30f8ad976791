"""torch's CPU `tanh` against `sigmoid` and the identity tanh(x) = 2 sigmoid(2x) - 1.

Why this exists: until 2026-12-04 the batched RL policy (`metarl/rl/policy.py`) computed its
tanh layers as `2 * sigmoid(2 * x) - 1`, on a 2026-11 measurement (under load) that torch's
`tanh` cost 6x a `sigmoid`. On this machine's torch 2.13 that no longer holds, and the
identity costs three elementwise passes over the activations where `tanh` costs one, which
the second-order RL updates pay many times over (`tanh_backward`, its double backward).

Times each form on the shapes the RL learners see: one rollout step (`[40 tasks, 20 envs,
64]`), the PPO minibatch of the old note (`[20, 100, 64]`), and a MAML-RL update's batch
(`[40, 4000, 64]`: 20 episodes of 200 steps per task), forward alone and forward + backward +
double backward (what a meta-gradient through a VPG step does), on 1 and 2 torch threads.

    python scripts/benchmarks/bench_activation.py [--markdown] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor

SHAPES = {"rollout step": (40, 20, 64), "PPO minibatch": (20, 100, 64), "update": (40, 4000, 64)}


def sigmoid_tanh(x: Tensor) -> Tensor:
    return torch.sigmoid(2 * x) * 2 - 1


FORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "2 sigmoid(2x) - 1": sigmoid_tanh,
    "sigmoid (reference)": torch.sigmoid,
}


def forward_s(f: Callable[[Tensor], Tensor], x: Tensor, reps: int) -> float:
    with torch.no_grad():
        f(x)
        start = time.perf_counter()
        for _ in range(reps):
            f(x)
    return (time.perf_counter() - start) / reps


def second_order_s(f: Callable[[Tensor], Tensor], x: Tensor, reps: int) -> float:
    """f, its gradient with a graph, and the gradient of that gradient's square norm."""

    def once() -> None:
        leaf = x.detach().requires_grad_()
        (g,) = torch.autograd.grad(f(leaf).square().sum(), leaf, create_graph=True)
        torch.autograd.grad(g.square().sum(), leaf)

    once()
    start = time.perf_counter()
    for _ in range(reps):
        once()
    return (time.perf_counter() - start) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="median over this many rounds")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for shape_name, shape in SHAPES.items():
            x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
            reps = max(3, min(2000, int(4e7 // x.numel())))
            for form, f in FORMS.items():
                fw = sorted(forward_s(f, x, reps) for _ in range(args.rounds))[args.rounds // 2]
                so = sorted(second_order_s(f, x, max(1, reps // 4)) for _ in range(args.rounds))
                rows.append((threads, shape_name, shape, form, fw, so[args.rounds // 2]))
    title = f"activation cost, torch {torch.__version__}, median of {args.rounds} rounds"
    if args.markdown:
        print(f"{title}\n")
        print("| threads | batch | shape | form | forward ms | 2nd-order ms |")
        print("|---|---|---|---|---|---|")
        for t, name, shape, form, fw, so in rows:
            print(f"| {t} | {name} | {list(shape)} | {form} | {fw * 1e3:.3f} | {so * 1e3:.2f} |")
        return
    table = Table(title=title)
    for column in ("threads", "batch", "shape", "form", "forward ms", "2nd-order ms"):
        table.add_column(column, justify="right" if "ms" in column else "left")
    for t, name, shape, form, fw, so in rows:
        table.add_row(str(t), name, str(list(shape)), form, f"{fw * 1e3:.3f}", f"{so * 1e3:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
