"""HalfCheetahDir's MAML-RL outer steps pinned bit for bit: one small ProMP run and one small
MAML + TRPO run on a fixed seed give exactly the numbers the code gave when these were
written, and a run checkpointed by that code resumes to the same numbers. A change that only
moves code around (the outer steps becoming objects) must leave every one of them as it is."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from metarl.config import Recipe, recipe_from_dict
from metarl.registry import resolve_recipe
from metarl.train import MetaTrainer

CPU = torch.device("cpu")
RUNS = Path(__file__).parent / "data" / "outer-step-runs"
"""Runs of `small_recipe(name, 1)` trained by the code of the time: config.toml, metrics.jsonl
and the checkpoint after iteration 1 (its learner and outer-optimizer state as then saved)."""


def small_recipe(name: str, meta_iterations: int = 2) -> Recipe:
    """The catalog recipe `name` at a size that trains in a second: 2 tasks of 2 episodes of
    20 steps, a 16-unit policy."""
    data = resolve_recipe(name).to_dict()
    data["train"].update(
        meta_iterations=meta_iterations,
        meta_batch=2,
        checkpoint_every=1,
        log_every=1,
        tensorboard=False,
    )
    data["learner"].update(n_envs=2, n_steps=20, net_arch=[16], batch_size=40)
    data["eval"].update(tasks=2)
    return recipe_from_dict(data, "test")


def checksums(model: torch.nn.Module) -> tuple[float, float]:
    """The sum and the absolute sum of every weight, in float64."""
    flat = torch.cat([v.detach().double().flatten() for v in model.state_dict().values()])
    return float(flat.sum()), float(flat.abs().sum())


PINNED = {
    "halfcheetah-dir-promp": {
        "weights": (-1.3365756674902514, 153.95156678336207),
        "rows": [
            {
                "return_before": -3.5406568367274582,
                "return_after": -6.300027461859745,
                "promp_loss_before": -7.450580596923828e-09,
                "promp_loss_after": -0.03816406428813934,
                "promp_inner_kl": 0.002131645567715168,
                "promp_kl_coeff": 0.01,
            },
            {
                "return_before": -7.682953940848553,
                "return_after": 1.1284809188942875,
                "promp_loss_before": 0.0,
                "promp_loss_after": -0.024974748492240906,
                "promp_inner_kl": 0.0010862982599064708,
                "promp_kl_coeff": 0.005,
            },
        ],
    },
    "halfcheetah-dir-maml": {
        "weights": (-1.5995632405392826, 156.14637196389958),
        "rows": [
            {
                "return_before": -3.5406568367274582,
                "return_after": -6.300027461859745,
                "trpo_loss_before": -7.450580596923828e-09,
                "trpo_shs": 0.2625097334384918,
                "trpo_loss_after": -0.06117140129208565,
                "trpo_kl": 0.009832508862018585,
                "trpo_step_fraction": 0.6400000000000001,
                "trpo_line_search_steps": 3.0,
            },
            {
                "return_before": -7.448820015355006,
                "return_after": 2.073132926113469,
                "trpo_loss_before": 0.0,
                "trpo_shs": 0.0107199028134346,
                "trpo_loss_after": -0.003007948398590088,
                "trpo_kl": 0.0088456179946661,
                "trpo_step_fraction": 0.06871947673600004,
                "trpo_line_search_steps": 13.0,
            },
        ],
    },
}


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_two_iterations_give_the_pinned_numbers(tmp_path, one_thread, name):
    pinned = PINNED[name]
    trainer = MetaTrainer.start(small_recipe(name), tmp_path / "run", CPU)
    trainer.fit(progress=False)
    assert checksums(trainer.model) == pinned["weights"]
    assert len(trainer.history) == len(pinned["rows"])
    for row, expected in zip(trainer.history, pinned["rows"], strict=True):
        assert {k: row[k] for k in expected} == expected


@pytest.mark.parametrize("name", sorted(PINNED))
def test_a_checkpoint_of_the_pinned_code_resumes_to_the_pinned_numbers(tmp_path, one_thread, name):
    """The checkpoint after iteration 1, written by the code these numbers came from (its
    outer optimizer's and learner's state as then laid out), resumes to iteration 2's
    weights and metrics exactly."""
    run = tmp_path / name
    shutil.copytree(RUNS / name, run)
    trainer = MetaTrainer.resume(run, CPU, meta_iterations=2)
    assert trainer.iteration == 1
    trainer.fit(progress=False)
    pinned = PINNED[name]
    assert checksums(trainer.model) == pinned["weights"]
    row, expected = trainer.history[-1], pinned["rows"][-1]
    assert {k: row[k] for k in expected} == expected
