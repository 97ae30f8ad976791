"""Second-order MAML-RL (`metarl.rl.maml`): the meta-gradient estimator against a closed form,
its pieces against the VPG code, and the learner that uses it."""

from __future__ import annotations

import copy
import importlib.util
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from metarl.config import recipe_from_dict, with_overrides
from metarl.envs.episodes import runs_asked_way, velocity_asked_way
from metarl.errors import ConfigError, UserError
from metarl.evaluate import load_run
from metarl.learners import build_meta_learner
from metarl.learners.inner_loop import stack
from metarl.protocol import Split, task_rng
from metarl.registry import resolve_recipe
from metarl.rl.baselines import joint_outer_recipe, meta_env_steps
from metarl.rl.fisher import FISHER_METHODS
from metarl.rl.maml import (
    RATE_PREFIX,
    InnerLoss,
    MetaObjective,
    PolicyFn,
    Samples,
    adapt,
    episode_mean,
    lvc_loss,
    ratio_loss_of,
)
from metarl.rl.policy import per_task_gradients
from metarl.rl.promp import ProMPSettings, promp_step
from metarl.rl.rollout import RolloutNoise, collect
from metarl.rl.trpo import TRPOSettings, trust_region_step
from metarl.rl.vpg import vpg_loss
from metarl.train import MetaTrainer
from tests.test_distributed import assert_same_metrics, spawn, weights
from tests.test_run import whole_and_resumed

# -- test-only estimators: the naive inner loss, ProMP's as an inner loss, the bare gradient --


def reinforce_loss(policy_fn: PolicyFn, params, samples: Samples):
    """The naive inner loss `-log pi * A` (pytorch-maml-rl's `reinforce_loss`): the same
    gradient as `lvc_loss`, but its Hessian misses the score-function term. The tests show
    that a meta-gradient through it is wrong."""
    log_prob = policy_fn(params, samples.obs).log_prob(samples.actions)
    return -episode_mean(log_prob * samples.advantages, samples.mask)


def ratio_loss(policy_fn: PolicyFn, params, samples: Samples):
    """ProMP's inner loss (`ratio_loss_of`) as an inner loss of `adapt`."""
    return ratio_loss_of(policy_fn(params, samples.obs), samples)


def meta_gradient(
    policy_fn: PolicyFn,
    phi,
    pre,
    post: Samples,
    lr: float,
    inner_loss: InnerLoss = lvc_loss,
    *,
    first_order: bool = False,
):
    """MAML-RL's meta-gradient estimate: the sum over tasks of
    `d L_outer_i(theta_i'(phi); post_i) / d phi`, with `theta_i'` one inner step of `lr` on
    `pre_i` (samples of pi_phi; a sequence: one step on each, step j's samples from the
    policy of the j steps before it) and `post_i` samples of pi_theta_i'. Returns it and the
    per-task outer losses (`first_order`: without the inner step's derivative). The learner
    (`metarl.learners.maml_rl`) computes the same through `MetaObjective.gradient`."""
    objective = MetaObjective(policy_fn, phi, pre, post, lr, inner_loss)
    grads, losses = objective.gradient(phi, first_order=first_order)
    return grads, losses.surrogate


# -- the meta-gradient on a one-step Gaussian bandit, in closed form ---------------------------
# Action a ~ N(mu, SIGMA^2), reward -(a - GOAL)^2, so J(mu) = E[r] = -((mu - GOAL)^2 + SIGMA^2),
# J' = -2 (mu - GOAL), J'' = -2. One inner step of ALPHA on the estimated gradient g_hat gives
# theta' = mu + ALPHA g_hat; the meta-objective is F(mu) = J(mu + ALPHA J'(mu)), so
# F'(mu) = J'(mu + ALPHA J'(mu)) (1 + ALPHA J''(mu)).
#
# The estimator (ProMP's LVC inner loss, TRPO's surrogate outside) is
# g_out(theta') (1 + ALPHA H_hat): g_out an unbiased estimate of J'(theta') from M post-update
# samples, H_hat = mean_j (((a_j - mu)^2 / SIGMA^4 - 1 / SIGMA^2) r_j) the LVC Hessian of the N
# pre-update samples (unbiased for J'' in a one-step problem). J' is linear, so the estimator's
# mean is exactly F'(mu) - 2 ALPHA^2 Cov(g_hat, H_hat), g_hat and H_hat being means over the same
# N samples: with x = a - mu ~ N(0, SIGMA^2), d = mu - GOAL, one sample's
# E[g H] = E[(x^3 - SIGMA^2 x)(4 d x^3 + 4 d^3 x)] / SIGMA^6 = 48 d + 8 d^3 / SIGMA^2, so
# Cov = (44 d + 8 d^3 / SIGMA^2) / N (0.0023 here, about one standard error of the test).
# The naive inner loss (-log pi * r) has the Hessian mean_j (-r_j / SIGMA^2), of mean
# (d^2 + SIGMA^2) / SIGMA^2 = +1.25 instead of J'' = -2: its estimator's mean is about 0.90.
# First-order MAML drops (1 + ALPHA H_hat): about 0.80.
MU, GOAL, SIGMA, ALPHA = 0.0, 0.5, 1.0, 0.1
GROUPS, TRIALS, N_PRE, M_POST = 200, 100, 200, 100


def j_prime(mu: float) -> float:
    return -2 * (mu - GOAL)


def f_prime(mu: float) -> float:
    return j_prime(mu + ALPHA * j_prime(mu)) * (1 + ALPHA * -2)


def bandit_policy(params, obs):
    mean = params["mu"].view(-1, 1, 1, 1).expand(*obs.shape[:-1], 1)
    return Independent(Normal(mean, torch.full_like(mean, SIGMA)), 1)


def bandit_samples(means: torch.Tensor, n: int, gen: torch.Generator) -> Samples:
    """`n` one-step episodes per trial from N(means[i], SIGMA^2); advantage = reward."""
    trials = means.shape[0]
    actions = means.view(-1, 1, 1, 1) + SIGMA * torch.randn(trials, n, 1, 1, generator=gen)
    rewards = -((actions.squeeze(-1) - GOAL) ** 2)
    return Samples(torch.zeros(trials, n, 1, 1), actions, rewards, torch.ones(trials, n, 1))


def bandit_estimates(
    inner_loss, first_order: bool = False, steps: int = 1, n_pre: int = N_PRE
) -> torch.Tensor:
    """`groups` independent estimates of d F / d mu (minus the outer loss's gradient), each
    the mean over `TRIALS` tasks of a batch (each task: its own pre- and post-update samples,
    phi = MU shared, so `meta_gradient`'s sum over tasks / TRIALS is the batch's mean). With
    `steps` > 1 each inner step samples `n_pre` fresh actions from the policy it adapts."""
    gen = torch.Generator().manual_seed(0)
    phi = {"mu": torch.tensor([MU], dtype=torch.float64)}
    out = []
    with default_dtype(torch.float64):
        for _ in range(GROUPS):
            pres, params = [], None
            for j in range(steps):
                means = torch.full((TRIALS,), MU) if params is None else params["mu"].view(-1)
                pres.append(bandit_samples(means, n_pre, gen))
                params = adapt(
                    bandit_policy,
                    phi if params is None else params,
                    pres[-1],
                    ALPHA,
                    create_graph=False,
                    inner_loss=inner_loss,
                    stacked=j > 0,
                )
            assert params is not None
            post = bandit_samples(params["mu"].view(-1), M_POST, gen)
            grads, _ = meta_gradient(
                bandit_policy, phi, pres, post, ALPHA, inner_loss, first_order=first_order
            )
            out.append(-grads["mu"] / TRIALS)
    return torch.cat(out)


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def expected_lvc_mean() -> float:
    d = MU - GOAL
    cov = (44 * d + 8 * d**3 / SIGMA**2) / N_PRE
    return f_prime(MU) - 2 * ALPHA**2 * cov


def test_lvc_meta_gradient_matches_the_closed_form_and_naive_and_first_order_do_not(one_thread):
    """Mean of 200 batch estimates (20,000 tasks) within 4 standard errors (SE about 0.0026)
    of the exact mean; the naive-Hessian and first-order estimators, run on the same samples,
    are more than 20 standard errors off F'(mu) = 0.64."""
    est = bandit_estimates(lvc_loss)
    mean, se = est.mean().item(), est.std().item() / math.sqrt(GROUPS)
    assert se < 0.004
    assert abs(mean - expected_lvc_mean()) < 4 * se, (mean, se, expected_lvc_mean())
    naive = bandit_estimates(reinforce_loss).mean().item()
    assert abs(naive - f_prime(MU)) > 20 * se, naive
    assert naive == pytest.approx(0.9, abs=0.03)
    first = bandit_estimates(lvc_loss, first_order=True).mean().item()
    assert abs(first - f_prime(MU)) > 20 * se, first
    assert first == pytest.approx(0.8, abs=0.03)


def f_prime_two_steps(mu: float) -> float:
    """Two inner steps: theta_1 = mu + ALPHA J'(mu), theta_2 = theta_1 + ALPHA J'(theta_1), so
    F'(mu) = J'(theta_2) (1 + ALPHA J'')^2 (J'' = -2 everywhere)."""
    theta_1 = mu + ALPHA * j_prime(mu)
    return j_prime(theta_1 + ALPHA * j_prime(theta_1)) * (1 + ALPHA * -2) ** 2


def test_two_step_lvc_meta_gradient_matches_the_closed_form_and_first_order_does_not(
    one_thread,
):
    """Two inner steps, each on fresh samples of the policy it adapts (the learner's
    multi-step adaptation): the estimator chains each step's LVC Jacobian
    (1 + ALPHA H_hat_j) and is unbiased for F'(mu) = 0.4096 up to the covariance terms of the
    one-step test, one per step, each below a quarter of the standard error at 800 samples per
    step (0.0023 * 200 / 800, times the chain's factor 0.8; 3,000 groups gave 0.4098 ±
    0.0005). First-order MAML (no Jacobians: about 0.64) and the naive Hessian (about 0.80)
    are far off. (One torch thread: beside another job, spinning threads made it 30x slower.)"""
    n_pre = 800
    est = bandit_estimates(lvc_loss, steps=2, n_pre=n_pre)
    mean, se = est.mean().item(), est.std().item() / math.sqrt(GROUPS)
    assert se < 0.004
    assert abs(mean - f_prime_two_steps(MU)) < 4 * se, (mean, se, f_prime_two_steps(MU))
    first = bandit_estimates(lvc_loss, first_order=True, steps=2, n_pre=n_pre).mean().item()
    assert first == pytest.approx(0.64, abs=0.03)
    naive = bandit_estimates(reinforce_loss, steps=2, n_pre=n_pre).mean().item()
    assert naive == pytest.approx(0.80, abs=0.03)


# -- the learner: navigation2d, small -----------------------------------------------------------
CPU = torch.device("cpu")


def maml_recipe(train=None, learner=None):
    data = {
        "task": {"name": "navigation2d"},
        "train": {
            "algorithm": "maml",
            "outer_optimizer": "trpo",
            "meta_iterations": 2,
            "meta_batch": 4,
            "inner_steps": 1,
            "inner_lr": 0.1,
            "meta_step": 0.01,
            "log_every": 1,
        },
        "learner": {"inner": "vpg", "n_envs": 5, "n_steps": 100, "log_std_init": -1.5},
        "eval": {"tasks": 4, "steps": [0, 1]},
    }
    data["train"].update(train or {})
    data["learner"].update(learner or {})
    return recipe_from_dict(data, "test")


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def adaptation_of(recipe):
    """A learner of `recipe`, one adaptation of 4 training tasks, its meta-gradient and what
    the learner handed on with it (metrics, the outer objective)."""
    meta = build_meta_learner(recipe, CPU)
    phi = meta.phi()
    rng = task_rng(0, Split.TRAIN, 0)
    tasks = meta.dist.sample(4, rng, Split.TRAIN)
    adaptation = meta.adapt(phi, tasks, rng)
    handed = meta.meta_gradient(adaptation)
    return meta, phi, adaptation, handed.gradient, handed


@pytest.fixture(scope="module")
def adapted(one_thread):
    """A maml learner, one adaptation of 4 tasks and its outer objective."""
    return adaptation_of(maml_recipe())


@pytest.fixture(scope="module")
def adapted_two_steps(one_thread):
    """The same with two inner steps (each on fresh episodes of the policy it adapts)."""
    return adaptation_of(maml_recipe(train={"inner_steps": 2}))


@pytest.fixture(scope="module")
def adapted_every_step(one_thread):
    """Two inner steps, the outer objective judging both steps' policies."""
    return adaptation_of(maml_recipe(train={"inner_steps": 2}, learner={"outer_every_step": True}))


def test_every_step_objective_is_the_mean_of_the_one_judged_step_objectives(
    adapted_every_step,
):
    """Judging every step's policy (MAML++'s multi-step loss) is the mean of two MAML-RL
    objectives on the same episodes: theta_1' after one step judged on the episodes it
    sampled for the second step, and theta_2' after two judged on the post-update ones. Its
    gradient through the adaptation and its value are their means."""
    meta, phi, adaptation, grads, handed = adapted_every_step
    objective = handed.objective.objective
    d0, d1 = objective.pre_steps
    lr = meta.recipe.train.inner_lr
    first = MetaObjective(meta.policy_fn, phi, [d0], d1, lr)
    last = MetaObjective(meta.policy_fn, phi, [d0, d1], objective.post, lr)
    g1, l1 = first.gradient(phi)
    g2, l2 = last.gradient(phi)
    for k, g in grads.items():
        torch.testing.assert_close(g, (g1[k] + g2[k]) / 2, rtol=1e-4, atol=1e-7)
    _, both = objective.gradient(phi)
    torch.testing.assert_close(both.surrogate, (l1.surrogate + l2.surrogate) / 2)


@pytest.mark.parametrize("fixture", ["adapted", "adapted_every_step"])
def test_the_learner_reuses_its_adaptation_and_surrogate_without_changing_a_bit(request, fixture):
    """The learner hands the objective the adaptation it rolled out with (`path`) and TRPO
    the surrogate at phi it computed with the gradient, instead of redoing both: the old
    policies, the step and its metrics are the same, bit for bit, as when they are redone."""
    meta, phi, adaptation, grads, handed = request.getfixturevalue(fixture)
    ctx = adaptation.context
    given = handed.objective.objective
    redone = MetaObjective(
        meta.policy_fn,
        ctx.phi,
        ctx.pre,
        given.post,
        meta.recipe.train.inner_lr,
        every_step=meta.settings.outer_every_step,
    )
    for a, b in zip(given.old_log_probs, redone.old_log_probs, strict=True):
        assert torch.equal(a, b)
    fast, fast_metrics = trust_region_step(
        phi, given, grads, lambda x: x, 4, surrogate_at_phi=handed.objective.surrogate
    )
    slow, slow_metrics = trust_region_step(phi, redone, grads, lambda x: x, 4)
    assert fast_metrics == slow_metrics
    for k in phi:
        assert torch.equal(fast[k], slow[k]), k


@pytest.mark.parametrize("inner_steps", [0, 1])
def test_every_step_with_one_step_or_none_is_maml_rls_objective(one_thread, inner_steps):
    """With one inner step (or none: the joint baseline) there is only the last policy to
    judge: `outer_every_step` changes nothing, bit for bit."""
    results = []
    for every in (False, True):
        recipe = maml_recipe(
            train={"inner_steps": inner_steps}, learner={"outer_every_step": every}
        )
        _, _, _, grads, handed = adaptation_of(recipe)
        results.append((grads, handed.metrics))
    (g0, m0), (g1, m1) = results
    timing = ("seconds_physics", "seconds_policy", "seconds_update")
    assert {k: v for k, v in m0.items() if k not in timing} == {
        k: v for k, v in m1.items() if k not in timing
    }
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k


def test_an_adaptation_path_of_the_wrong_length_is_refused(adapted_two_steps):
    meta, phi, adaptation, _, handed = adapted_two_steps
    ctx = adaptation.context
    with pytest.raises(ValueError, match="path holds 1 policies, the adaptation 2"):
        MetaObjective(
            meta.policy_fn,
            phi,
            ctx.pre,
            handed.objective.objective.post,
            meta.recipe.train.inner_lr,
            path=ctx.path[:1],
        )


def test_two_step_adaptation_is_what_the_evaluation_does(adapted_two_steps):
    """Training adapts as `metarl eval` does for k = 2 (the learner's `run`: a rollout, a VPG
    step, a fresh rollout, a VPG step, on the same seeds): the same theta'' per task; each
    step's samples kept for the meta-gradient; the env steps of both rollouts counted."""
    meta, phi, adaptation, grads, _ = adapted_two_steps
    ctx = adaptation.context
    assert len(ctx.pre) == 2
    run = meta.run(phi, ctx.tasks, ctx.seeds, 2)
    for k, v in run.params.items():
        torch.testing.assert_close(adaptation.params[k], v, rtol=1e-5, atol=1e-6)
    assert adaptation.metrics["env_steps"] == 2 * 4 * 5 * 100
    assert all(torch.isfinite(g).all() for g in grads.values())


def test_lvc_inner_step_is_the_vpg_step(adapted):
    """The LVC loss's gradient at phi is the VPG gradient (`metarl.rl.vpg`, which the
    first-order learner steps with), so theta' is the same policy either way."""
    meta, phi, adaptation, _, _ = adapted
    (pre,) = adaptation.context.pre
    rollout_like = type("R", (), {})()
    rollout_like.obs, rollout_like.actions = pre.obs, pre.actions
    rollout_like.first_episode = pre.mask
    expected = {
        k: v - 0.1 * g
        for (k, v), g in zip(
            stack(phi, 4).items(),
            per_task_gradients(
                lambda p: vpg_loss(meta.policy, p, rollout_like, pre.advantages), stack(phi, 4)
            )[0].values(),
            strict=True,
        )
    }
    for k, v in expected.items():
        torch.testing.assert_close(adaptation.params[k], v, rtol=1e-5, atol=1e-6)
    assert not torch.equal(adaptation.params["action_net.bias"], stack(phi, 4)["action_net.bias"])


def test_second_order_meta_gradient_differs_from_first_order_by_the_adaptation_term(adapted):
    """The learner's meta-gradient is `MetaObjective.gradient`; first order (the inner step's
    derivative dropped) is a different vector of the same scale."""
    meta, phi, adaptation, grads, handed = adapted
    objective, metrics = handed.objective.objective, handed.metrics
    again, _ = objective.gradient(phi)
    first, _ = objective.gradient(phi, first_order=True)
    flat = torch.cat([grads[k].flatten() for k in grads])
    torch.testing.assert_close(flat, torch.cat([again[k].flatten() for k in again]))
    diff = flat - torch.cat([first[k].flatten() for k in first])
    assert 0.01 < diff.norm() / flat.norm() < 1.0
    assert math.isfinite(metrics["return_after"]) and metrics["query_env_steps"] == 4 * 5 * 100


def test_trpo_step_keeps_the_kl_under_the_bound_and_improves_the_surrogate(adapted):
    """After the step, measured anew on the same samples: the mean KL between the post-update
    sampling policies and the re-adapted ones is <= max_kl (0.01), the mean surrogate loss is
    lower, and the step is not nothing (KL above a tenth of the bound)."""
    meta, phi, adaptation, grads, handed = adapted
    objective = handed.objective.objective
    delta = {k: v / 4 for k, v in grads.items()}
    new_phi, metrics = trust_region_step(phi, objective, delta, lambda x: x, 4)
    with torch.no_grad():
        before = objective.losses(phi, create_graph=False)
        after = objective.losses(new_phi, create_graph=False)
    assert float(before.kl.mean()) == pytest.approx(0.0, abs=1e-7)
    kl = float(after.kl.mean())
    assert TRPOSettings().max_kl / 10 < kl <= TRPOSettings().max_kl
    assert float(after.surrogate.mean()) < float(before.surrogate.mean())
    assert metrics["trpo_kl"] == pytest.approx(kl, rel=1e-5)
    assert metrics["trpo_loss_after"] == pytest.approx(float(after.surrogate.mean()), rel=1e-5)


def test_trpo_with_a_fisher_fraction_still_keeps_the_kl_under_the_bound(adapted):
    """The Fisher-vector products on 2 of each task's 5 episodes (`fisher_fraction` 0.4):
    the line search still measures the KL and surrogate on every episode, so the step keeps
    its constraint. (How close the direction is to the full metric's depends on the samples
    against the ~6,000 weights: 0.997 cosine on HalfCheetahDir's 40 x 5 x 200 samples,
    `scripts/benchmarks/bench_trpo.py`; this problem has 800, so only inequality is pinned.)"""
    meta, phi, adaptation, grads, handed = adapted
    objective = handed.objective.objective
    assert objective.pre.head(0.4).obs.shape[1] == 2 and objective.pre.head(1.0) is objective.pre
    delta = {k: v / 4 for k, v in grads.items()}
    full, _ = trust_region_step(phi, objective, delta, lambda x: x, 4)
    part, metrics = trust_region_step(
        phi, objective, delta, lambda x: x, 4, TRPOSettings(fisher_fraction=0.4)
    )
    with torch.no_grad():
        after = objective.losses(part, create_graph=False)
    assert 0 < float(after.kl.mean()) <= TRPOSettings().max_kl
    assert metrics["trpo_loss_after"] < metrics["trpo_loss_before"]
    steps = [torch.cat([(p[k] - phi[k]).flatten() for k in phi]) for p in (full, part)]
    assert not torch.equal(steps[0], steps[1])


@pytest.mark.parametrize(
    "outer,inner_steps", [("trpo", 1), ("adam", 1), ("promp", 1), ("promp", 0), ("trpo", 2)]
)
def test_maml_runs_and_resumes_exactly(tmp_path, one_thread, outer, inner_steps):
    """4 iterations in one go equal 2, a stop (the Ctrl-C path) and a resume of 2: the same
    weights bit for bit; the run trains (weights move, returns finite)."""
    train = {
        "meta_iterations": 4,
        "outer_optimizer": outer,
        "meta_step": 1e-3,
        "inner_steps": inner_steps,
    }
    recipe = maml_recipe(train=train)
    start = build_meta_learner(recipe, CPU).phi()
    whole, _ = whole_and_resumed(recipe, tmp_path, 2)
    end = whole.model.state_dict()
    assert not torch.equal(start["action_net.weight"], end["action_net.weight"])
    rows = whole.history
    logged = "return_before" if inner_steps == 0 else "return_after"  # joint: phi's alone
    assert len(rows) == 4 and all(math.isfinite(r[logged]) for r in rows)


@pytest.mark.parametrize(
    "recipe,words",
    [
        (lambda: maml_recipe(learner={"inner": "ppo"}), 'inner = "vpg"'),
        (
            lambda: maml_recipe(train={"inner_steps": 2, "outer_optimizer": "promp"}),
            "inner_steps = 2",
        ),
        (lambda: maml_recipe(train={"algorithm": "fomaml"}), 'algorithm = "maml"'),
        (lambda: maml_recipe(learner={"backend": "sb3"}), 'algorithm = "maml"'),
        (
            lambda: with_overrides(resolve_recipe("sine"), "train", outer_optimizer="trpo"),
            'outer_optimizer = "trpo" runs with RL tasks',
        ),
        (
            lambda: with_overrides(resolve_recipe("sine"), "train", outer_optimizer="promp"),
            'outer_optimizer = "promp" runs with RL tasks',
        ),
        (lambda: maml_recipe(train={"algorithm": "fomaml", "outer_optimizer": "promp"}), "maml"),
        (lambda: maml_recipe(learner={"trpo_fisher_fraction": 0.0}), "must be in (0, 1]"),
        (
            lambda: maml_recipe(
                train={"algorithm": "fomaml", "outer_optimizer": "adam"},
                learner={"outer_every_step": True},
            ),
            "learner.outer_every_step = true: use outer_every_step = false with RL tasks, "
            'train.algorithm = "fomaml"',
        ),
    ],
    ids=[
        "ppo-inner",
        "promp-two-steps",
        "trpo-fomaml",
        "trpo-sb3",
        "trpo-supervised",
        "promp-supervised",
        "promp-fomaml",
        "fisher-fraction",
        "every-step-fomaml",
    ],
)
def test_settings_maml_rl_cannot_run_are_refused_by_name(recipe, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        build_meta_learner(recipe(), CPU)


@pytest.mark.parametrize("method", FISHER_METHODS)
@pytest.mark.parametrize("fixture", ["adapted", "adapted_two_steps", "adapted_every_step"])
def test_kl_hessian_product_equals_double_backprop_through_the_adaptation(request, fixture, method):
    """`MetaObjective.kl_hessian` (J^T F J) against differentiating the KL's gradient with
    respect to phi, taken through the adaptation with create_graph, a second time (what
    pytorch-maml-rl's `hessian_vector_product` does), on random vectors; with two inner
    steps J is the product of the steps' Jacobians, and judging both steps' policies the
    mean of the two J^T F J. Both methods: three Hessian-vector products, and forward mode
    with the closed-form KL Hessian (`metarl.rl.fisher`)."""
    meta, phi, adaptation, _, handed = request.getfixturevalue(fixture)
    objective = handed.objective.objective
    product = objective.kl_hessian(phi, method=method)
    leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
    kl = objective.losses(leaves, create_graph=True).kl.sum()
    used = [
        k for k in leaves if k.startswith(("mlp_extractor.policy_net", "action_net", "log_std"))
    ]
    grads = torch.autograd.grad(kl, [leaves[k] for k in used], create_graph=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        v = {k: torch.randn(x.shape, generator=gen) for k, x in phi.items()}
        dot = sum((g * v[k]).sum() for g, k in zip(grads, used, strict=True))
        direct = torch.autograd.grad(dot, [leaves[k] for k in used], retain_graph=True)
        fast = product(v)
        for k, d in zip(used, direct, strict=True):
            torch.testing.assert_close(fast[k], d, rtol=1e-3, atol=1e-6 * d.abs().max().item())
        for k in set(phi) - set(used):
            assert not fast[k].any(), k


# -- forward velocity beside the return (locomotion) -------------------------------------------
def hc_dir_recipe():
    return recipe_from_dict(
        {
            "task": {"name": "halfcheetah-dir"},
            "train": {"algorithm": "fomaml", "meta_batch": 2, "inner_steps": 1, "inner_lr": 0.1},
            "learner": {"inner": "vpg", "n_envs": 3, "n_steps": 30, "batch_size": 30},
            "eval": {"tasks": 4, "steps": [0, 1]},
        },
        "test",
    )


def test_rollout_velocity_is_the_one_in_the_reward(one_thread):
    """HalfCheetahDir's reward is d * v - 0.05 |clip(a)|^2 per step: the recorded per-episode
    mean forward velocity equals the one recovered from the rewards and actions."""
    meta = build_meta_learner(hc_dir_recipe(), CPU)
    tasks = meta.dist.sample(2, np.random.default_rng(3), Split.TRAIN)
    env = meta._env(tasks)
    noise = RolloutNoise([5, 6], 0)
    rollout = collect(meta.policy, stack(meta.phi(), 2), env, noise, 30, 0.99, None, meta._watch)
    direction = torch.tensor([t.params["direction"] for t in tasks]).view(2, 1, 1)
    ctrl = 0.05 * (rollout.actions.clamp(-1, 1) ** 2).sum(-1)
    velocity = ((rollout.rewards + ctrl) / direction).mean(-1)  # episodes of 30 steps
    recorded = rollout.first.means["x_velocity"]
    np.testing.assert_allclose(recorded, velocity.numpy(), rtol=1e-4, atol=1e-4)
    assert np.abs(recorded).max() > 1e-3


def test_locomotion_curves_report_velocity_and_direction(one_thread):
    """HalfCheetahDir's evaluation: the return, the mean forward velocity and the fraction of
    episodes running the asked way (in [0, 1], a multiple of 1/n_envs per task), consistent
    with each other: a task whose every episode runs its way has a velocity of its sign."""
    meta = build_meta_learner(hc_dir_recipe(), CPU)
    curves = meta.curves([0, 1], 4)
    assert list(curves) == ["return", "forward_velocity", "velocity_asked_way", "runs_asked_way"]
    way = curves["runs_asked_way"].per_task
    assert ((way >= 0) & (way <= 1)).all()
    np.testing.assert_allclose(way * 3, np.round(way * 3), atol=1e-9)
    tasks, _ = meta.eval_tasks(4)
    d = np.array([t.params["direction"] for t in tasks])
    v = curves["forward_velocity"].per_task
    assert (np.sign(v[way == 1]) == np.broadcast_to(d, v.shape)[way == 1]).all()
    assert (np.sign(v[way == 0]) == -np.broadcast_to(d, v.shape)[way == 0]).all()
    # on a line the velocity along the asked way is the forward velocity times the direction
    np.testing.assert_allclose(curves["velocity_asked_way"].per_task, v * d, rtol=1e-12)
    nav = build_meta_learner(maml_recipe(), CPU)
    assert list(nav.curves([0], 2)) == ["return"]


def test_the_asked_way_on_a_line_is_the_sign_and_on_a_plane_within_90_degrees():
    class Task:
        def __init__(self, direction: float) -> None:
            self.params = {"direction": direction}

    line = [Task(-1.0), Task(1.0)]
    vx = np.array([[-0.5, 0.2], [0.3, -0.1]])
    np.testing.assert_array_equal(runs_asked_way(vx, line), [[1, 0], [1, 0]])
    plane = [Task(0.0), Task(math.pi / 2), Task(math.pi)]
    vx = np.array([[1.0, -0.1], [1.0, -2.0], [-1.0, 0.1]])
    vy = np.array([[5.0, 5.0], [-0.1, 0.1], [3.0, 0.0]])
    # theta 0: (1, 5) points 79 deg off, (-0.1, 5) 91 deg; pi/2: (1, -0.1) 96 deg, (-2, 0.1)
    # 87 deg; pi: (-1, 3) 72 deg, (0.1, 0) 180 deg
    np.testing.assert_array_equal(runs_asked_way(vx, plane, vy), [[1, 0], [0, 1], [1, 0]])
    along = velocity_asked_way(vx, plane, vy)  # the component along (cos theta, sin theta)
    np.testing.assert_allclose(along, [[1.0, -0.1], [-0.1, 0.1], [1.0, -0.1]], atol=1e-12)
    assert runs_asked_way(vx, plane) is None  # an angle is no sign: the plane needs y
    assert runs_asked_way(vx, [Task(1.0), object(), Task(-1.0)]) is None


def test_ant_dir_curves_report_the_asked_way_on_the_plane(one_thread):
    """AntDir reports x and y velocities: each episode's mean velocity of both is recorded,
    and the evaluation's asked-way fraction is the share of episodes whose mean velocity
    points within 90 degrees of the task's direction."""
    recipe = with_overrides(hc_dir_recipe(), "task", name="ant-dir")
    meta = build_meta_learner(recipe, CPU)
    tasks = meta.dist.sample(2, np.random.default_rng(3), Split.TRAIN)
    rollout = collect(
        meta.policy,
        stack(meta.phi(), 2),
        meta._env(tasks),
        RolloutNoise([5, 6], 0),
        30,
        0.99,
        watch=meta._watch,
    )
    vx, vy = rollout.first.means.get("x_velocity"), rollout.first.means.get("y_velocity")
    assert vx is not None and vy is not None and vx.shape == vy.shape == (2, 3)
    assert np.abs(vy).max() > 1e-3 and not np.array_equal(vx, vy)
    theta = np.array([t.params["direction"] for t in tasks])[:, None]
    np.testing.assert_array_equal(
        runs_asked_way(vx, tasks, vy), (np.cos(theta) * vx + np.sin(theta) * vy > 0) * 1.0
    )
    curves = meta.curves([0, 1], 4)
    assert list(curves) == ["return", "forward_velocity", "velocity_asked_way", "runs_asked_way"]
    way = curves["runs_asked_way"].per_task
    assert ((way >= 0) & (way <= 1)).all()
    np.testing.assert_allclose(way * 3, np.round(way * 3), atol=1e-9)


def test_two_ranks_take_the_trust_region_step_one_rank_takes(tmp_path):
    """maml + trpo over 2 gloo ranks (2 tasks each): the gradient, every Fisher-vector product
    and the line search's numbers are summed over ranks, so the step equals one rank's up to
    float32 rounding. The ranks add the 4 tasks' terms in another order ((a + b) + (c + d)
    against ((a + b) + c) + d): each sum differs by a few units of float32's roundoff (2**-24,
    6e-8, relative), and 10 CG iterations at damping 1e-5 amplify that. Measured on two
    machines: 1.2e-3 of the step's norm here (largest weight difference 2.6e-5 in a step of
    0.025), ~1.6e-3 on the other (4e-5 in the same step); x.Fx differed by 6e-4 relative. So
    the step and the line search's numbers are compared relative to their size at 1e-2: six
    times the larger figure, while a rank's share left out or counted twice changes the
    summed gradient (two of its four tasks' terms), and with it the step, by O(1) of it."""
    recipe = maml_recipe(train={"meta_iterations": 1, "checkpoint_every": 100}).to_dict()
    MetaTrainer.start(recipe_from_dict(recipe, "t"), tmp_path / "one", CPU).fit()
    spawn(tmp_path, tmp_path / "two", recipe)
    start = build_meta_learner(recipe_from_dict(recipe, "t"), CPU).phi()
    w1, w2 = weights(tmp_path / "one"), weights(tmp_path / "two")
    step1 = torch.cat([(w1[k] - start[k]).flatten() for k in start])
    step2 = torch.cat([(w2[k] - start[k]).flatten() for k in start])
    assert step1.abs().max() > 1e-3  # a step was taken
    error = ((step2 - step1).norm() / step1.norm()).item()
    assert error < 1e-2, f"the two ranks' step differs from one rank's by {error:.2e} of it"
    # The logged row is the whole meta-batch's, every key: the returns are float64 means
    # over the 4 tasks' rollouts, the same rollouts on 1 and 2 ranks in the first iteration
    # (measured 6.5e-9 relative apart, from the 1-rank run's thread count), the env steps
    # their sum; TRPO's numbers, summed over ranks inside the step, differ as the step does
    # (measured 1.4e-3 on the loss after it and 2.5e-3 on the KL: 1e-2; 5.8e-3 on x.Fx, the
    # CG direction's curvature: 5e-2), where a rank's share left out moves them by O(1).
    # The surrogate at phi (query_loss, trpo_loss_before) is minus the mean of
    # per-task normalized advantages: 0 up to float32 rounding of O(1) terms (measured
    # |values| ~1e-8, 1 and 2 ranks 9e-9 apart), so 1e-6 absolute on top of 1e-5 relative.
    trpo = {"trpo_loss_after": 1e-2, "trpo_kl": 1e-2, "trpo_shs": 5e-2}
    assert_same_metrics(tmp_path / "one", tmp_path / "two", rel=1e-5, atol=1e-6, looser=trpo)


@pytest.mark.skipif(
    importlib.util.find_spec("metaworld") is None, reason="Meta-World not installed"
)
def test_ml10_rank_shares_roll_out_and_adapt_as_the_whole_meta_batch(one_thread):
    """What two ranks of `metaworld-ml10-maml` rely on: the meta-batch's two halves, each
    adapted on its own (its tasks' skill groups in their own `MetaWorldMixedVector`, its slots'
    seeds), give every task the rollout and the adapted weights the whole meta-batch gives it,
    bit for bit. (A 1- and 2-rank run of the recipe agree the same way on iteration 1's
    rollouts; their weights then differ by float summation order alone, docs/results/speed.md.)
    A half that drew other tasks, seeds or reset states than its slots' differs by O(1)."""
    recipe = with_overrides(
        with_overrides(resolve_recipe("metaworld-ml10-maml"), "train", meta_batch=10),
        "learner",
        n_envs=1,
        n_steps=60,
        batch_size=60,
    )
    meta = build_meta_learner(recipe, CPU)
    seen: list[torch.Tensor] = []
    collect_one = meta._collect

    def recorded(params, env, noise):
        rollout = collect_one(params, env, noise)
        seen.append(torch.cat([rollout.obs.flatten(1), rollout.rewards.flatten(1)], 1))
        return rollout

    meta._collect = recorded
    phi = meta.phi()
    rng = task_rng(recipe.train.seed, Split.TRAIN, 0)
    tasks = meta.dist.sample(10, rng, Split.TRAIN)
    assert len({t.skill for t in tasks[:5]}) > 1 and len({t.skill for t in tasks[5:]}) > 1
    shares = [slice(None), slice(0, 5), slice(5, 10)]
    params = [
        meta.adapt(phi, tasks, task_rng(recipe.train.seed, Split.TRAIN, 0), s).params
        for s in shares
    ]
    assert torch.equal(seen[0], torch.cat(seen[1:]))
    for name, whole in params[0].items():
        assert torch.equal(whole, torch.cat([params[1][name], params[2][name]])), name
    assert not torch.equal(params[0]["action_net.weight"], stack(phi, 10)["action_net.weight"])


def test_maml_training_logs_velocity_and_direction_on_halfcheetah_dir(tmp_path, one_thread):
    """One smoke iteration of maml + trpo on HalfCheetahDir: the training metrics carry the
    forward velocity and the asked-way fraction before and after the update, and where the
    time went (physics, policy, updates: together less than the iteration)."""
    data = hc_dir_recipe().to_dict()
    data["train"].update(algorithm="maml", outer_optimizer="trpo", meta_iterations=1)
    trainer = MetaTrainer.start(recipe_from_dict(data, "t"), tmp_path / "hc", CPU)
    trainer.fit()
    row = trainer.history[-1]
    parts = [row[f"seconds_{k}"] for k in ("physics", "policy", "update")]
    assert all(p > 0 for p in parts) and sum(parts) <= row["elapsed_s"]
    for when in ("before", "after"):
        assert math.isfinite(row[f"forward_velocity_{when}"])
        assert 0.0 <= row[f"runs_asked_way_{when}"] <= 1.0
        assert math.isfinite(row[f"velocity_asked_way_{when}"])


def test_promp_steps_lower_its_objective_and_adapt_the_kl_coefficient(adapted):
    """ProMP's 5 Adam steps (lr 1e-3) on one batch: its clipped objective, measured on the
    same samples after the steps, is lower than at phi_old; the coefficient moves by ProMP's
    rule (halved below target / 1.5, doubled above target * 1.5)."""
    meta, phi, adaptation, grads, handed = adapted
    model = copy.deepcopy(meta.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    delta = {k: v / 4 for k, v in grads.items()}
    coeff, metrics = promp_step(
        model, handed.objective.objective, delta, lambda x: x, 4, optimizer, 1e-3, 0.01
    )
    assert metrics["promp_loss_after"] < metrics["promp_loss_before"]
    kl = metrics["promp_inner_kl"]
    assert kl > 0
    expected = 0.005 if kl < 0.01 / 1.5 else 0.02 if kl > 0.015 else 0.01
    assert coeff == expected
    moved = model.state_dict()["action_net.bias"] - phi["action_net.bias"]
    assert moved.abs().max() > 1e-4
    # the coefficient never halves below its floor (its backward pass would reach float32's
    # subnormals), and a smaller one saved by an older run is lifted to it
    floor = ProMPSettings().min_inner_kl_coeff
    for start in (floor, 1e-33):
        model = copy.deepcopy(meta.model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        objective = handed.objective.objective
        coeff, metrics = promp_step(model, objective, delta, lambda x: x, 4, optimizer, 1e-3, start)
        assert metrics["promp_kl_coeff"] == floor
        kl = metrics["promp_inner_kl"]
        assert coeff == (floor if kl < 0.01 / 1.5 else 2 * floor if kl > 0.015 else floor)


def test_promp_objective_equals_its_written_out_form(adapted):
    """`promp_losses` evaluates pi_phi on the pre-update states once, for the inner step and
    the inner KL: at a phi moved off phi_old its values and gradient equal ProMP's objective
    written out (re-adapt with `ratio_loss`, the clipped surrogate, the KL from its own
    forward); without a graph the same values. At phi_old the clipped objective is the
    meta-gradient's surrogate (what `promp_step` takes as its value before the steps)."""
    meta, phi, adaptation, grads, handed = adapted
    objective = handed.objective.objective
    moved = {k: (v - 0.05 * grads[k]).detach() for k, v in phi.items()}
    pre = objective.pre
    pre = Samples(
        pre.obs, pre.actions, pre.advantages, pre.mask, objective.pre_old.log_prob(pre.actions)
    )

    def written_out(params):
        adapted = adapt(
            objective.policy_fn, params, pre, 0.1, create_graph=True, inner_loss=ratio_loss
        )
        surrogate = objective._clipped_surrogate(adapted, 0.2)
        base = {k: v.unsqueeze(0).expand(4, *v.shape) for k, v in params.items()}
        dist = objective.policy_fn(base, pre.obs)
        return surrogate, episode_mean(kl_divergence(objective.pre_old, dist), pre.mask)

    results = []
    for losses_of in (lambda p: objective.promp_losses(p, 0.2), written_out):
        leaves = {k: v.clone().requires_grad_() for k, v in moved.items()}
        surrogate, kl = losses_of(leaves)
        total = surrogate.sum() + 0.3 * kl.sum()
        found = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
        results.append((surrogate, kl, found))
    (s1, k1, g1), (s2, k2, g2) = results
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(k1, k2)
    assert float(k1.detach().sum()) > 0
    for a, b in zip(g1, g2, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    s3, k3 = objective.promp_losses(moved, 0.2, create_graph=False)
    assert not s3.requires_grad and not k3.requires_grad
    torch.testing.assert_close(s3, s1.detach())
    torch.testing.assert_close(k3, k1.detach())
    at_old, kl_old = objective.promp_losses(phi, 0.2, create_graph=False)
    torch.testing.assert_close(at_old, handed.objective.surrogate, rtol=1e-5, atol=1e-6)
    assert float(kl_old.abs().max()) < 1e-6


# -- Meta-SGD for RL: learned per-parameter inner rates, through the same machinery ----------
def metasgd_adaptation(inner_steps: int):
    """A metasgd learner (alpha = 0.1 everywhere, then perturbed so that the rates differ
    per entry), one adaptation of 4 tasks and its outer objective."""
    train = {"algorithm": "metasgd", "inner_steps": inner_steps}
    meta = build_meta_learner(maml_recipe(train=train), CPU)
    gen = torch.Generator().manual_seed(3)
    meta.inner_rates = {
        k: v * (1 + 0.5 * torch.rand(v.shape, generator=gen)) for k, v in meta.inner_rates.items()
    }
    phi = meta.phi()
    rng = task_rng(0, Split.TRAIN, 0)
    tasks = meta.dist.sample(4, rng, Split.TRAIN)
    adaptation = meta.adapt(phi, tasks, rng)
    return meta, phi, adaptation, meta.meta_gradient(adaptation)


@pytest.fixture(scope="module")
def metasgd(one_thread):
    return metasgd_adaptation(1)


@pytest.fixture(scope="module")
def metasgd_two_steps(one_thread):
    return metasgd_adaptation(2)


def test_metasgd_rate_gradient_is_minus_the_inner_gradient_times_the_outer_one(metasgd):
    """theta_i' = phi - alpha * g_i(phi), so d L / d alpha = -sum_i g_i * dL_i/dtheta_i'
    (elementwise): the objective's gradient in alpha against that identity, computed apart."""
    meta, phi, adaptation, handed = metasgd
    grads, objective = handed.gradient, handed.objective.objective
    rates = meta.inner_rates
    assert set(grads) == set(phi) | {RATE_PREFIX + k for k in phi}
    (pre,) = adaptation.context.pre
    leaves = {k: v.detach().requires_grad_() for k, v in stack(phi, 4).items()}
    inner = torch.autograd.grad(
        lvc_loss(meta.policy_fn, leaves, pre).sum(), list(leaves.values()), allow_unused=True
    )
    g = {
        k: torch.zeros_like(v) if x is None else x
        for (k, v), x in zip(leaves.items(), inner, strict=True)
    }
    theta = {k: (leaves[k] - rates[k] * g[k]).detach().requires_grad_() for k in leaves}
    dist = meta.policy_fn(theta, objective.post.obs)
    ratio = torch.exp(dist.log_prob(objective.post.actions) - objective.old_log_prob)
    surrogate = -episode_mean(ratio * objective.post.advantages, objective.post.mask).sum()
    outer = torch.autograd.grad(surrogate, list(theta.values()), allow_unused=True)
    for (k, _), d in zip(theta.items(), outer, strict=True):
        expected = torch.zeros_like(phi[k]) if d is None else -(g[k] * d).sum(0)
        torch.testing.assert_close(grads[RATE_PREFIX + k], expected, rtol=1e-4, atol=1e-7)
    assert grads[RATE_PREFIX + "action_net.bias"].abs().max() > 0


@pytest.mark.parametrize("method", FISHER_METHODS)
@pytest.mark.parametrize("fixture", ["metasgd", "metasgd_two_steps"])
def test_metasgd_kl_hessian_equals_double_backprop_in_weights_and_rates(request, fixture, method):
    """`kl_hessian`'s J^T F J with J = d theta' / d (phi, alpha) against differentiating the
    KL's gradient in (phi, alpha), through the adaptation (one or two steps, the same rates
    at each), a second time."""
    meta, phi, adaptation, handed = request.getfixturevalue(fixture)
    objective = handed.objective.objective
    params = adaptation.context.phi
    product = objective.kl_hessian(params, method=method)
    leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
    kl = objective.losses(leaves, create_graph=True).kl.sum()
    used = [k for k in leaves if "value" not in k]
    grads = torch.autograd.grad(kl, [leaves[k] for k in used], create_graph=True)
    gen = torch.Generator().manual_seed(1)
    v = {k: torch.randn(x.shape, generator=gen) for k, x in params.items()}
    dot = sum((g * v[k]).sum() for g, k in zip(grads, used, strict=True))
    direct = torch.autograd.grad(dot, [leaves[k] for k in used], retain_graph=True)
    fast = product(v)
    assert set(fast) == set(params)
    for k, d in zip(used, direct, strict=True):
        torch.testing.assert_close(fast[k], d, rtol=1e-3, atol=1e-6 * d.abs().max().item())


def test_metasgd_trains_its_rates_and_resumes_exactly(tmp_path, one_thread):
    """3 iterations in one go equal 1, a stop and a resume of 2: the same weights and rates
    bit for bit; the rates moved off inner_lr; evaluation adapts with them."""
    recipe = maml_recipe(train={"algorithm": "metasgd", "meta_iterations": 3})
    whole, resumed = whole_and_resumed(recipe, tmp_path, 1)
    rates = whole.meta.inner_rates
    for k, v in rates.items():
        assert torch.equal(v, resumed.meta.inner_rates[k]), k
    assert not torch.allclose(
        rates["action_net.bias"], torch.full_like(rates["action_net.bias"], 0.1)
    )
    assert whole.meta._inner(0.1).sgd.rates is rates
    _, loaded, _ = load_run(tmp_path / "whole", CPU, "meta")
    for k, v in rates.items():  # `metarl eval` adapts with the learned rates
        assert torch.equal(loaded.inner_rates[k], v), k
    # a checkpoint that lost the rates is damaged: resuming it would restart them at inner_lr
    path = tmp_path / "cut" / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    ckpt["learner"] = {}
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="damaged checkpoint.*no Meta-SGD rates"):
        MetaTrainer.resume(tmp_path / "cut", CPU)


def test_metasgd_for_rl_takes_the_trust_region_step():
    with pytest.raises(ConfigError, match=re.escape('outer_optimizer = "adam"') + ".*trpo"):
        build_meta_learner(
            maml_recipe(train={"algorithm": "metasgd", "outer_optimizer": "adam"}), CPU
        )


# -- the joint baseline with the meta run's outer step (inner_steps = 0) ----------------------
def test_joint_trpo_baseline_takes_the_trust_region_step_on_phi_itself(tmp_path, one_thread):
    """`inner_steps = 0`: no pre-update rollout, the outer episodes come from phi (their
    return logged as the only one, "before"), the Fisher products are the KL's Hessian at phi
    (J = I, against double backprop), the step keeps its KL bound; `joint_outer_recipe` spends
    the meta run's env steps in twice its iterations."""
    recipe = maml_recipe(train={"inner_steps": 0})
    meta = build_meta_learner(recipe, CPU)
    phi = meta.phi()
    rng = task_rng(0, Split.TRAIN, 0)
    tasks = meta.dist.sample(4, rng, Split.TRAIN)
    adaptation = meta.adapt(phi, tasks, rng)
    assert adaptation.context.pre == [] and adaptation.metrics["env_steps"] == 0
    handed = meta.meta_gradient(adaptation)
    grads, metrics = handed.gradient, handed.metrics
    assert math.isfinite(metrics["return_before"]) and "return_after" not in metrics
    objective = handed.objective.objective
    leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
    kl = objective.losses(leaves, create_graph=True).kl.sum()
    used = [k for k in leaves if "value" not in k]
    first = torch.autograd.grad(kl, [leaves[k] for k in used], create_graph=True)
    v = {
        k: torch.randn(x.shape, generator=torch.Generator().manual_seed(2)) for k, x in phi.items()
    }
    dot = sum((g * v[k]).sum() for g, k in zip(first, used, strict=True))
    direct = torch.autograd.grad(dot, [leaves[k] for k in used])
    fast = objective.kl_hessian(phi)(v)
    for k, d in zip(used, direct, strict=True):
        torch.testing.assert_close(fast[k], d, rtol=1e-3, atol=1e-6 * d.abs().max().item())
    new_phi, step = trust_region_step(
        phi, objective, {k: g / 4 for k, g in grads.items()}, lambda x: x, 4
    )
    assert 0 < step["trpo_kl"] <= TRPOSettings().max_kl
    assert step["trpo_loss_after"] < step["trpo_loss_before"]
    meta_run = maml_recipe()
    joint = joint_outer_recipe(meta_run)
    assert (
        joint.train.inner_steps == 0
        and joint.train.meta_iterations == 2 * meta_run.train.meta_iterations
    )
    assert meta_env_steps(joint) == meta_env_steps(meta_run)
    with pytest.raises(ConfigError, match='inner_steps = 0 runs with algorithm = "maml"'):
        build_meta_learner(maml_recipe(train={"inner_steps": 0, "algorithm": "metasgd"}), CPU)


def test_joint_promp_baseline_takes_clipped_steps_on_phi_itself(one_thread):
    """`inner_steps = 0` with ProMP's step: the clipped objective at phi on phi's own episodes
    (nothing to re-adapt, no inner KL), lowered by its Adam steps; `joint_outer_recipe` keeps
    the meta run's ProMP step and its env steps."""
    recipe = maml_recipe(train={"inner_steps": 0, "outer_optimizer": "promp", "meta_step": 1e-3})
    meta, phi, adaptation, grads, handed = adaptation_of(recipe)
    objective = handed.objective.objective
    leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
    surrogate, inner_kl = objective.promp_losses(leaves, 0.2)
    assert torch.equal(inner_kl, torch.zeros(4))
    # at phi_old the clipped objective is the surrogate (r = 1), and so is its gradient
    plain = objective.losses(leaves, create_graph=True).surrogate
    torch.testing.assert_close(surrogate, plain)
    model = meta.model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    _, step = promp_step(
        model,
        objective,
        {k: g / 4 for k, g in grads.items()},
        lambda x: x,
        4,
        optimizer,
        1e-3,
        1e-2,
    )
    assert step["promp_loss_after"] < step["promp_loss_before"] and step["promp_inner_kl"] == 0
    meta_run = maml_recipe(train={"outer_optimizer": "promp"})
    joint = joint_outer_recipe(meta_run)
    assert joint.train.outer_optimizer.value == "promp" and joint.train.inner_steps == 0
    assert meta_env_steps(joint) == meta_env_steps(meta_run)
