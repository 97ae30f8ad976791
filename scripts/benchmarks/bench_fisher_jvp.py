"""TRPO's Fisher-vector product two ways on HalfCheetahDir's recipe sizes: three
Hessian-vector products ("hvp", reverse over reverse) against forward mode with the KL's
closed-form Hessian ("jvp", `metarl.rl.fisher`), interleaved A/B/A/B in one process.

One second-order MAML-RL iteration of `tasks/halfcheetah-dir-maml.toml` (its meta-batch,
episodes, horizon, policy and Fisher fraction) from the recipe's initial policy, then, per
round and per method in turn on that same batch: building the product (the graphs it keeps),
one product, and the whole TRPO step (CG, step size, line search). Prints the medians, the
ratio hvp / jvp, and how far apart the two methods' products and steps are. One torch
thread and `metarl.allocator.keep_freed_memory`, as `metarl train` runs.

    python scripts/benchmarks/bench_fisher_jvp.py [--rounds 3] [--tasks 40] [--fraction 1] [--parts]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor
from torch.distributions import kl_divergence

from metarl.allocator import keep_freed_memory
from metarl.config import load_recipe_file
from metarl.learners import build_meta_learner
from metarl.learners.maml_rl import MAMLRLMetaLearner
from metarl.protocol import Split
from metarl.rl import fisher, trpo
from metarl.rl.fisher import FISHER_METHODS
from metarl.rl.maml import MetaObjective, _grads, episode_mean
from metarl.rl.policy import Params

RECIPE = Path(__file__).resolve().parents[2] / "tasks" / "halfcheetah-dir-maml.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (medians over them)")
    parser.add_argument("--tasks", type=int, default=0, help="meta-batch (0: the recipe's)")
    parser.add_argument("--products", type=int, default=3, help="products timed per round")
    parser.add_argument(
        "--fraction", type=float, default=0.0, help="Fisher fraction (0: the recipe's)"
    )
    parser.add_argument("--parts", action="store_true", help="also time each product's parts")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(1)
    recipe = load_recipe_file(RECIPE)
    n_tasks = args.tasks or recipe.train.meta_batch
    learner = build_meta_learner(recipe, torch.device("cpu"))
    assert isinstance(learner, MAMLRLMetaLearner)
    fraction = args.fraction or learner.settings.trpo_fisher_fraction
    rng = np.random.default_rng(0)
    tasks = learner.dist.sample(n_tasks, rng, Split.TRAIN)
    phi = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
    adaptation = learner.adapt(phi, tasks, rng, slice(None))
    delta = learner.meta_gradient(adaptation)
    assert delta.objective is not None
    objective = delta.objective.objective
    gradient = {k: g / n_tasks for k, g in delta.gradient.items()}
    names = list(phi)

    times: dict[str, dict[str, list[float]]] = {
        m: {"build": [], "product": [], "step": []} for m in FISHER_METHODS
    }
    products: dict[str, torch.Tensor] = {}
    steps: dict[str, torch.Tensor] = {}
    for _ in range(args.rounds):
        for method in FISHER_METHODS:  # A, B, A, B, ...
            tick = time.perf_counter()
            product = objective.kl_hessian(phi, fraction, method)
            times[method]["build"].append(time.perf_counter() - tick)
            for _ in range(args.products):
                tick = time.perf_counter()
                out = product(gradient)
                times[method]["product"].append(time.perf_counter() - tick)
            products[method] = torch.cat([out[k].detach().reshape(-1) for k in names])
            del product, out
            settings = trpo.TRPOSettings(fisher_fraction=fraction, fisher_method=method)
            tick = time.perf_counter()
            new_phi, metrics = trpo.trust_region_step(
                phi, objective, gradient, lambda x: x, n_tasks, settings
            )
            times[method]["step"].append(time.perf_counter() - tick)
            steps[method] = torch.cat([(new_phi[k] - phi[k]).reshape(-1) for k in names])

    console = Console(width=140)
    load = os.getloadavg()
    table = Table(
        title=f"TRPO's Fisher product, HalfCheetahDir ({RECIPE.name}): {n_tasks} tasks x "
        f"{learner.settings.n_envs} episodes x {learner.settings.n_steps} steps, Fisher fraction "
        f"{fraction:g}, 1 torch thread, {args.rounds} interleaved rounds"
    )
    for column in ("part", "hvp median s", "jvp median s", "hvp / jvp", "hvp runs", "jvp runs"):
        table.add_column(column, justify="right")
    labels = {
        "build": "build (graphs kept)",
        "product": "one Fisher product",
        "step": "whole TRPO step",
    }
    for part, label in labels.items():
        a, b = (statistics.median(times[m][part]) for m in FISHER_METHODS)
        table.add_row(
            label,
            f"{a:.3f}",
            f"{b:.3f}",
            f"{a / b:.2f}x",
            " ".join(f"{t:.2f}" for t in times["hvp"][part]),
            " ".join(f"{t:.2f}" for t in times["jvp"][part]),
        )
    console.print(table)

    def relative(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).norm() / b.norm())

    console.print(
        f"jvp against hvp: Fisher product relative difference "
        f"{relative(products['jvp'], products['hvp']):.2e}; TRPO step relative difference "
        f"{relative(steps['jvp'], steps['hvp']):.2e} (jvp's line search: "
        f"{metrics['trpo_step_fraction']:g} of the full step, KL {metrics['trpo_kl']:.5f})"
    )
    if args.parts:
        console.print(parts_table(objective, phi, fraction, args.rounds))
    console.print(
        f"Load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} while it ran: where "
        "other work held the cores, the seconds are those of a loaded machine and only the "
        "ratio (same process, interleaved rounds) counts."
    )


def parts_table(objective: MetaObjective, phi: Params, fraction: float, rounds: int) -> Table:
    """Each piece of one product, both ways, interleaved: the inner step's H w by a kept
    graph's Hessian-vector product, by forward over reverse, and by `torch.func.linearize`
    of the inner gradient (traced once, then only the tangents); the judged policy's part by
    the KL's Hessian-vector product, or by its distribution parameters' Jacobian-vector
    product (plain or linearized), the closed-form M and one vector-Jacobian product."""
    n = objective.n_tasks
    pre = objective.pre_steps[0].head(fraction)
    post = objective.post.head(fraction)
    old = objective.policy_fn_old(post)
    at = {k: v.detach().unsqueeze(0).repeat(n, *([1] * v.dim())) for k, v in phi.items()}
    gen = torch.Generator().manual_seed(0)
    w = {k: torch.randn(v.shape, generator=gen) for k, v in at.items()}

    def inner(p: Params) -> Tensor:
        return objective.inner_loss(objective.policy_fn, p, pre).sum()

    def outputs(p: Params) -> tuple[Tensor, ...]:
        return fisher.distribution_parameters(objective.policy_fn(p, post.obs))

    leaves = {k: v.clone().requires_grad_() for k, v in at.items()}
    with torch.enable_grad():
        inner_grads = _grads(inner(leaves), leaves, create_graph=True)
        dist = objective.policy_fn(leaves, post.obs)
        kl = episode_mean(kl_divergence(dist, old), post.mask).sum()
        kl_grads = _grads(kl, leaves, create_graph=True)
        head = fisher.OutputHead.of(dist, old, post.obs, post.mask, leaves, 1.0)

    def hvp(grads: Params) -> None:
        used = [k for k in leaves if grads[k].requires_grad]
        dot = torch.stack([(grads[k] * w[k]).sum() for k in used]).sum()
        torch.autograd.grad(dot, [leaves[k] for k in used], retain_graph=True)

    tick = time.perf_counter()
    _, inner_linear = torch.func.linearize(torch.func.grad(inner), at)
    traced = {"inner step: linearize's trace (once per TRPO step)": time.perf_counter() - tick}
    tick = time.perf_counter()
    _, output_linear = torch.func.linearize(outputs, at)
    traced["policy outputs: linearize's trace (once per TRPO step)"] = time.perf_counter() - tick
    parts = {
        "inner step H w: HVP on the kept graph (hvp)": lambda: hvp(inner_grads),
        "inner step H w: forward over reverse (jvp)": lambda: fisher.inner_step_jvp(inner, at, w),
        "inner step H w: linearized forward over reverse": lambda: inner_linear(w),
        "judged policy: the KL's HVP (hvp)": lambda: hvp(kl_grads),
        "judged policy: JVP + M + VJP (jvp)": lambda: head.gauss_newton(objective.policy_fn, w),
        "judged policy: its outputs' JVP alone": lambda: fisher.output_jvp(outputs, at, w),
        "judged policy: its outputs' linearized JVP alone": lambda: output_linear(w),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, part in parts.items():
            tick = time.perf_counter()
            part()
            times[name].append(time.perf_counter() - tick)
    table = Table(title=f"One product's parts, {n} tasks, Fisher fraction {fraction:g}")
    table.add_column("part")
    table.add_column("median s", justify="right")
    for name, runs in times.items():
        table.add_row(name, f"{statistics.median(runs):.4f}")
    for name, seconds in traced.items():
        table.add_row(name, f"{seconds:.4f}")
    return table


if __name__ == "__main__":
    main()
