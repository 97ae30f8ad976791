"""Every recipe in the catalog loads, validates and trains for a few iterations."""

from __future__ import annotations

import math
from importlib.util import find_spec

import pytest
import torch

from metarl.config import recipe_from_dict, with_overrides
from metarl.data import DATASETS
from metarl.registry import catalog_dir, catalog_recipes, resolve_recipe
from metarl.train import MetaTrainer


@pytest.mark.parametrize("name", sorted(catalog_recipes()))
def test_catalog_recipe_trains_a_few_iterations(name, tmp_path, request, monkeypatch):
    recipe = with_overrides(resolve_recipe(name), "train", meta_iterations=3)
    if recipe.task_name in DATASETS:  # the real data, else a synthetic set in the real layout
        root = request.getfixturevalue(f"{recipe.task_name}_root")  # (tests/conftest.py)
        monkeypatch.setenv("METARL_DATA", str(root))
        if recipe.task_name == "miniimagenet":  # 84x84 convolutions: a smoke-sized batch
            recipe = with_overrides(recipe, "train", meta_batch=2, inner_steps=1)
    if recipe.train.algorithm.value == "rl2":  # RL²: a smoke-sized trial batch and PPO
        recipe = with_overrides(recipe, "train", meta_batch=2)
        recipe = with_overrides(recipe, "learner", n_epochs=1, n_envs=2)
    elif recipe.learner:  # RL: a smoke-sized PPO (the recipe's own budget takes minutes)
        recipe = with_overrides(recipe, "train", meta_batch=2, inner_steps=1)
        recipe = with_overrides(recipe, "learner", n_steps=64, batch_size=32, n_epochs=2, n_envs=2)
    if recipe.task_name.startswith("metaworld") and not find_spec("metaworld"):
        pytest.skip('Meta-World not installed (pip install -e ".[metaworld]")')
    trainer = MetaTrainer.start(recipe, tmp_path / name, torch.device("cpu"))
    trainer.fit()
    assert trainer.iteration == 3
    # 2 tasks: a smoke test; non-transductive evaluation of 20-way 5-shot runs 20 x 101 images.
    # Meta-World's evaluator runs 3 full episodes per task and step count in Python: one task,
    # before and after one update (its protocol is tested in tests/test_metaworld.py)
    metaworld = recipe.task_name.startswith("metaworld")
    curve = trainer.meta.curve([0, 1], n_tasks=1 if metaworld else 2)
    assert all(math.isfinite(v) for v in curve.mean)  # no nan, no inf


@pytest.mark.parametrize("family", sorted(p.stem for p in catalog_dir("envs").glob("*.toml")))
def test_every_env_family_validates_and_trains_an_iteration(family, tmp_path):
    """Every file in envs/ is a task distribution that passes the checks at the door
    (including Gymnasium's env checker) and meta-trains (one tiny PPO iteration)."""
    recipe = recipe_from_dict(
        {
            "task": {"name": family},
            "train": {"meta_iterations": 1, "meta_batch": 1, "inner_steps": 1},
            "eval": {"tasks": 2, "steps": [0, 1]},
            "learner": {"n_steps": 64, "batch_size": 32, "n_epochs": 1},
        },
        source=f"envs/{family}.toml",
    )
    trainer = MetaTrainer.start(recipe, tmp_path / family, torch.device("cpu"))
    trainer.fit()
    assert trainer.iteration == 1
