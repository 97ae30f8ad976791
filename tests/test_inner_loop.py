"""The vmapped inner loop equals a plain per-task loop with torch.optim."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call, grad, vmap

from metarl.learners.inner_loop import stack
from tests.conftest import learner_for


def per_task_reference(model, batch, name, lr, steps, inner_batch):
    """Each task on its own: a deep copy of the model and a fresh torch.optim optimizer."""
    results = []
    for i in range(batch.num_tasks):
        m = copy.deepcopy(model)
        opt = (
            torch.optim.SGD(m.parameters(), lr=lr)
            if name == "sgd"
            else torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999))
        )
        x, y = batch.support_x[i], batch.support_y[i]
        size = x.shape[0]
        b = inner_batch if 0 < inner_batch < size else size
        for t in range(steps):
            idx = (torch.arange(b) + t * b) % size
            opt.zero_grad()
            ((m(x[idx]) - y[idx]) ** 2).mean().backward()
            opt.step()
        results.append({k: v.detach().clone() for k, v in m.named_parameters()})
    return results


@pytest.mark.parametrize("name,lr", [("sgd", 0.02), ("adam", 0.01)])
@pytest.mark.parametrize("inner_batch", [0, 1, 4])
def test_vmapped_adaptation_equals_per_task_loop(small_mlp, sine_batch, name, lr, inner_batch):
    learner = learner_for(small_mlp, name, lr, inner_batch)
    phi = {k: v.detach() for k, v in small_mlp.named_parameters()}
    adapted = learner.adapt(phi, sine_batch, steps=7)
    expected = per_task_reference(small_mlp, sine_batch, name, lr, 7, inner_batch)
    for i, ref in enumerate(expected):
        for k, v in ref.items():
            torch.testing.assert_close(adapted[k][i], v, rtol=1e-4, atol=1e-5)
    # and adaptation really moved the parameters
    assert not torch.allclose(adapted["0.weight"][0], phi["0.weight"])


def test_summed_loss_gradients_equal_vmap_grad(small_mlp, sine_batch):
    """The learner's one-backward trick gives the same per-task gradients as vmap(grad)."""
    learner = learner_for(small_mlp, "sgd", 0.01)
    params = stack({k: v.detach() for k, v in small_mlp.named_parameters()}, sine_batch.num_tasks)
    params = {k: v + 0.01 * torch.randn_like(v) for k, v in params.items()}  # distinct per task

    def loss(p, x, y):
        return ((functional_call(small_mlp, p, (x,)) - y) ** 2).mean()

    expected = vmap(grad(loss))(params, sine_batch.support_x, sine_batch.support_y)
    got, losses = learner.loss_and_grad(params, sine_batch.support_x, sine_batch.support_y)
    for k in expected:
        torch.testing.assert_close(got[k], expected[k], rtol=1e-5, atol=1e-6)
    assert losses.shape == (sine_batch.num_tasks,)


def test_adapt_steps_yields_every_step(small_mlp, sine_batch):
    learner = learner_for(small_mlp, "sgd", 0.02)
    phi = {k: v.detach() for k, v in small_mlp.named_parameters()}
    seen = list(learner.adapt_steps(phi, sine_batch.support_x, sine_batch.support_y, 3))
    assert len(seen) == 4
    torch.testing.assert_close(seen[0][0]["0.weight"][0], phi["0.weight"])
    assert seen[-1][1] is None
    losses = torch.stack([loss for _, loss in seen[:-1]])
    assert (losses[-1] < losses[0]).all()  # three SGD steps lower every task's support loss


def test_amp_adaptation_tracks_float32_on_a_conv_net():
    """bfloat16 autocast (train.amp) adapts a BatchNorm conv net like float32 does (within
    the ~10% that bfloat16 gradients through four BatchNorm layers differ by), and keeps
    the parameters in float32."""
    from metarl.learners.inner_loop import InnerLoop, InnerOptimizer
    from metarl.models import conv_classifier
    from metarl.protocol import TaskBatch

    torch.manual_seed(0)
    model = conv_classifier(1, 28, 5, filters=16)
    x = torch.rand(3, 10, 1, 28, 28)
    y = torch.randint(0, 5, (3, 10))
    batch = TaskBatch(x, y, x, y)
    phi = {k: v.detach() for k, v in model.named_parameters()}
    optimizer = InnerOptimizer("sgd", 0.01)
    exact = InnerLoop(model, "cross_entropy", optimizer).adapt(phi, batch, steps=5)
    mixed = InnerLoop(model, "cross_entropy", optimizer, amp=True).adapt(phi, batch, steps=5)
    for k, v in exact.items():
        assert mixed[k].dtype == torch.float32
        moved = (v - phi[k]).norm()
        assert moved > 0 and (mixed[k] - v).norm() < 0.25 * moved, k
