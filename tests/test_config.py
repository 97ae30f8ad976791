from __future__ import annotations

import dataclasses

import pytest
import torch

from metarl.config import (
    SUPERVISED,
    EvalConfig,
    SupervisedEval,
    SupervisedSettings,
    TrainConfig,
    load_recipe_file,
    recipe_from_dict,
)
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


# --- settings per learner: one declaration each, refused where not read, typed when parsed ---


def nav(section: str, **values: object) -> dict[str, object]:
    return {"task": {"name": "navigation2d"}, section: values}


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("eval", "support_shots", 10),  # the default value, given: still refused
        ("eval", "query_shots", 5),
        ("eval", "inner_batch", 0),
        ("eval", "transductive", True),
        ("train", "inner_batch", 4),
        ("train", "amp", False),
    ],
)
def test_an_rl_recipe_refuses_the_supervised_keys_it_gives_naming_key_and_learner(
    section, key, value
):
    from metarl.learners import build_meta_learner

    recipe = recipe_from_dict(nav(section, **{key: value}), "nav.toml")
    with pytest.raises(ConfigError) as e:
        build_meta_learner(recipe, torch.device("cpu"))
    message = str(e.value)
    assert "\n" not in message
    assert f"{section}.{key} = " in message and "the batched RL learner" in message


def test_the_supervised_keys_are_declared_once_with_a_reason_for_rl():
    """`SUPERVISED` holds every supervised-only key of [train] and [eval], each with why an RL
    learner does not read it; the keys every learner reads are not among them."""
    for section, cls in SUPERVISED.items():
        common = {
            f.name for f in dataclasses.fields(TrainConfig if section == "train" else EvalConfig)
        }
        for f in dataclasses.fields(cls):
            assert f.name not in common, f"{section}.{f.name} declared twice"
            assert f.metadata["why_not_rl"], f"{section}.{f.name} gives no reason"


def test_supervised_keys_are_typed_when_the_recipe_is_read():
    with pytest.raises(ConfigError, match=r"x.toml: eval.transductive = 'yes': expected true"):
        recipe_from_dict({"task": {"name": "sine"}, "eval": {"transductive": "yes"}}, "x.toml")
    with pytest.raises(ConfigError, match=r"train.inner_batch = '3': expected an integer"):
        recipe_from_dict({"task": {"name": "sine"}, "train": {"inner_batch": "3"}}, "x.toml")


def test_a_supervised_recipe_reads_its_given_keys_and_defaults_the_rest():
    recipe = recipe_from_dict(
        {"task": {"name": "sine"}, "train": {"inner_batch": 3}, "eval": {"query_shots": 7}}, "x"
    )
    assert recipe.supervised_settings().inner_batch == 3
    assert recipe.supervised_settings().support_shots == SupervisedSettings().support_shots
    assert recipe.supervised_eval().query_shots == 7
    assert recipe.supervised_eval().transductive is SupervisedEval().transductive
    assert recipe_from_dict(recipe.to_dict(), "again").to_dict() == recipe.to_dict()


def test_eval_inner_lr_falls_back_to_the_training_one():
    data = {"task": {"name": "sine"}, "train": {"inner_lr": 0.25}}
    assert recipe_from_dict(data, "x").eval_inner_lr == 0.25
    data["eval"] = {"inner_lr": 0.5}
    assert recipe_from_dict(data, "x").eval_inner_lr == 0.5


def test_model_and_task_values_of_the_wrong_type_are_refused_naming_key_value_and_type():
    from metarl.registry import check_option_names

    recipe = recipe_from_dict({"task": {"name": "sine"}, "model": {"hidden": "64"}}, "x.toml")
    with pytest.raises(ConfigError, match=r"x.toml: model.hidden = '64': expected a list"):
        check_option_names(recipe)
    recipe = recipe_from_dict({"task": {"name": "sine", "phase": [0, "pi"]}}, "x.toml")
    with pytest.raises(ConfigError, match=r"task.phase\[1\] = 'pi': expected a number"):
        check_option_names(recipe)
    check_option_names(recipe_from_dict({"task": {"name": "sine", "phase": [0, 3]}}, "x"))


def test_the_settings_reference_is_made_from_the_declarations_the_parser_reads():
    """Every key a recipe's [train], [eval] and [learner] accept appears once, with its
    default and its reader, and each row is a well-formed five-cell Markdown row."""
    import re

    from metarl.provenance import READERS, settings_reference
    from metarl.rl.rl2_settings import RL2Settings
    from metarl.rl.settings import BatchedSettings, PPOUpdateSettings

    reference = settings_reference()
    rows = reference.splitlines()[2:]
    keys = [row.split("`")[1] for row in rows]
    declared = [
        f"{section}.{f.name}"
        for section, cls in (("train", TrainConfig), ("eval", EvalConfig), *SUPERVISED.items())
        for f in dataclasses.fields(cls)
    ] + [  # PPO's update keys once, in the table of what both PPO engines and RL² read
        f"learner.{f.name}"
        for cls in (BatchedSettings, RL2Settings)
        for f in dataclasses.fields(cls)
        if cls is BatchedSettings or f not in dataclasses.fields(PPOUpdateSettings)
    ]
    assert sorted(keys) == sorted(declared)
    for row in rows:
        assert len(re.split(r"(?<!\\)\|", row)) == 7, row  # 5 cells between 6 bars
    inner = next(r for r in rows if r.startswith("| `learner.inner`"))
    assert "RL, batched engine" in inner and "'ppo'" in inner
    assert "(RL: a policy acts on one observation at a time)" in reference
    assert {reader for _, _, reader in READERS} >= {"every learner", "supervised"}


def test_run_configs_written_with_the_old_defaults_still_load():
    """metarl before 2026-12-03 wrote the supervised [eval] defaults (and None for the
    supervised [train] keys) into every RL run's config.toml and checkpoint: those runs
    resume and evaluate; a non-default value is still refused by name."""
    from metarl.config import forget_recorded_defaults, recipe_from_dict
    from metarl.errors import ConfigError
    from metarl.learners import build_meta_learner

    old = {
        "task": {"name": "navigation2d"},
        "train": {"meta_iterations": 1, "meta_batch": 1, "inner_optimizer": None},
        "learner": {"n_steps": 8, "n_envs": 1, "batch_size": 8},
        "eval": {"tasks": 2, "support_shots": 10, "query_shots": 100, "inner_batch": 0},
    }
    old["eval"]["transductive"] = True
    data = forget_recorded_defaults(old)
    assert data["eval"] == {"tasks": 2} and data["train"] == {"meta_iterations": 1, "meta_batch": 1}
    build_meta_learner(recipe_from_dict(data, "old/config.toml"), torch.device("cpu"))
    given = {**old, "eval": {"tasks": 2, "support_shots": 5}}
    with pytest.raises(ConfigError, match="eval.support_shots = 5"):
        build_meta_learner(
            recipe_from_dict(forget_recorded_defaults(given), "old/config.toml"),
            torch.device("cpu"),
        )
    supervised = {"task": {"name": "sine"}, "eval": {"support_shots": 10}}
    assert forget_recorded_defaults(supervised) == supervised  # only RL recipes
