"""Meta-RL with SB3's PPO as the inner loop (`backend = "sb3"`), on Navigation2D (pure numpy,
fast). The batched backend is tested in test_rl_batched.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from metarl.cli import app
from metarl.config import recipe_from_dict
from metarl.errors import ConfigError
from metarl.learners import build_meta_learner
from metarl.learners.sb3_ppo import SB3MetaLearner
from metarl.rl.baselines import joint_recipe, meta_env_steps
from metarl.train import MetaTrainer, TrainingInterrupted
from tests.test_run import StopAt

CPU = torch.device("cpu")


def nav_recipe(train=None, learner=None, eval_=None):
    data = {
        "task": {"name": "navigation2d"},
        "train": {"inner_steps": 2, "inner_lr": 0.003, "meta_batch": 2, "meta_step": 0.5},
        "learner": {
            "backend": "sb3",
            "n_steps": 200,
            "batch_size": 50,
            "n_epochs": 4,
            "log_std_init": -1.5,
        },
        "eval": {"tasks": 4, "steps": [0, 1]},
    }
    data["train"].update(train or {})
    data["learner"].update(learner or {})
    data["eval"].update(eval_ or {})
    return recipe_from_dict(data, "test")


@pytest.fixture(scope="module")
def meta() -> SB3MetaLearner:
    learner = build_meta_learner(nav_recipe(), CPU)
    assert isinstance(learner, SB3MetaLearner)
    return learner


def tasks(meta: SB3MetaLearner, n: int, seed: int = 0):
    return meta.dist.sample(n, np.random.default_rng(seed))


def test_model_is_the_sb3_policy_with_log_std(meta):
    names = [n for n, _ in meta.model.named_parameters()]
    assert "log_std" in names and "action_net.weight" in names and "value_net.weight" in names
    assert meta.model is not meta.ppo.policy  # PPO adapts a copy; phi stays in `model`
    assert float(meta.model.log_std.detach().mean()) == pytest.approx(-1.5)


def test_adapt_changes_parameters_and_improves_the_return(meta):
    phi = meta.phi()
    before, after = [], []
    for i, task in enumerate(tasks(meta, 3, seed=5)):
        run = meta.run_task(
            phi, task, seed=100 + i, updates=5, lr=meta.recipe.train.inner_lr, measure=(0, 5)
        )
        assert any(not torch.equal(run.params[n], phi[n]) for n in phi)
        before.append(run.returns[0])
        after.append(run.returns[5])
    # deterministic (seeded); the margin is wide: from about -90 to better than -60 in practice
    assert np.mean(after) > np.mean(before) + 10, (before, after)
    for n, p in meta.model.named_parameters():  # phi itself is untouched
        assert torch.equal(p, phi[n]), n


def test_adaptation_is_a_function_of_the_generator(meta):
    phi, batch = meta.phi(), tasks(meta, 2)
    a = meta.adapt(phi, batch, np.random.default_rng(7))
    b = meta.adapt(phi, batch, np.random.default_rng(7))
    c = meta.adapt(phi, batch, np.random.default_rng(8))
    assert all(torch.equal(a.params[n], b.params[n]) for n in a.params)
    assert any(not torch.equal(a.params[n], c.params[n]) for n in a.params)
    assert a.params["log_std"].shape == (2, 2)


def test_global_random_state_is_left_alone(meta):
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    meta.adapt(meta.phi(), tasks(meta, 1), np.random.default_rng(0))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()


def test_optimizer_state_is_reset_between_tasks(meta):
    phi = meta.phi()
    first, second = tasks(meta, 2, seed=3)
    alone = meta.run_task(phi, second, seed=11, updates=2, lr=meta.recipe.train.inner_lr)
    used = meta.policy.optimizer
    assert len(used.state) > 0  # Adam has moments after the task...
    meta.run_task(phi, first, seed=12, updates=2, lr=meta.recipe.train.inner_lr)
    assert meta.policy.optimizer is not used
    after_another = meta.run_task(phi, second, seed=11, updates=2, lr=meta.recipe.train.inner_lr)
    # ...and none of them (nor env or generator state) carry over to the next task
    for n in phi:
        assert torch.equal(alone.params[n], after_another.params[n]), n


def test_fomaml_query_gradient_has_the_policy_shapes_and_is_nonzero(meta):
    phi = meta.phi()
    adaptation = meta.adapt(phi, tasks(meta, 2), np.random.default_rng(1))
    grads, metrics = meta.query_gradient(adaptation)
    assert set(grads) == set(phi)
    for n, g in grads.items():
        assert g.shape == phi[n].shape, n
    assert float(grads["action_net.weight"].abs().sum()) > 0
    assert float(grads["log_std"].abs().sum()) > 0
    assert np.isfinite(metrics["query_loss"]) and "return_after" in metrics


def test_unknown_learner_key_names_the_known_ones():
    known = "known keys: gamma, gae_lambda, clip_range, ent_coef, vf_coef, max_grad_norm, "
    with pytest.raises(
        ConfigError, match=f"unknown key 'n_step'; {known}normalize_advantage, backend, n_steps"
    ):
        build_meta_learner(nav_recipe(learner={"n_step": 10}), CPU)
    with pytest.raises(ConfigError, match="learner.batch_size = 500"):
        build_meta_learner(nav_recipe(learner={"batch_size": 500}), CPU)


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml"])
def test_interrupt_and_resume_give_the_same_policy(tmp_path, algorithm):
    recipe = nav_recipe(
        train={"algorithm": algorithm, "meta_iterations": 3, "inner_steps": 1, "log_every": 1},
        learner={"n_steps": 100, "n_epochs": 2},
    )
    whole = MetaTrainer.start(recipe, tmp_path / "whole", CPU)
    whole.fit()
    with pytest.raises(TrainingInterrupted):
        MetaTrainer.start(recipe, tmp_path / "cut", CPU, callbacks=[StopAt(2)]).fit()
    resumed = MetaTrainer.resume(tmp_path / "cut", CPU)
    assert resumed.iteration == 2
    resumed.fit()
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    start = build_meta_learner(recipe, CPU).model.state_dict()
    assert not torch.equal(
        start["action_net.weight"], whole.model.state_dict()["action_net.weight"]
    )


def test_cli_eval_json_from_random_init(tmp_path):
    runner = CliRunner()
    recipe = nav_recipe(train={"meta_iterations": 1, "inner_steps": 1})
    run = tmp_path / "run"
    MetaTrainer.start(recipe, run, CPU).fit()
    result = runner.invoke(
        app, ["eval", str(run), "--init", "random", "--steps", "0,1", "--tasks", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metric"] == "return" and payload["init"] == "random"
    assert payload["steps"] == [0, 1] and payload["n_tasks"] == 3
    assert payload["gain"][0] == 0.0
    assert payload["gain"][1] == pytest.approx(payload["mean"][1] - payload["mean"][0])

    bad = runner.invoke(app, ["eval", str(run), "--init", "joint"])
    assert bad.exit_code == 2 and "--joint-run" in bad.stderr
    joint = runner.invoke(
        app, ["eval", str(run), "--init", "joint", "--joint-run", str(run), "--tasks", "2"]
    )
    assert joint.exit_code == 0, joint.output


def test_learner_table_round_trips_and_joint_matches_the_env_steps():
    recipe = nav_recipe(train={"meta_iterations": 10, "meta_batch": 4, "inner_steps": 2})
    assert recipe_from_dict(recipe.to_dict(), "again").learner == recipe.learner
    joint = joint_recipe(recipe)
    assert meta_env_steps(joint) == meta_env_steps(recipe) == 10 * 4 * 2 * 200
    t = joint.train
    assert (t.meta_batch, t.inner_steps, t.meta_step, t.meta_step_final) == (1, 1, 1.0, 1.0)


@pytest.mark.parametrize("algorithm", ["reptile", "fomaml"])
def test_env_steps_counted_in_the_env_match_the_budget(tmp_path, monkeypatch, algorithm):
    """The matched-budget claim counted where it happens: every Navigation2D.step call of
    a meta-training run and of its joint baseline."""
    from metarl.envs.navigation import Navigation2D

    steps = [0]
    step = Navigation2D.step

    def counting(self, action):
        steps[0] += 1
        return step(self, action)

    monkeypatch.setattr(Navigation2D, "step", counting)
    recipe = nav_recipe(train={"meta_iterations": 1, "algorithm": algorithm})
    for name, run in (("meta", recipe), ("joint", joint_recipe(recipe))):
        trainer = MetaTrainer.start(run, tmp_path / name, CPU)
        steps[0] = 0  # building ran Gymnasium's env checker: a few steps that train nothing
        trainer.fit()
        expected = 1 * 2 * (2 + (algorithm == "fomaml")) * 200
        assert steps[0] == meta_env_steps(recipe) == expected, name


def test_fomaml_query_gradient_equals_a_hand_computed_policy_gradient(meta):
    """The meta-gradient of one task against the loss written out by hand on its query
    rollout: a tanh MLP Gaussian policy at the adapted weights W, ratio exp(log p - log p_old)
    times the normalized advantages, plus vf_coef times the value MSE (ent_coef 0)."""
    import math

    phi = meta.phi()
    adaptation = meta.adapt(phi, tasks(meta, 2), np.random.default_rng(3), slice(0, 1))
    grads, _ = meta.query_gradient(adaptation)
    buffer = meta.ppo.rollout_buffer  # the query rollout of the one task, collected with W
    obs = torch.as_tensor(buffer.observations).reshape(-1, buffer.observations.shape[-1])
    act = torch.as_tensor(buffer.actions).reshape(-1, buffer.actions.shape[-1])
    adv = torch.as_tensor(buffer.advantages).reshape(-1)
    ret = torch.as_tensor(buffer.returns).reshape(-1)
    old = torch.as_tensor(buffer.log_probs).reshape(-1)
    w = {n: v[0].clone().requires_grad_() for n, v in adaptation.params.items()}

    def mlp(prefix: str, x: torch.Tensor) -> torch.Tensor:
        layers = sorted({int(n.split(".")[2]) for n in w if n.startswith(prefix)})
        for i in layers:
            x = torch.tanh(x @ w[f"{prefix}{i}.weight"].T + w[f"{prefix}{i}.bias"])
        return x

    mean = mlp("mlp_extractor.policy_net.", obs) @ w["action_net.weight"].T + w["action_net.bias"]
    value = mlp("mlp_extractor.value_net.", obs) @ w["value_net.weight"].T + w["value_net.bias"]
    log_std = w["log_std"]
    log_p = (
        -((act - mean) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - 0.5 * math.log(2 * math.pi)
    ).sum(-1)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    loss = -(adv * torch.exp(log_p - old)).mean() + meta.ppo.vf_coef * torch.mean(
        (ret - value.flatten()) ** 2
    )
    assert meta.ppo.ent_coef == 0.0
    hand = dict(zip(w, torch.autograd.grad(loss, list(w.values())), strict=True))
    for n, g in grads.items():
        torch.testing.assert_close(g, hand[n], rtol=1e-4, atol=1e-5, msg=n)
