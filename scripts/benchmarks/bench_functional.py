"""learn2learn's MAML Omniglot example, one meta-iteration at a time: metarl.functional against
learn2learn's per-task `MAML(model).clone().adapt()` on the same tasks.

The setting is the example's (examples/vision/maml_omniglot.py): 5-way 1-shot, its
fully connected network (OmniglotFC, 784-256-128-64-64-5 with BatchNorm), second-order MAML
with 1 inner step of lr 0.5, 32 tasks a meta-batch, Adam 0.003 outside. Each side computes
the same meta-gradient from the same weights on the same tensors and takes its optimizer
step; the script checks that the two meta-gradients agree, then times them in alternating
rounds.

- `metarl.functional`: the tutorial's `fast_adapt` (docs/tutorials/maml-omniglot.md), every
  task of the meta-batch in one vmapped call;
- `learn2learn`: the example's loop, a `clone()` and `adapt()` per task, where
  `import learn2learn` works;
- `per-task loop`: the same per-task loop in plain PyTorch (a parameter dict per task, the
  inner step by `torch.autograd.grad(..., create_graph=True)`: what learn2learn's `MAML`
  does inside), timed in any case, so that the batched side always has a reference.

    python scripts/benchmarks/bench_functional.py                 # 3 rounds of 20 iterations
    python scripts/benchmarks/bench_functional.py --model conv   # metarl's Omniglot conv net
    python scripts/benchmarks/bench_functional.py --device cuda --iterations 100

Tasks come from metarl's Omniglot distribution where the data is installed (`metarl data
import omniglot PATH`, or METARL_DATA), else from random images of the same shape
(`--random-images`; the time per iteration does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import cast

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import metarl.functional as mf
from metarl.errors import UserError
from metarl.models import conv_classifier
from metarl.protocol import Split, SupervisedDistribution, TaskBatch
from metarl.registry import make_distribution

err = Console(stderr=True)


def omniglot_fc(input_size: int, output_size: int, sizes: tuple[int, ...] = (256, 128, 64, 64)):
    """learn2learn's OmniglotFC: Linear-BatchNorm-ReLU blocks and a linear classifier, the
    linear weights drawn from a normal truncated at 2 standard deviations (0.01)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = input_size
    for size in sizes:
        layers += [
            _fc_init(nn.Linear(width, size)),
            nn.BatchNorm1d(size, momentum=0.999, eps=1e-3, track_running_stats=False),
            nn.ReLU(),
        ]
        width = size
    layers.append(_fc_init(nn.Linear(width, output_size)))
    return nn.Sequential(*layers)


def _fc_init(linear: nn.Linear) -> nn.Linear:
    nn.init.trunc_normal_(linear.weight, std=0.01, a=-0.02, b=0.02)
    nn.init.zeros_(linear.bias)
    return linear


def meta_batches(n: int, tasks: int, ways: int, shots: int, random_images: bool) -> list[TaskBatch]:
    """`n` meta-batches of `tasks` 5-way episodes (support and query `shots` per class)."""
    rng = np.random.default_rng(0)
    if not random_images:
        try:
            dist = cast(
                SupervisedDistribution,
                make_distribution("omniglot", ways=ways, train_classes=1200, val_classes=100),
            )
            return [
                dist.episodes(dist.sample(tasks, rng, Split.TRAIN), rng, support=shots, query=shots)
                for _ in range(n)
            ]
        except UserError as e:
            err.print(f"[yellow]no Omniglot data ({e}); random images instead[/]")
    g = torch.Generator().manual_seed(0)
    k = ways * shots
    labels = torch.arange(ways).repeat_interleave(shots).expand(tasks, k)
    return [
        TaskBatch(torch.rand(tasks, k, 1, 28, 28, generator=g), labels,
                  torch.rand(tasks, k, 1, 28, 28, generator=g), labels)
        for _ in range(n)
    ]  # fmt: skip


def functional_step(model: nn.Module, batch: TaskBatch, lr: float, steps: int) -> None:
    """The tutorial's meta-training step: adapt all tasks, mean query loss, backward."""
    adapted = mf.adapt(
        model, batch.support_x, batch.support_y, loss=nn.functional.cross_entropy, steps=steps,
        lr=lr,
    )  # fmt: skip
    predictions = mf.predict(model, adapted, batch.query_x)
    error = nn.functional.cross_entropy(predictions.flatten(0, 1), batch.query_y.flatten())
    error.backward()


def per_task_step(model: nn.Module, batch: TaskBatch, lr: float, steps: int) -> None:
    """learn2learn's loop in plain PyTorch: per task a parameter dict adapted with a graph."""
    phi: dict[str, torch.Tensor] = dict(model.named_parameters())
    n = batch.num_tasks
    for i in range(n):
        w = dict(phi)
        for _ in range(steps):
            out = torch.func.functional_call(model, w, (batch.support_x[i],))
            loss = nn.functional.cross_entropy(out, batch.support_y[i])
            grads = torch.autograd.grad(loss, list(w.values()), create_graph=True)
            w = {k: p - lr * g for (k, p), g in zip(w.items(), grads, strict=True)}
        out = torch.func.functional_call(model, w, (batch.query_x[i],))
        (nn.functional.cross_entropy(out, batch.query_y[i]) / n).backward()


def learn2learn_step() -> Callable[[nn.Module, TaskBatch, float, int], None] | None:
    """The example's loop with learn2learn's MAML wrapper, if learn2learn imports."""
    try:
        import learn2learn as l2l
    except Exception as e:  # noqa: BLE001 - any failure to import means: not available here
        err.print(f"[yellow]learn2learn does not import here ({type(e).__name__}: {e})[/]")
        return None
    cache: dict[int, object] = {}

    def step(model: nn.Module, batch: TaskBatch, lr: float, steps: int) -> None:
        if id(model) not in cache:
            cache[id(model)] = l2l.algorithms.MAML(model, lr=lr, first_order=False)
        maml = cache[id(model)]
        n = batch.num_tasks
        for i in range(n):
            learner = maml.clone()  # type: ignore[attr-defined]
            for _ in range(steps):
                learner.adapt(nn.functional.cross_entropy(learner(batch.support_x[i]),
                                                          batch.support_y[i]))  # fmt: skip
            error = nn.functional.cross_entropy(learner(batch.query_x[i]), batch.query_y[i])
            (error / n).backward()

    return step


Step = Callable[[nn.Module, TaskBatch, float, int], None]


def gradient(step: Step, model: nn.Module, batch: TaskBatch, lr: float, steps: int) -> torch.Tensor:
    model.zero_grad()
    step(model, batch, lr, steps)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20, help="meta-iterations per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1, help="inner steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random-images", action="store_true")
    parser.add_argument(
        "--model",
        choices=["fc", "conv"],
        default="fc",
        help="fc: the example's OmniglotFC; conv: metarl's Omniglot conv net (64 filters)",
    )
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    ways, shots, lr, meta_lr = 5, 1, 0.5, 0.003
    batches = [b.to(device) for b in meta_batches(4, a.meta_batch, ways, shots, a.random_images)]
    sides: dict[str, Step] = {"metarl.functional": functional_step, "per-task loop": per_task_step}
    l2l = learn2learn_step()
    if l2l is not None:
        sides["learn2learn"] = l2l

    torch.manual_seed(42)
    build = (
        (lambda: omniglot_fc(28**2, ways))
        if a.model == "fc"
        else (lambda: conv_classifier(1, 28, ways))
    )
    reference = build().to(device)
    want = gradient(per_task_step, reference, batches[0], lr, a.steps)
    for name, step in sides.items():
        got = gradient(step, reference, batches[0], lr, a.steps)
        diff = float((got - want).abs().max() / want.abs().max())
        err.print(f"{name}: max |meta-gradient - per-task loop's| / max |.| = {diff:.1e}")

    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(a.rounds):
        for name, step in sides.items():
            torch.manual_seed(42)
            model = build().to(device)
            opt = torch.optim.Adam(model.parameters(), meta_lr)
            for i in range(2):  # warm-up (vmap's first trace, allocator)
                opt.zero_grad()
                step(model, batches[i % len(batches)], lr, a.steps)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(a.iterations):
                opt.zero_grad()
                step(model, batches[i % len(batches)], lr, a.steps)
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / a.iterations)

    table = Table(title=f"MAML Omniglot 5-way 1-shot, {a.model}, {a.meta_batch} tasks, {a.device}, "
                  f"{a.threads} thread(s)")  # fmt: skip
    table.add_column("side")
    table.add_column("ms / meta-iteration (best round)", justify="right")
    table.add_column("meta-iterations / s", justify="right")
    table.add_column("vs per-task loop", justify="right")
    base = min(times["per-task loop"])
    for name, ts in times.items():
        best = min(ts)
        table.add_row(name, f"{best * 1e3:.1f}", f"{1 / best:.1f}", f"{base / best:.2f}x")
    Console().print(table)
    if l2l is None:
        print("learn2learn: not timed (it does not import here; see above)")


if __name__ == "__main__":
    main()
