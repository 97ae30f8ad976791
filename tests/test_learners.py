"""The learner contract: the kind -> learner registry, typed settings per learner (a setting the
chosen learner does not read is refused by name), and per-task sums for the outer loop."""

from __future__ import annotations

import dataclasses
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from metarl import algorithms
from metarl.combinations import SUPPORTED
from metarl.config import OuterOptimizerName, recipe_from_dict
from metarl.errors import ConfigError
from metarl.learners import build_meta_learner
from metarl.learners.supervised import SupervisedMetaLearner
from metarl.outer import build_outer_step
from metarl.protocol import Split, task_rng
from metarl.rl.settings import BatchedSettings
from tests.test_cli import invoke

CPU = torch.device("cpu")


def sine_recipe(**train):
    data = {
        "task": {"name": "sine"},
        "model": {"hidden": [8]},
        "train": {"meta_batch": 3, "inner_steps": 2, "support_shots": 5, **train},
    }
    return recipe_from_dict(data, "test")


def nav_data(**train):
    return {
        "task": {"name": "navigation2d"},
        "train": {"inner_steps": 1, **train},
        "learner": {"n_steps": 50, "batch_size": 25},
    }


@pytest.mark.parametrize("learner", sorted({row.learner for row in SUPPORTED}))
def test_every_supported_learner_resolves_to_a_class_with_from_recipe(learner):
    assert callable(pkgutil.resolve_name(learner).from_recipe)


def test_supervised_learning_does_not_import_stable_baselines3():
    code = (
        "import sys, torch, metarl.train; from metarl.learners import build_meta_learner;"
        "from metarl.registry import resolve_recipe;"
        "build_meta_learner(resolve_recipe('sine'), torch.device('cpu'));"
        "print('stable_baselines3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "key,value", [("inner_optimizer", "adam"), ("inner_batch", 4), ("support_shots", 3)]
)
def test_rl_recipe_refuses_the_supervised_settings_by_name(key, value):
    recipe = recipe_from_dict(nav_data(**{key: value}), "nav.toml")
    with pytest.raises(ConfigError) as info:
        build_meta_learner(recipe, CPU)
    message = str(info.value)
    assert message.startswith("nav.toml: ") and f"train.{key} = " in message
    assert "not used by the batched RL learner" in message  # RL's default backend


def test_supervised_recipe_refuses_a_learner_table():
    data = {"task": {"name": "sine"}, "learner": {"n_steps": 10}}
    with pytest.raises(ConfigError, match=r"learner\.n_steps: \[learner\] holds the PPO"):
        build_meta_learner(recipe_from_dict(data, "test"), CPU)


def test_unknown_learner_key_names_the_learner():
    data = nav_data()
    data["learner"]["gama"] = 0.9
    with pytest.raises(
        ConfigError, match=r"the batched RL learner's settings\) unknown key 'gama'"
    ):
        build_meta_learner(recipe_from_dict(data, "test"), CPU)


def test_supervised_settings_take_defaults_and_are_checked():
    meta = build_meta_learner(sine_recipe(), CPU)
    assert isinstance(meta, SupervisedMetaLearner)
    assert meta.settings.support_shots == 5 and meta.settings.inner_batch == 0  # default
    with pytest.raises(ConfigError, match="train.inner_beta1 = 1.0: must be in"):
        build_meta_learner(sine_recipe(inner_beta1=1.0), CPU)
    with pytest.raises(ConfigError, match="fomaml needs a query set"):
        build_meta_learner(sine_recipe(algorithm="fomaml", query_shots=0), CPU)


def test_fomaml_delta_is_the_per_task_sum_of_query_gradients():
    recipe = sine_recipe(algorithm="fomaml", query_shots=4)
    meta = build_meta_learner(recipe, CPU)
    assert isinstance(meta, SupervisedMetaLearner)
    phi = {k: v.detach() for k, v in meta.model.named_parameters()}
    rng = task_rng(0, Split.TRAIN, 0)
    adaptation = meta.adapt(phi, meta.dist.sample(3, rng, Split.TRAIN), rng, slice(None))
    delta, metrics = algorithms.fomaml_delta(meta, adaptation)
    batch = adaptation.context
    for i in range(3):  # the per-task gradients, one task at a time
        one = {k: v[i : i + 1] for k, v in adaptation.params.items()}
        qx, qy = batch.query_x[i : i + 1], batch.query_y[i : i + 1]
        grads, _ = meta.learner.query_gradients(one, qx, qy)
        for k, g in grads.items():
            delta[k] = delta[k] - g[0]
    for k, rest in delta.items():
        torch.testing.assert_close(rest, torch.zeros_like(rest), atol=1e-6, rtol=0, msg=k)
    assert np.isfinite(metrics["query_loss"])


def test_reptile_delta_is_the_per_task_sum_of_phi_minus_w():
    phi = {"w": torch.tensor([1.0, 2.0])}
    adapted = {"w": torch.tensor([[0.0, 2.0], [3.0, 1.0]])}
    torch.testing.assert_close(
        algorithms.reptile_delta(phi, adapted)["w"], torch.tensor([-1.0, 1.0])
    )


def test_tasks_show_gives_the_supervised_defaults_and_no_supervised_keys_for_rl(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    sine = invoke("tasks", "show", "sine")
    rows = {line.split("│")[1].strip(): line for line in sine.stdout.splitlines() if "│" in line}
    assert "default of SupervisedSettings" in rows["train.inner_beta1"]
    nav = invoke("tasks", "show", "navigation2d")
    assert nav.exit_code == 0, nav.output
    assert "train.inner_optimizer" not in nav.stdout and "learner.n_steps" in nav.stdout
    rows = {line.split("│")[1].strip(): line for line in nav.stdout.splitlines() if "│" in line}
    for f in dataclasses.fields(BatchedSettings):  # every effective PPO value, defaults too
        assert f"learner.{f.name}" in rows
    assert "default of BatchedSettings" in rows["learner.ent_coef"]
    assert "train.inner_lr" in rows["eval.inner_lr"]  # the effective value, and whence
    assert "eval.transductive" not in rows and "eval.support_shots" not in rows


def test_an_rl_recipe_with_eval_transductive_exits_2_naming_the_key(tmp_path):
    recipe = tmp_path / "nav.toml"
    recipe.write_text('[task]\nname = "navigation2d"\n[eval]\ntransductive = true\n')
    result = invoke("train", str(recipe), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "eval.transductive = true" in result.stderr and "RL learner" in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "train,message",
    [
        ({"algorithm": "maml", "inner_optimizer": "adam"}, "maml differentiates through plain SGD"),
        ({"algorithm": "metasgd", "amp": True}, "train.amp = true: metasgd runs in float32"),
        ({"algorithm": "imaml", "imaml_lambda": 0.0}, "train.imaml_lambda = 0.0: must be > 0"),
        ({"algorithm": "imaml", "cg_steps": 0}, "train.cg_steps = 0: must be >= 1"),
        ({"algorithm": "maml", "maml_task_chunk": -1}, "train.maml_task_chunk = -1: must be"),
    ],
)
def test_second_order_settings_are_checked(train, message):
    with pytest.raises(ConfigError, match=message):
        build_meta_learner(sine_recipe(**train), CPU)


def test_rl_recipe_refuses_supervised_second_order_algorithms():
    recipe = recipe_from_dict(nav_data(algorithm="imaml"), "nav.toml")
    with pytest.raises(
        ConfigError,
        match='nav.toml: train.algorithm = "imaml": use algorithm = "reptile" or "fomaml" .*; '
        'algorithm = "imaml" runs with supervised tasks',
    ):
        build_meta_learner(recipe, CPU)


def test_rl_metasgd_needs_the_trust_region_step():
    """Meta-SGD for RL learns its rates in MAML-RL's TRPO step (`tests/test_maml_rl.py`)."""
    recipe = recipe_from_dict(nav_data(algorithm="metasgd"), "nav.toml")
    with pytest.raises(ConfigError, match='nav.toml: train.outer_optimizer = "sgd": .*"trpo"'):
        build_meta_learner(recipe, CPU)


def test_rl_maml_needs_the_vpg_inner_step():
    """Second-order MAML-RL differentiates through MAML-RL's VPG step, not PPO's."""
    recipe = recipe_from_dict(nav_data(algorithm="maml"), "nav.toml")
    with pytest.raises(ConfigError, match='nav.toml: learner.inner = "ppo": .*use inner = "vpg"'):
        build_meta_learner(recipe, CPU)


def test_metasgd_rates_are_meta_parameters_used_by_evaluation():
    meta = build_meta_learner(sine_recipe(algorithm="metasgd", inner_lr=0.05), CPU)
    assert isinstance(meta, SupervisedMetaLearner)
    names = dict(meta.model.named_parameters())
    weights = [k for k in names if not k.startswith("alpha.")]
    rates = [k for k in names if k.startswith("alpha.")]
    assert len(rates) == len(weights) and torch.all(names[rates[0]] == 0.05)
    assert set(rates) <= set(meta.model.state_dict())  # so the checkpoint stores them
    phi = {k: v.detach() for k, v in names.items()}
    rng = task_rng(0, Split.TRAIN, 0)
    adaptation = meta.adapt(phi, meta.dist.sample(3, rng, Split.TRAIN), rng, slice(None))
    delta = algorithms.meta_delta(meta.algorithm, meta, phi, adaptation).gradient
    assert set(delta) == set(names)  # the outer step reaches alpha too
    assert float(delta[rates[0]].abs().sum()) > 0
    before = meta.curve([1], 5).mean[-1]
    with torch.no_grad():
        for k in rates:
            names[k].zero_()  # alpha = 0: adaptation cannot move the weights
    after = meta.curve([0, 1], 5)
    assert after.mean[0] == pytest.approx(after.mean[1]) and after.mean[1] != before


def test_gradient_combination_of_all_steps_is_reptile_over_the_inner_lr():
    """With plain SGD, g1 + ... + gk = (phi - W_k) / lr per task: Reptile's delta scaled."""
    recipe = sine_recipe(algorithm="gradients", combination="g1+g2", inner_lr=0.05)
    meta = build_meta_learner(recipe, CPU)
    assert isinstance(meta, SupervisedMetaLearner)
    phi = {k: v.detach() for k, v in meta.model.named_parameters()}
    rng = task_rng(0, Split.TRAIN, 0)
    adaptation = meta.adapt(phi, meta.dist.sample(3, rng, Split.TRAIN), rng, slice(None))
    delta = algorithms.meta_delta(meta.algorithm, meta, phi, adaptation).gradient
    reptile = algorithms.reptile_delta(phi, adaptation.params)
    for k in phi:
        torch.testing.assert_close(delta[k] * 0.05, reptile[k], rtol=1e-4, atol=1e-6)
    # g1 alone: the support-loss gradient at phi (joint training's gradient)
    meta1 = build_meta_learner(sine_recipe(algorithm="gradients", combination="g1"), CPU)
    rng = task_rng(0, Split.TRAIN, 0)
    tasks = meta1.dist.sample(3, rng, Split.TRAIN)
    batch = meta1.dist.episodes(tasks, rng, support=5, query=0)
    g1, _ = meta1.learner.loss_and_grad(
        {k: v.expand(3, *v.shape) for k, v in phi.items()}, batch.support_x, batch.support_y
    )
    rng = task_rng(0, Split.TRAIN, 0)
    adaptation1 = meta1.adapt(phi, meta1.dist.sample(3, rng, Split.TRAIN), rng, slice(None))
    delta1 = algorithms.meta_delta(meta1.algorithm, meta1, phi, adaptation1).gradient
    for k in phi:
        torch.testing.assert_close(delta1[k], g1[k].sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "train,message",
    [
        ({"combination": "g1+h2"}, r"train.combination = 'g1\+h2': expected gradients g1"),
        ({"combination": "g3"}, r"needs inner_steps >= 3 \(got 2\)"),
    ],
)
def test_bad_combinations_are_named(train, message):
    with pytest.raises(ConfigError, match=message):
        build_meta_learner(sine_recipe(algorithm="gradients", **train), CPU)


def test_metasgd_run_trains_resumes_and_evaluates_with_its_rates_from_the_cli(tmp_path):
    out = tmp_path / "run"
    args = ["--out", str(out), "--meta-iterations", "3", "--meta-batch", "4", "-q"]
    result = invoke("train", "sine-metasgd", *args)
    assert result.exit_code == 0, result.output
    model = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert "alpha.0" in model and "net.0.weight" in model
    assert not torch.all(model["alpha.0"] == 0.03)  # stepped by the outer optimizer
    png = tmp_path / "curve.png"
    result = invoke("eval", str(out), "--tasks", "10", "--steps", "0,1", "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert png.is_file() and (tmp_path / "curve-fits.png").is_file()


def test_a_learner_without_a_trust_region_step_refuses_it_by_name():
    """Only learners that leave MAML-RL's outer objective (`OuterObjectiveLearner`) can take
    TRPO's or ProMP's step: building the step on another refuses it by name, once."""
    meta = build_meta_learner(sine_recipe(), CPU)
    for name, what in (("trpo", "trust-region step"), ("promp", "ProMP step")):
        recipe = dataclasses.replace(
            sine_recipe(),
            train=dataclasses.replace(
                sine_recipe().train, outer_optimizer=OuterOptimizerName(name)
            ),
        )
        with pytest.raises(ConfigError, match=f'"{name}": SupervisedMetaLearner has no {what}'):
            build_outer_step(recipe, meta)
    assert meta.state_dict() == {} and meta.run_record() == {}
    assert list(meta.curves([0, 1], 4)) == ["mse"]
