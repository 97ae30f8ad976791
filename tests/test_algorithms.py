"""Reptile and FOMAML against hand-computed references on a tiny model."""

from __future__ import annotations

import pytest
import torch

from metarl import algorithms
from metarl.config import OptimizerName
from metarl.learners.inner_loop import InnerLoop, InnerOptimizer
from metarl.outer.optimizers import apply_delta
from metarl.protocol import TaskBatch


def tiny_batch() -> TaskBatch:
    # two tasks, y = w x with w = 2 and w = -1; scalar model y_hat = a x + c
    sx = torch.tensor([[[1.0], [2.0]], [[1.0], [-1.0]]])
    sy = torch.stack([2 * sx[0], -1 * sx[1]])
    qx = torch.tensor([[[3.0]], [[0.5]]])
    qy = torch.stack([2 * qx[0], -1 * qx[1]])
    return TaskBatch(sx, sy, qx, qy)


def test_fomaml_meta_gradient_matches_hand_computation():
    model = torch.nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(0.5)
        model.bias.fill_(0.1)
    lr = 0.1
    learner = InnerLoop(model, "mse", InnerOptimizer(OptimizerName.SGD, lr))
    batch = tiny_batch()
    phi = {k: v.detach() for k, v in model.named_parameters()}
    adapted = learner.adapt(phi, batch, steps=1)
    grads, _ = learner.query_gradients(adapted, batch.query_x, batch.query_y)
    delta = {k: g.mean(0) for k, g in grads.items()}  # the mean of the per-task sum

    # by hand: one SGD step on the support MSE, then the query MSE gradient at W
    expected_a, expected_c = 0.0, 0.0
    for i in range(2):
        x, y = batch.support_x[i, :, 0].tolist(), batch.support_y[i, :, 0].tolist()
        a, c = 0.5, 0.1
        ga = sum(2 * (a * xi + c - yi) * xi for xi, yi in zip(x, y, strict=True)) / len(x)
        gc = sum(2 * (a * xi + c - yi) for xi, yi in zip(x, y, strict=True)) / len(x)
        a, c = a - lr * ga, c - lr * gc
        qx, qy = batch.query_x[i, 0, 0].item(), batch.query_y[i, 0, 0].item()
        expected_a += 2 * (a * qx + c - qy) * qx / 2
        expected_c += 2 * (a * qx + c - qy) / 2
    assert delta["weight"].item() == pytest.approx(expected_a, rel=1e-5)
    assert delta["bias"].item() == pytest.approx(expected_c, rel=1e-5)


def test_reptile_outer_step_is_interpolation():
    model = torch.nn.Linear(2, 1)
    phi = {k: v.detach().clone() for k, v in model.named_parameters()}
    adapted = {k: torch.stack([v + 1.0, v + 3.0]) for k, v in phi.items()}  # mean W = phi + 2
    delta = {k: v / 2 for k, v in algorithms.reptile_delta(phi, adapted).items()}
    opt = torch.optim.SGD(list(model.parameters()), lr=1.0)
    names = [n for n, _ in model.named_parameters()]
    apply_delta(opt, delta, names, lr=0.25)  # phi + 0.25 (mean W - phi)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), phi[n] + 0.5)


def test_linear_schedule_anneals_from_start_to_end():
    values = [algorithms.linear_schedule(1.0, 0.0, i, 5) for i in range(5)]
    assert values == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
