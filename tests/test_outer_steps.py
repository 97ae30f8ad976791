"""The outer steps' registry (`metarl.outer_registry`): every `train.outer_optimizer` has its
class, an unknown one is refused when the recipe is read, and a new step is a class and one
registry entry: a test-only step registered here under a name of its own (no edit to the
config or the table of what combines) is accepted by the recipe, listed in the table, refused
where it serves nothing, trains a recipe and resumes."""

from __future__ import annotations

import pkgutil

import pytest
import torch

from metarl.combinations import SUPPORTED, combination, markdown_table
from metarl.config import Recipe, recipe_from_dict, with_overrides
from metarl.errors import ConfigError
from metarl.learners import build_meta_learner
from metarl.outer import build_outer_step
from metarl.outer.optimizers import AdamStep, SGDStep
from metarl.outer_registry import OUTER_STEPS, OuterOptimizerName, OuterStepEntry
from metarl.protocol import MetaLearner, MetaStep
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer, TrainingInterrupted
from tests.test_run import StopAt

CPU = torch.device("cpu")


def sine_recipe(**train) -> Recipe:
    data = {
        "task": {"name": "sine"},
        "model": {"hidden": [8]},
        "train": {
            "meta_iterations": 4,
            "meta_batch": 2,
            "inner_steps": 1,
            "meta_step": 0.01,
            "meta_step_final": 0.01,
            "log_every": 1,
            "tensorboard": False,
            **train,
        },
    }
    return recipe_from_dict(data, "test")


class SignStep:
    """Test-only: phi <- phi - lr * sign(meta-gradient) (signSGD), counting its steps."""

    def __init__(self, learner: MetaLearner) -> None:
        self.model = learner.model
        self.steps = 0

    @classmethod
    def from_recipe(cls, recipe: Recipe, learner: MetaLearner) -> SignStep:
        return cls(learner)

    def step(self, meta: MetaStep) -> dict[str, float]:
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p -= meta.lr * meta.gradient[name].sign()
        self.steps += 1
        return {"sign_steps": float(self.steps)}

    def state_dict(self) -> dict:
        count = sum(1 for _ in self.model.parameters())
        return {
            "state": {},
            "param_groups": [{"params": list(range(count))}],
            "steps": torch.tensor(self.steps),
        }

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])


def register_sign(monkeypatch) -> None:
    """The test-only step's one registry line."""
    monkeypatch.setitem(
        OUTER_STEPS, "sign", OuterStepEntry(f"{__name__}:SignStep", kinds=("supervised",))
    )


def test_a_registered_step_is_a_name_the_table_and_its_refusals_read(monkeypatch):
    register_sign(monkeypatch)
    assert sine_recipe(outer_optimizer="sign").train.outer_optimizer.value == "sign"
    assert [r.learner.rpartition(":")[2] for r in SUPPORTED if "sign" in r.outer] == [
        "SupervisedMetaLearner"
    ]
    assert "| `sgd`, `adam`, `sign` |" in markdown_table()
    with pytest.raises(ConfigError) as e:
        sine_recipe(outer_optimizer="lbfgs")
    assert str(e.value).endswith("expected one of sgd, adam, trpo, promp, sign")
    rl = with_overrides(resolve_recipe("halfcheetah-dir"), "train", outer_optimizer="sign")
    with pytest.raises(ConfigError) as e:
        combination(rl, "rl")
    assert str(e.value) == (
        'train.outer_optimizer = "sign": use outer_optimizer = "sgd" or "adam" with RL tasks, '
        'train.algorithm = "reptile"; outer_optimizer = "sign" runs with supervised tasks'
    )


def test_every_outer_optimizer_has_its_class():
    assert list(OUTER_STEPS) == ["sgd", "adam", "trpo", "promp"]
    for name, entry in OUTER_STEPS.items():
        assert callable(pkgutil.resolve_name(entry.cls).from_recipe), name
        assert OuterOptimizerName(name).learner_steps == (name in ("trpo", "promp"))
    learner = build_meta_learner(sine_recipe(), CPU)
    assert isinstance(build_outer_step(sine_recipe(), learner), SGDStep)
    assert isinstance(build_outer_step(sine_recipe(outer_optimizer="adam"), learner), AdamStep)


def test_an_unknown_outer_optimizer_is_refused_when_the_recipe_is_read():
    with pytest.raises(ConfigError) as e:
        sine_recipe(outer_optimizer="lbfgs")
    assert str(e.value) == (
        "test: train.outer_optimizer = 'lbfgs': expected one of sgd, adam, trpo, promp"
    )


def test_a_test_only_outer_step_trains_a_recipe_and_resumes(tmp_path, monkeypatch):
    """Registered from this file as "sign", for supervised tasks: the trainer builds and
    steps it without knowing it, each weight moves by exactly lr per step (two steps: 0 or 2
    lr), its metric is logged, and its state comes back from the checkpoint on resume."""
    register_sign(monkeypatch)
    recipe = sine_recipe(outer_optimizer="sign")
    with pytest.raises(TrainingInterrupted):
        MetaTrainer.start(recipe, tmp_path / "run", CPU, callbacks=[StopAt(2)]).fit()
    trainer = MetaTrainer.resume(tmp_path / "run", CPU)
    assert isinstance(trainer.outer, SignStep) and trainer.outer.steps == 2
    start = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    trainer.fit(progress=False)
    assert [row["sign_steps"] for row in trainer.history] == [3.0, 4.0]
    for name, p in trainer.model.named_parameters():
        moved = (p.detach() - start[name]).abs() / 0.01
        torch.testing.assert_close(moved, moved.round(), rtol=0, atol=1e-4)
        assert set(moved.round().flatten().tolist()) <= {0.0, 2.0}
