"""The gradient-based family on sine regression, and the speed of the batched MAML step.

Part 1 trains the sine recipes `sine` (Reptile), `sine-fomaml`, `sine-maml`, `sine-imaml` and
`sine-metasgd` -- one task distribution, one network, one evaluation protocol -- for the same
number of meta-iterations, then evaluates each on the same 1000 held-out tasks (fixed by
`eval.seed`): MSE after 1 and 10 steps of its own inner loop (Meta-SGD with its learned alpha)
and the training seconds.

Part 2 times one MAML meta-gradient (second order, `inner_steps` SGD steps, a meta-batch of
tasks) computed two ways in the same run: metarl's batched step
(`metarl.learners.second_order.unrolled_meta_gradient`: all tasks in one vmapped graph) and a
plain per-task `torch.autograd` loop, `higher`-style (tasks one after another, each unrolled
with `create_graph=True`, its query loss backpropagated to phi). Both give the same gradient
(the max difference is printed). It also reports the memory the second-order graph holds (the
bytes autograd saves for the backward, counted with `saved_tensors_hooks`) with all tasks at
once and with `maml_task_chunk` tasks at a time. The networks are the sine MLP and the Omniglot
conv net (on random 28x28 inputs: the cost depends on shapes only).

    python scripts/benchmarks/bench_algorithms.py                     # 2000 meta-iterations each
    python scripts/benchmarks/bench_algorithms.py --iterations 200 --speed-repeats 3   # smoke
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.func import functional_call

from metarl.config import OptimizerName, with_overrides
from metarl.curves import Curve
from metarl.learners.inner_loop import InnerLoop, InnerOptimizer
from metarl.learners.second_order import unrolled_meta_gradient
from metarl.models import conv_classifier, mlp
from metarl.progress import ProgressCallback
from metarl.protocol import Params, TaskBatch
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

CPU = torch.device("cpu")
RECIPES = {
    "reptile": "sine",
    "fomaml": "sine-fomaml",
    "maml": "sine-maml",
    "imaml": "sine-imaml",
    "metasgd": "sine-metasgd",
}


def train_and_evaluate(
    recipe_name: str, iterations: int, tasks: int, console: Console
) -> tuple[float, Curve]:
    """Train `recipe_name` for `iterations` and evaluate it on `tasks` held-out tasks."""
    recipe = resolve_recipe(recipe_name)
    recipe = with_overrides(
        recipe, "train", meta_iterations=iterations, checkpoint_every=10**9, log_every=10**9
    )
    with tempfile.TemporaryDirectory() as tmp:
        progress = ProgressCallback(console)
        trainer = MetaTrainer.start(recipe, Path(tmp) / "run", CPU, callbacks=[progress])
        started = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - started
        curve = trainer.meta.curve([0, 1, 10], tasks)
    return seconds, curve


def check_same_protocol() -> None:
    """The sine recipes share the task distribution, network and evaluation."""
    first = resolve_recipe(RECIPES["reptile"]).to_dict()
    for name in RECIPES.values():
        other = resolve_recipe(name).to_dict()
        for section in ("task", "model", "eval"):
            assert other[section] == first[section], f"{name}: [{section}] differs from sine's"


# -- part 2: the batched MAML step against a per-task loop -------------------------------------
def per_task_maml(
    model: nn.Module, loss: Callable, phi: Params, batch: TaskBatch, steps: int, lr: float
) -> Params:
    """MAML's summed meta-gradient, tasks one after another, plain autograd (`higher`-style)."""
    leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
    total = [torch.zeros_like(v) for v in leaves.values()]
    for i in range(batch.num_tasks):
        w = dict(leaves)
        for _ in range(steps):
            out = functional_call(model, w, (batch.support_x[i],))
            grads = torch.autograd.grad(
                loss(out, batch.support_y[i]), list(w.values()), create_graph=True
            )
            w = {k: p - lr * g for (k, p), g in zip(w.items(), grads, strict=True)}
        q = loss(functional_call(model, w, (batch.query_x[i],)), batch.query_y[i])
        for acc, g in zip(total, torch.autograd.grad(q, list(leaves.values())), strict=True):
            acc += g
    return dict(zip(leaves, total, strict=True))


def saved_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the tensors autograd saves for the backward while `fn` runs (the graph's
    memory; the peak is when the last inner step and the query loss have been built)."""
    count = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        count[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return count[0]


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (vmap's first trace)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def speed_case(
    name: str,
    model: nn.Module,
    loss_name: str,
    batch: TaskBatch,
    steps: int,
    lr: float,
    repeats: int,
    chunk: int,
) -> list[str]:
    phi = {k: v.detach() for k, v in model.named_parameters()}
    learner = InnerLoop(model, loss_name, InnerOptimizer(OptimizerName.SGD, lr))
    loss = nn.functional.mse_loss if loss_name == "mse" else nn.functional.cross_entropy
    batched = unrolled_meta_gradient(learner, phi, batch, steps, lr).grads
    looped = per_task_maml(model, loss, phi, batch, steps, lr)
    diff = max(float((batched[k] - looped[k]).abs().max()) for k in phi)
    t_batched = best_time(lambda: unrolled_meta_gradient(learner, phi, batch, steps, lr), repeats)
    t_loop = best_time(lambda: per_task_maml(model, loss, phi, batch, steps, lr), repeats)
    whole = saved_bytes(lambda: unrolled_meta_gradient(learner, phi, batch, steps, lr))
    chunked = saved_bytes(
        lambda: unrolled_meta_gradient(learner, phi, batch, steps, lr, task_chunk=chunk)
    )
    # with chunks, the graph of one chunk is freed before the next is built
    per_chunk = chunked / -(-batch.num_tasks // chunk)
    return [
        name,
        f"{batch.num_tasks} x {steps}",
        f"{t_loop * 1e3:,.1f}",
        f"{t_batched * 1e3:,.1f}",
        f"{t_loop / t_batched:.1f}x",
        f"{diff:.1e}",
        f"{whole / 2**20:,.1f}",
        f"{per_chunk / 2**20:,.1f} ({chunk})",
    ]


def synthetic_batch(
    tasks: int, support: int, query: int, shape: tuple[int, ...], classes: int
) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    if classes:
        ys = [torch.randint(0, classes, (tasks, n), generator=g) for n in (support, query)]
    else:
        ys = [torch.randn(tasks, n, 1, generator=g) for n in (support, query)]
    xs = [torch.randn(tasks, n, *shape, generator=g) for n in (support, query)]
    return TaskBatch(xs[0], ys[0], xs[1], ys[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=2000, help="meta-iterations each")
    parser.add_argument("--eval-tasks", type=int, default=1000)
    parser.add_argument("--speed-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-training", action="store_true", help="only part 2")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=150)

    if not args.skip_training:
        check_same_protocol()
        table = Table(
            title=f"Sine: {args.iterations} meta-iterations each, {args.eval_tasks} held-out tasks"
        )
        for col in ("algorithm", "recipe", "train s", "MSE@0", "MSE@1", "MSE@10"):
            table.add_column(col, justify="right" if col not in ("algorithm", "recipe") else "left")
        for algorithm, name in RECIPES.items():
            seconds, curve = train_and_evaluate(name, args.iterations, args.eval_tasks, console)
            cells = [f"{m:.3f} ± {c:.3f}" for m, c in zip(curve.mean, curve.ci95, strict=True)]
            table.add_row(algorithm, name, f"{seconds:.1f}", *cells)
            console.print(f"{algorithm}: {seconds:.1f} s, MSE@0/1/10 {', '.join(cells)}")
        console.print(table)

    torch.manual_seed(0)
    speed = Table(title="One MAML meta-gradient: per-task autograd loop vs metarl's batched step")
    for col in (
        "network",
        "tasks x steps",
        "loop ms",
        "batched ms",
        "speed-up",
        "max |diff|",
        "graph MiB",
        "graph MiB, chunked (k)",
    ):
        speed.add_column(col)
    sine = mlp(1, 1, (64, 64), "tanh")
    speed.add_row(
        *speed_case(
            "sine MLP 1-64-64-1",
            sine,
            "mse",
            synthetic_batch(32, 10, 10, (1,), 0),
            5,
            0.03,
            args.speed_repeats,
            8,
        )
    )
    conv = conv_classifier(1, 28, 5, filters=64, layers=4)
    speed.add_row(
        *speed_case(
            "Omniglot conv 4x64",
            conv,
            "cross_entropy",
            synthetic_batch(32, 5, 5, (1, 28, 28), 5),
            1,
            0.4,
            args.speed_repeats,
            8,
        )
    )
    console.print(speed)


if __name__ == "__main__":
    main()
