from __future__ import annotations

import pytest

from metarl.config import load_recipe_file, recipe_from_dict
from metarl.errors import ConfigError, UserError
from metarl.registry import resolve_recipe
from metarl.tomlio import dumps_toml


def test_catalog_recipe_round_trips_through_toml(tmp_path):
    recipe = resolve_recipe("sine")
    path = tmp_path / "r.toml"
    path.write_text(dumps_toml(recipe.to_dict()))
    again = load_recipe_file(path)
    assert again.to_dict() == recipe.to_dict()


def test_unknown_key_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown key 'inner_stepz'; known keys: algorithm"):
        recipe_from_dict({"task": {"name": "sine"}, "train": {"inner_stepz": 3}}, "x.toml")


@pytest.mark.parametrize(
    "train,message",
    [
        ({"meta_batch": "5"}, "train.meta_batch = '5': expected an integer"),
        ({"algorithm": "maml2"}, "expected one of reptile, fomaml, maml, imaml, metasgd"),
        ({"inner_steps": -1}, "train.inner_steps = -1: must be 0 or more"),
        ({"inner_lr": 0}, "inner_lr = 0.0: must be > 0"),
    ],
)
def test_bad_values_are_named(train, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict({"task": {"name": "sine"}, "train": train}, "x.toml")


def test_malformed_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\nmeta_batch = 5")
    with pytest.raises(ConfigError, match="bad.toml: malformed TOML"):
        load_recipe_file(path)


def test_unknown_catalog_name_suggests():
    with pytest.raises(UserError, match="Did you mean 'sine'"):
        resolve_recipe("sinus")
