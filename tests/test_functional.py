"""`metarl.functional` in a user's own loop: the same numbers as metarl's learners on the
catalog's sine and Omniglot recipes, the same as a per-task loop written out with plain
autograd (learn2learn's clone-and-adapt), and one-line errors for bad input.

Tolerances. Against the learners, the functional API runs the very same functions on the
same tensors; what differs is the loss, the user's own `torch.nn.functional` one instead of
metarl's table entry, which rounds differently in float32 (`F.mse_loss` vs
`((out - y) ** 2).mean()`), so the meta-gradients agree to float32 rounding, amplified a
little by a second-order backward: rtol 1e-5 (~80 float32 ulps), atol 1e-7 for the entries
near zero. With metarl's own loss names the results are bitwise equal. Against the per-task
loop, in float64, the batched and the per-task sums differ in order only: rtol 1e-10.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import metarl.functional as mf
from metarl.algorithms import meta_delta
from metarl.config import Algorithm, with_overrides
from metarl.learners import build_meta_learner
from metarl.protocol import Split
from metarl.registry import resolve_recipe

TASKS = 4
F32 = {"rtol": 1e-5, "atol": 1e-7}
F64 = {"rtol": 1e-10, "atol": 1e-12}
USER_LOSS = {"mse": F.mse_loss, "cross_entropy": F.cross_entropy}


def learner_step(recipe_name, **train):
    """The learner of a catalog recipe, its summed meta-gradient on TASKS training tasks
    (what `MetaTrainer.step` computes before dividing by the meta-batch), and the same
    tasks' episodes drawn again from the same seed for the functional API."""
    recipe = with_overrides(resolve_recipe(recipe_name), "train", **train)
    meta = build_meta_learner(recipe, torch.device("cpu"))
    phi = {k: v.detach() for k, v in meta.model.named_parameters()}
    rng = np.random.default_rng(7)
    adaptation = meta.adapt(phi, meta.dist.sample(TASKS, rng, Split.TRAIN), rng)
    summed = meta_delta(recipe.train.algorithm, meta, phi, adaptation).gradient
    rng = np.random.default_rng(7)
    s = meta.settings
    query = s.query_shots if recipe.train.algorithm.needs_query else 0
    batch = meta.dist.episodes(
        meta.dist.sample(TASKS, rng, Split.TRAIN), rng, support=s.support_shots, query=query
    )
    return recipe.train, meta, summed, adaptation, batch


def functional_step(train, meta, batch, loss):
    """The same meta-gradient through `metarl.functional`, as a user would call it."""
    s = meta.settings
    if train.algorithm is Algorithm.REPTILE:
        result = mf.reptile(
            meta.model,
            batch.support_x,
            batch.support_y,
            loss=loss,
            steps=train.inner_steps,
            lr=train.inner_lr,
            optimizer=s.inner_optimizer.value,
            beta1=s.inner_beta1,
            inner_batch=s.inner_batch,
        )
        return result, result.grads
    if train.algorithm is Algorithm.METASGD:
        net, names = meta.model.net, [k for k, _ in meta.model.net.named_parameters()]
        rates = {k: meta.model.alpha[i] for i, k in enumerate(names)}
        result = mf.meta_sgd(
            net,
            rates,
            batch,
            loss=loss,
            steps=train.inner_steps,
            inner_batch=s.inner_batch,
            task_chunk=s.maml_task_chunk,
        )
        grads = {f"net.{k}": g for k, g in result.grads.items()}
        grads.update({f"alpha.{i}": result.rate_grads[k] for i, k in enumerate(names)})
        return result, grads
    result = mf.maml(
        meta.model,
        batch,
        loss=loss,
        steps=train.inner_steps,
        lr=train.inner_lr,
        first_order=train.algorithm is Algorithm.FOMAML,
        inner_batch=s.inner_batch,
        task_chunk=s.maml_task_chunk,
    )
    return result, result.grads


CASES = [
    ("sine-maml", {}),
    ("sine-fomaml", {}),
    ("sine-metasgd", {}),
    ("sine", {}),  # Reptile: 10 SGD steps on minibatches of 10 of the 50 support points
    ("omniglot-5way-1shot-maml", {}),
    ("omniglot-5way-1shot-maml", {"algorithm": "fomaml", "inner_steps": 2}),
    ("omniglot-5way-1shot-metasgd", {}),
    ("omniglot-5way-1shot", {}),  # Reptile: Adam with beta1 = 0, minibatches of 10
]


@pytest.mark.parametrize(
    ("recipe", "train"),
    CASES,
    ids=[f"{r}-{t['algorithm']}" if t else r for r, t in CASES],
)
def test_functional_api_gives_the_learners_meta_gradient(recipe, train, request, monkeypatch):
    if recipe.startswith("omniglot"):
        monkeypatch.setenv("METARL_DATA", str(request.getfixturevalue("omniglot_root")))
    t, meta, summed, adaptation, batch = learner_step(recipe, **train)
    expected = {k: v / TASKS for k, v in summed.items()}  # as MetaTrainer.step divides
    # metarl's own loss name: the same computation, bit for bit
    result, grads = functional_step(t, meta, batch, meta.dist.loss)
    assert grads.keys() == expected.keys()
    for k in expected:
        assert torch.equal(grads[k], expected[k]), k
    for k, w in adaptation.params.items():
        assert torch.equal(result.adapted[k.removeprefix("net.")], w), k
    # the user's own torch.nn.functional loss: equal to float32 rounding
    _, grads = functional_step(t, meta, batch, USER_LOSS[meta.dist.loss])
    for k in expected:
        torch.testing.assert_close(grads[k], expected[k], **F32, msg=k)
    assert any(float(g.abs().max()) > 1e-4 for g in grads.values())  # not vacuously zero


# -- against a per-task loop written out (learn2learn's clone().adapt()) ----------------------
@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    g = torch.Generator().manual_seed(1)
    batch = mf.TaskBatch(
        *(torch.randn(TASKS, n, 1, generator=g, dtype=torch.float64) for n in (5, 5, 4, 4))
    )
    return model, batch


def per_task_loop(model, batch, steps, lr, first_order=False, rates=None):
    """The meta-gradient the way learn2learn's MAML example computes it: each task in turn,
    a clone adapted by autograd, its query loss backpropagated, the sum divided by n."""
    phi = dict(model.named_parameters())
    total = 0.0
    for i in range(TASKS):
        w = dict(phi)
        for _ in range(steps):
            out = torch.func.functional_call(model, w, (batch.support_x[i],))
            g = torch.autograd.grad(
                F.mse_loss(out, batch.support_y[i]), list(w.values()), create_graph=True
            )
            if first_order:
                g = [x.detach() for x in g]
            step = {k: (rates[k] if rates else lr) * gk for k, gk in zip(w, g, strict=True)}
            w = {k: p - step[k] for k, p in w.items()}
        out = torch.func.functional_call(model, w, (batch.query_x[i],))
        total = total + F.mse_loss(out, batch.query_y[i])
    inputs = [*phi.values(), *(rates or {}).values()]
    grads = torch.autograd.grad(total / TASKS, inputs)
    return dict(zip([*phi, *(f"rate:{k}" for k in rates or {})], grads, strict=True))


@pytest.mark.parametrize("first_order", [False, True], ids=["maml", "fomaml"])
def test_maml_equals_the_per_task_loop_both_ways(tiny, first_order):
    model, batch = tiny
    expected = per_task_loop(model, batch, steps=2, lr=0.1, first_order=first_order)
    result = mf.maml(model, batch, loss=F.mse_loss, steps=2, lr=0.1, first_order=first_order)
    for k, g in result.grads.items():
        torch.testing.assert_close(g, expected[k], **F64, msg=k)
    # the learn2learn-shaped route: adapt, a query loss, backward into .grad
    model.zero_grad()
    adapted = mf.adapt(
        model, batch.support_x, batch.support_y, loss=F.mse_loss, steps=2, lr=0.1,
        first_order=first_order,
    )  # fmt: skip
    mf.task_losses(model, adapted, batch.query_x, batch.query_y, loss=F.mse_loss).mean().backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[k], **F64, msg=k)
    # second order differs from first order (the test above is not one path twice)
    other = per_task_loop(model, batch, steps=2, lr=0.1, first_order=not first_order)
    assert not torch.allclose(other["0.weight"], expected["0.weight"])


def test_meta_sgd_equals_the_per_task_loop_and_writes_both_grads(tiny):
    model, batch = tiny
    rates = mf.learned_rates(model, 0.1)
    with torch.no_grad():
        rates["0.weight"].mul_(torch.linspace(0.5, 1.5, 8, dtype=torch.float64).unsqueeze(1))
    expected = per_task_loop(model, batch, steps=2, lr=None, rates=rates)
    result = mf.meta_sgd(model, rates, batch, loss="mse", steps=2)
    model.zero_grad()
    result.apply_to(model, rates)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, expected[k], **F64, msg=k)
        torch.testing.assert_close(rates[k].grad, expected[f"rate:{k}"], **F64, msg=k)
    # adapt with the rates: the same W as the unrolled loop, differentiable to alpha
    adapted = mf.adapt(model, batch.support_x, batch.support_y, loss="mse", steps=2, rates=rates)
    assert adapted["0.weight"].requires_grad
    for k, w in result.adapted.items():
        torch.testing.assert_close(adapted[k].detach(), w, **F64)


def test_reptile_is_phi_minus_the_mean_adapted_weights_and_apply_accumulates(tiny):
    model, batch = tiny
    result = mf.reptile(model, batch.support_x, batch.support_y, loss="mse", steps=3, lr=0.1)
    with torch.no_grad():
        adapted = mf.adapt(model, batch.support_x, batch.support_y, loss="mse", steps=3, lr=0.1)
    assert not adapted["0.weight"].requires_grad  # no graph under no_grad
    for k, p in model.named_parameters():
        torch.testing.assert_close(result.grads[k], p.detach() - adapted[k].mean(0), **F64)
    model.zero_grad()
    result.apply_to(model)
    result.apply_to(model, accumulate=True)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 2 * result.grads[k], **F64)
    assert result.support_losses.shape == (3, TASKS) and result.query_losses is None
    # SGD with lr epsilon on the Reptile gradient is the paper's interpolation
    eps = 0.5
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    model.zero_grad()
    result.apply_to(model)
    torch.optim.SGD(model.parameters(), lr=eps).step()
    for k, p in model.named_parameters():
        want = before[k] + eps * (adapted[k].mean(0) - before[k])
        torch.testing.assert_close(p.detach(), want, **F64)


def test_predict_runs_each_task_on_its_own_weights(tiny):
    model, batch = tiny
    with torch.no_grad():
        adapted = mf.adapt(model, batch.support_x, batch.support_y, loss="mse", steps=1, lr=0.5)
    out = mf.predict(model, adapted, batch.query_x)
    assert out.shape == (TASKS, 4, 1) and out.dtype == torch.float64
    for i in range(TASKS):
        own = {k: v[i] for k, v in adapted.items()}
        want = torch.func.functional_call(model, own, (batch.query_x[i],))
        torch.testing.assert_close(out[i], want, **F64)


# -- bad input: one line naming the value and what is accepted --------------------------------
def _model():
    return nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))


def _batch(tasks=2, query_tasks=2):
    return mf.TaskBatch(
        torch.randn(tasks, 5, 1),
        torch.randn(tasks, 5, 1),
        torch.randn(query_tasks, 3, 1),
        torch.randn(query_tasks, 3, 1),
    )


def _maml(**kw):
    args = {"model": _model(), "batch": _batch(), "loss": "mse", "steps": 1, "lr": 0.1, **kw}
    return lambda: mf.maml(args.pop("model"), args.pop("batch"), **args)


def _bn_model():
    return nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


BAD = [
    ("steps-0", _maml(steps=0), "steps = 0: expected an integer >= 1"),
    ("steps-float", _maml(steps=1.5), "steps = 1.5: expected an integer >= 1"),
    ("lr-0", _maml(lr=0.0), "lr = 0.0: expected a finite number > 0"),
    ("lr-negative", _maml(lr=-0.1), "lr = -0.1: expected a finite number > 0"),
    ("lr-nan", _maml(lr=float("nan")), "lr = nan: expected a finite number > 0"),
    (
        "lr-missing",
        lambda: mf.adapt(_model(), torch.randn(2, 5, 1), torch.randn(2, 5, 1), loss="mse", steps=1),
        "lr = None: expected a finite number > 0",
    ),
    (
        "loss-name",
        _maml(loss="hinge"),
        "loss = 'hinge': expected a function (outputs, targets) -> scalar, or one of 'mse', "
        "'cross_entropy'",
    ),
    ("inner-batch", _maml(inner_batch=-1), "inner_batch = -1: expected an integer >= 0"),
    ("task-chunk", _maml(task_chunk=-2), "task_chunk = -2: expected an integer >= 0"),
    (
        "batchnorm",
        _maml(model=_bn_model()),
        "model.1: BatchNorm with running statistics in training mode; tasks adapted side by "
        "side cannot share them: use track_running_stats=False",
    ),
    (
        "query-tasks",
        _maml(batch=_batch(query_tasks=3)),
        "batch: 2 support tasks and 3 query tasks: expected the same number",
    ),
    (
        "three-tensors",
        _maml(batch=tuple(_batch())[:3]),
        "batch: expected TaskBatch(support_x, support_y, query_x, query_y), four tensors",
    ),
    (
        "no-task-axis",
        lambda: mf.adapt(
            _model(), torch.randn(5, 1)[:, 0], torch.randn(5), loss="mse", steps=1, lr=0.1
        ),
        "support inputs: (5,): expected a tensor [tasks, examples, ...] (a task axis first)",
    ),  # fmt: skip
    (
        "examples-differ",
        lambda: mf.adapt(
            _model(), torch.randn(2, 5, 1), torch.randn(2, 4, 1), loss="mse", steps=1, lr=0.1
        ),
        "support: inputs (2, 5, 1) and targets (2, 4, 1): expected the same [tasks, examples] "
        "in front",
    ),  # fmt: skip
    (
        "rates-keys",
        lambda: mf.meta_sgd(
            _model(), {"0.weight": torch.ones(4, 1)}, _batch(), loss="mse", steps=1
        ),
        "rates: missing ['0.bias', '2.bias', '2.weight'], unexpected []: expected the keys of "
        "metarl.functional.parameters(model)",
    ),  # fmt: skip
    (
        "rates-shape",
        lambda: mf.meta_sgd(
            _model(),
            {k: torch.ones(1) for k in mf.parameters(_model())},
            _batch(),
            loss="mse",
            steps=1,
        ),
        "rates['0.weight']: shape (1,): expected (4, 1)",
    ),
    (
        "reptile-optimizer",
        lambda: mf.reptile(
            _model(),
            torch.randn(2, 5, 1),
            torch.randn(2, 5, 1),
            loss="mse",
            steps=1,
            lr=0.1,
            optimizer="rmsprop",
        ),
        "optimizer = 'rmsprop': expected one of sgd, adam",
    ),  # fmt: skip
    ("rates-init", lambda: mf.learned_rates(_model(), 0), "init = 0: expected a finite number > 0"),
    (
        "frozen-model",
        lambda: mf.learned_rates(_model().requires_grad_(False), 0.1),
        "model: it has no parameters that require grad; nothing to adapt",
    ),
]


@pytest.mark.parametrize(("call", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_line(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert isinstance(info.value, mf.ArgumentError)
    assert str(info.value) == message
    assert "\n" not in message


# -- the learn2learn port of docs/tutorials/maml-omniglot.md ----------------------------------
def test_the_tutorials_learn2learn_port_runs_as_written(omniglot_root, monkeypatch, capsys):
    page = Path(__file__).parents[1] / "docs" / "tutorials" / "maml-omniglot.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    monkeypatch.setenv("METARL_DATA", str(omniglot_root))
    namespace: dict[str, object] = {"__name__": "maml_omniglot"}
    exec(compile(blocks[0], str(page), "exec"), namespace)
    namespace["main"](num_iterations=2, meta_batch_size=4, cuda=False)
    out = capsys.readouterr().out
    assert out.count("Meta Train Error") == 2
    values = dict(re.findall(r"^(Meta Test \w+) (\S+)$", out, re.M))
    assert set(values) == {"Meta Test Error", "Meta Test Accuracy"}
    assert 0.0 < float(values["Meta Test Error"]) < 10.0
    assert 0.0 <= float(values["Meta Test Accuracy"]) <= 1.0


def test_the_functional_pages_examples_run_each_on_its_own(tmp_path, monkeypatch):
    page = Path(__file__).parents[1] / "docs" / "functional.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        namespace: dict[str, object] = {"__name__": "__main__"}
        exec(compile(code, str(page), "exec"), namespace)
        assert any(p.grad is not None for p in namespace["model"].parameters())


def test_the_docstring_examples_run():
    import doctest

    result = doctest.testmod(mf, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0
