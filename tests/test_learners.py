"""The learner contract: the kind -> learner registry, typed settings per learner (a setting the
chosen learner does not read is refused by name), and per-task sums for the outer loop."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from metarl import algorithms
from metarl.config import recipe_from_dict
from metarl.errors import ConfigError
from metarl.learners import LEARNERS, build_meta_learner
from metarl.learners.supervised import SupervisedMetaLearner
from metarl.protocol import Split, task_rng
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


@pytest.mark.parametrize("kind", sorted(LEARNERS))
def test_every_registered_learner_resolves_to_a_class_with_from_recipe(kind):
    assert callable(pkgutil.resolve_name(LEARNERS[kind]).from_recipe)


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
