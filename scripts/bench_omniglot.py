"""Omniglot 5-way 1-shot: metarl's meta-iterations/s against a straightforward PyTorch Reptile.

The reference is what most users write first: for every task of the meta-batch, one
`copy.deepcopy` of the model and a fresh Adam (lr 1e-3, beta1 = 0), 5 inner iterations on
minibatches of 10 of the task's 50 training images (10 shots x 5 classes), tasks one after
another, then phi <- phi + eps * mean(W - phi). Same network, same data, same recipe, same
threads, side by side in one run. The ceiling is the same network trained with one shared
set of weights on one batch of 250 images (the image-steps of one meta-iteration): a
meta-learner cannot beat that, since per-task weights only add work.

    python scripts/bench_omniglot.py                 # 100 meta-iterations each
    python scripts/bench_omniglot.py --iterations 300 --threads 2

Needs the Omniglot data (`metarl data import omniglot PATH`, or METARL_DATA pointing at it).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path
from typing import cast

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from metarl.config import with_overrides
from metarl.meta_learners import SupervisedMetaLearner, build_meta_learner
from metarl.protocol import Split, task_rng
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

CPU = torch.device("cpu")


def reference_rate(meta: SupervisedMetaLearner, iterations: int, seed: int) -> float:
    """Meta-iterations/s of the deepcopy-per-task Reptile on the recipe's episodes."""
    t = meta.recipe.train
    model = meta.model
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for iteration in range(iterations):
        rng = task_rng(seed, Split.TRAIN, iteration)
        tasks = meta.dist.sample(t.meta_batch, rng, Split.TRAIN)
        batch = meta.dist.episodes(tasks, rng, support=t.support_shots, query=0)
        phi = {k: v.detach().clone() for k, v in model.state_dict().items()}
        new = {k: torch.zeros_like(v) for k, v in phi.items()}
        for i in range(t.meta_batch):
            task_model = copy.deepcopy(model)
            opt = torch.optim.Adam(task_model.parameters(), lr=t.inner_lr, betas=(0.0, 0.999))
            x, y = batch.support_x[i], batch.support_y[i]
            for step in range(t.inner_steps):
                idx = (torch.arange(t.inner_batch) + step * t.inner_batch) % len(x)
                opt.zero_grad()
                loss_fn(task_model(x[idx]), y[idx]).backward()
                opt.step()
            for k, v in task_model.state_dict().items():
                new[k] += v.detach() / t.meta_batch
        eps = 1.0 - iteration / iterations
        model.load_state_dict({k: phi[k] + eps * (new[k] - phi[k]) for k in phi})
    return iterations / (time.perf_counter() - start)


def metarl_rate(recipe_name: str, iterations: int) -> float:
    """Meta-iterations/s of `metarl train` on the recipe (the trainer's own loop)."""
    recipe = with_overrides(
        resolve_recipe(recipe_name), "train", meta_iterations=iterations, checkpoint_every=10**9
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = MetaTrainer.start(recipe, Path(tmp) / "run", CPU)
        trainer.step()  # warm-up (first-call allocations)
        start = time.perf_counter()
        for _ in range(iterations - 1):
            trainer.step()
        return (iterations - 1) / (time.perf_counter() - start)


def ceiling_rate(meta: SupervisedMetaLearner, repeats: int) -> tuple[float, float]:
    """Meta-iterations/s of the shared-weight equivalent: inner_steps x meta_batch x
    inner_batch images per meta-iteration trained as plain Adam steps on one network. Also
    returns its GFLOP/s (forward + backward counted as 3x the forward's multiply-adds x 2)."""
    t = meta.recipe.train
    model = copy.deepcopy(meta.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.999))
    images = t.meta_batch * t.inner_batch
    x = torch.rand(images, 1, 28, 28)
    y = torch.randint(0, 5, (images,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(repeats * t.inner_steps):
        step()
    seconds = (time.perf_counter() - start) / repeats
    macs = 0
    size = 28
    for layer in model:
        if isinstance(layer, torch.nn.Conv2d):
            size = (size + 1) // 2
            macs += layer.in_channels * layer.out_channels * 9 * size * size
        elif isinstance(layer, torch.nn.Linear):
            macs += layer.in_features * layer.out_features
    flops = 3 * 2 * macs * images * t.inner_steps
    return 1 / seconds, flops / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="omniglot-5way-1shot")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=120)

    recipe = resolve_recipe(args.recipe)
    meta = cast(SupervisedMetaLearner, build_meta_learner(recipe, CPU))
    console.print(f"{args.recipe}: {args.iterations} meta-iterations each, {args.threads} threads")
    ceiling, gflops = ceiling_rate(meta, repeats=max(args.iterations // 5, 5))
    ref = reference_rate(meta, args.iterations, seed=int(np.int64(recipe.train.seed)))
    ours = metarl_rate(args.recipe, args.iterations)

    table = Table(title=f"{args.recipe}, meta-iterations per second ({args.threads} threads)")
    for col in ("", "meta-it/s", "vs reference", "of ceiling"):
        table.add_column(col, justify="right")
    table.add_row(
        "reference (deepcopy + fresh Adam per task)", f"{ref:.2f}", "1.00x", f"{ref / ceiling:.0%}"
    )
    table.add_row(
        "metarl (vmapped tasks)", f"{ours:.2f}", f"{ours / ref:.2f}x", f"{ours / ceiling:.0%}"
    )
    table.add_row(
        f"ceiling: shared weights, same image-steps ({gflops:.0f} GFLOP/s)",
        f"{ceiling:.2f}",
        f"{ceiling / ref:.2f}x",
        "100%",
    )
    console.print(table)


if __name__ == "__main__":
    main()
