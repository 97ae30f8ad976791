"""Tests for the mutants of the core that scripts/tools/mutation_check.py found surviving
(`python scripts/tools/mutation_check.py metarl/algorithms.py tests/test_algorithms.py
--limit 0`: 11 of 13 killed before these), one section per module (algorithms, TRPO, ProMP,
conjugate gradient, MAML-RL's objective, iMAML, the supervised inner loop). Each compares with
what does not go through the code under test: a closed form, torch.linalg.solve, torch's own
optimizer, numbers by hand, the published settings. The scores before and after are in
docs/results/speed.md."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal

from metarl import algorithms
from metarl.cg import truncated_conjugate_gradient
from metarl.config import Algorithm, OptimizerName, with_overrides
from metarl.learners import build_meta_learner, second_order
from metarl.learners.inner_loop import InnerLoop, InnerOptimizer
from metarl.learners.second_order import implicit_meta_gradient
from metarl.optim import AdamCarry
from metarl.protocol import Split, TaskBatch
from metarl.registry import resolve_recipe
from metarl.rl.maml import MetaObjective, OuterLosses, Samples, adapt, episode_mean
from metarl.rl.promp import ProMPSettings, promp_step
from metarl.rl.trpo import TRPOSettings, TRPOStep, trust_region_step
from metarl.train import MetaTrainer
from tests.conftest import learner_for

CPU = torch.device("cpu")


def test_a_two_iteration_schedule_ends_at_its_end_value():
    """`max(total - 1, 1)` -> `max(total - 1, 2)` survived: the schedules tested were longer."""
    assert algorithms.linear_schedule(1.0, 0.0, 0, 2) == 1.0
    assert algorithms.linear_schedule(1.0, 0.0, 1, 2) == 0.0
    assert algorithms.linear_schedule(0.5, 0.1, 0, 1) == 0.5  # one iteration: the start


def _adapted(tmp_path, algorithm: str):
    """sine-maml's init adapted to 3 training tasks, under `algorithm`."""
    recipe = with_overrides(resolve_recipe("sine-maml"), "train", meta_batch=3, algorithm=algorithm)
    trainer = MetaTrainer.start(recipe, tmp_path / algorithm, CPU)
    rng = np.random.default_rng(0)
    tasks = trainer.meta.dist.sample(3, rng, Split.TRAIN)
    phi = trainer.phi()
    return trainer, phi, trainer.meta.adapt(phi, tasks, rng, trainer.world.slots(3))


def test_second_order_maml_takes_the_second_order_meta_gradient(tmp_path):
    """`second_order or GRADIENTS` -> `and` survived: MAML's meta-gradient would silently be
    first-order (FOMAML's) and every MAML test that only trains would still pass."""
    maml, phi, adaptation = _adapted(tmp_path, "maml")
    delta = algorithms.meta_delta(Algorithm.MAML, maml.meta, phi, adaptation).gradient
    fomaml, phi_again, again = _adapted(tmp_path, "fomaml")
    for k in phi:  # the same init, the same tasks: only the order of the derivative differs
        torch.testing.assert_close(phi[k], phi_again[k], rtol=0, atol=0)
    first_order = algorithms.meta_delta(Algorithm.FOMAML, fomaml.meta, phi, again).gradient
    gap = max((delta[k] - first_order[k]).abs().max().item() for k in delta)
    scale = max(first_order[k].abs().max().item() for k in delta)
    assert gap > 1e-3 * scale, (gap, scale)  # the second-order terms are there


# -- TRPO's outer step (metarl/rl/trpo.py) on a problem whose step has a closed form ----------
# `python scripts/tools/mutation_check.py metarl/rl/trpo.py --limit 0 -- tests/test_maml_rl.py
# -k "trpo or trust_region"` left the step's size (`direction * sqrt(...)` -> `/`, the 0.5 of
# s^T F s, the damping's sign), the line search's start, count and strict bounds, and the
# metrics of a rejected step untested: the tests on a real policy only asked that the KL stay
# under the bound and the surrogate fall, which a line search makes true of almost any step.


def _flat(params: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.reshape(-1) for v in params.values()])


class QuadraticObjective:
    """Stands in for `MetaObjective` where TRPO's step is known in closed form (float64): task
    i's surrogate is `g_i . d + surrogate_offset` and its KL `0.5 d^T A_i d + kl_offset`, d the
    flattened `theta - phi0`. It records every point the line search evaluates."""

    def __init__(self, phi0, g, a, *, kl_offset: float = 0.0) -> None:
        self.phi0, self.g, self.a, self.kl_offset = phi0, g, a, kl_offset
        self.evaluated: list[torch.Tensor] = []

    def losses(self, phi, *, create_graph: bool = True) -> OuterLosses:
        d = _flat(phi) - _flat(self.phi0)
        self.evaluated.append(d.detach().clone())
        kl = 0.5 * torch.einsum("i,tij,j->t", d, self.a, d) + self.kl_offset
        return OuterLosses(self.g @ d, kl)

    def kl_hessian(self, phi, fraction: float = 1.0, method: str = "hvp"):
        def product(v):
            flat = self.a.sum(0) @ _flat(v)
            out, at = {}, 0
            for k, x in v.items():
                out[k] = flat[at : at + x.numel()].view_as(x)
                at += x.numel()
            return out

        return product


def quadratic_problem(scale: float = 0.3):
    """Two tasks' surrogates and KLs over 7 weights (a 2x2 matrix and a 3-vector), the mean
    Fisher matrix F = (A_1 + A_2) / 2 with eigenvalues in [0.5, 4] and the mean gradient g of
    norm `scale` (under 1, so that s^T F s / 2 is under 1 too: the clamp of it must not bind)."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(7, 7, generator=gen, dtype=torch.float64))
    fisher = q @ torch.diag(torch.linspace(0.5, 4.0, 7, dtype=torch.float64)) @ q.T
    m = torch.randn(7, 7, generator=gen, dtype=torch.float64) * 0.1
    a = torch.stack([fisher + m @ m.T, fisher - m @ m.T])  # mean F; both positive definite
    g_tasks = torch.randn(2, 7, generator=gen, dtype=torch.float64)
    g_tasks = g_tasks / g_tasks.mean(0).norm() * scale
    phi0 = {
        "w": torch.randn(2, 2, generator=gen, dtype=torch.float64),
        "b": torch.randn(3, generator=gen, dtype=torch.float64),
    }
    return phi0, g_tasks, a, fisher


def _as_params(flat: torch.Tensor, like):
    return {"w": flat[:4].view(2, 2), "b": flat[4:]}


def test_trpo_takes_the_closed_form_natural_step_where_the_full_step_is_accepted():
    """The step is s = sqrt(2 max_kl / x^T F' x) x, x = F'^-1 g (F' = F + damping I, solved by
    torch.linalg.solve), taken whole: its true KL, x^T F x / x^T F' x * max_kl, is under the
    bound and the linear surrogate falls. CG on 7 unknowns reaches its 7th iteration (its
    stopping residual, 1e-5, is not met earlier on this system), so the step agrees with the
    solve to float64 rounding; a damping of -1e-5 instead of +1e-5 moves it by ~1e-5."""
    phi0, g_tasks, a, fisher = quadratic_problem()
    objective = QuadraticObjective(phi0, g_tasks, a)
    g = g_tasks.mean(0)
    new, metrics = trust_region_step(phi0, objective, _as_params(g, phi0), lambda x: x, 2)
    max_kl, damping = 0.01, 1e-5  # pytorch-maml-rl's, the defaults
    damped = fisher + damping * torch.eye(7, dtype=torch.float64)
    x = torch.linalg.solve(damped, g)
    shs = 0.5 * x @ damped @ x
    assert shs < 1.0  # the 1e-30 floor under it must not bind
    step = x * torch.sqrt(max_kl / shs)
    torch.testing.assert_close(_flat(new), _flat(phi0) - step, rtol=1e-9, atol=1e-12)
    assert metrics["trpo_step_fraction"] == 1.0 and metrics["trpo_line_search_steps"] == 1.0
    assert metrics["trpo_shs"] == pytest.approx(float(shs), rel=1e-9)
    kl = float(0.5 * step @ fisher @ step)
    assert kl < max_kl and metrics["trpo_kl"] == pytest.approx(kl, rel=1e-9)
    assert metrics["trpo_loss_after"] == pytest.approx(float(-g @ step), rel=1e-9)
    assert metrics["trpo_loss_before"] == 0.0


def test_trpo_line_search_backtracks_by_its_ratio_and_rejects_every_step_that_does_not_improve():
    """A gradient that points the wrong way (the surrogate rises along the step): the line
    search tries phi0 - 0.8^j s for j = 0..14, pytorch-maml-rl's 15 steps of ratio 0.8, accepts
    none, and leaves phi as it was with the metrics of no step."""
    phi0, g_tasks, a, _ = quadratic_problem()
    objective = QuadraticObjective(phi0, g_tasks, a)
    wrong_way = _as_params(-g_tasks.mean(0), phi0)
    new, metrics = trust_region_step(
        phi0, objective, wrong_way, lambda x: x, 2, surrogate_at_phi=torch.zeros(2)
    )
    for k in phi0:
        assert torch.equal(new[k], phi0[k])
    assert metrics["trpo_kl"] == 0.0 and metrics["trpo_step_fraction"] == 0.0
    assert metrics["trpo_loss_after"] == metrics["trpo_loss_before"] == 0.0
    assert metrics["trpo_line_search_steps"] == 15.0
    tried = objective.evaluated
    assert len(tried) == 15
    for j, d in enumerate(tried):
        torch.testing.assert_close(d, tried[0] * 0.8**j, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", ["surrogate_unchanged", "kl_at_the_bound"])
def test_trpo_bounds_are_strict(case):
    """pytorch-maml-rl accepts a step where `improve < 0 and kl < max_kl`: a candidate whose
    surrogate equals the old one (a surrogate 0 everywhere), or whose KL is max_kl exactly
    (a KL of 0.01 wherever the step goes; the Fisher products still those of `A`), is
    rejected, so no step is taken."""
    phi0, g_tasks, a, _ = quadratic_problem()
    g = _as_params(g_tasks.mean(0), phi0)
    if case == "surrogate_unchanged":
        objective = QuadraticObjective(phi0, torch.zeros_like(g_tasks), a)
    else:  # the KL exactly at the bound wherever the step is taken: A = 0 plus the offset
        objective = QuadraticObjective(phi0, g_tasks, torch.zeros_like(a), kl_offset=0.01)
        objective.kl_hessian = QuadraticObjective(phi0, g_tasks, a).kl_hessian  # a real metric
    _, metrics = trust_region_step(phi0, objective, g, lambda x: x, 2)
    assert metrics["trpo_step_fraction"] == 0.0


# -- ProMP's outer step (metarl/rl/promp.py) as gradient descent in closed form ---------------
# `... metarl/rl/promp.py --limit 0 -- tests/test_maml_rl.py -k promp`: the test on a real
# policy checks that the objective falls and the coefficient follows the rule for the one KL
# it happens to reach, so the number of steps, the penalty's sign and weight, and the rule's
# thresholds and factors could change unseen.


class QuadraticProMP:
    """Stands in for `MetaObjective.promp_losses` (float64): task i's clipped surrogate is
    `0.5 |theta - c_i|^2` and the inner KL `0.5 |theta - phi0|^2`, or the constant `kl` where
    given."""

    def __init__(self, phi0, centres, kl: float | None = None) -> None:
        self.phi0, self.centres, self.kl = phi0, centres, kl

    def promp_losses(self, phi, clip_eps: float, *, create_graph: bool = True):
        theta = _flat(phi)
        surrogate = 0.5 * ((theta - self.centres) ** 2).sum(1)
        if self.kl is None:
            kl = 0.5 * ((theta - _flat(self.phi0)) ** 2).sum().expand(2)
        else:
            kl = torch.full((2,), self.kl, dtype=torch.float64)
        return surrogate, kl


def _linear_model():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 2, dtype=torch.float64)


def test_promp_takes_its_steps_of_gradient_descent_on_the_penalized_objective():
    """With SGD of lr eta on mean_i 0.5 |theta - c_i|^2 + coeff * 0.5 |theta - phi0|^2 (two
    tasks, so each sum is halved): the first step is the given meta-gradient phi0 - c (the
    KL's gradient is 0 at phi0), each of the 4 others contracts toward the penalized optimum
    theta* = (c + coeff phi0) / (1 + coeff) by 1 - eta (1 + coeff). ProMP takes 5 steps."""
    model = _linear_model()
    phi0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(2, 8, generator=gen, dtype=torch.float64)
    objective = QuadraticProMP(phi0, centres)
    eta, coeff = 0.1, 0.5
    c = centres.mean(0)
    start = _flat(phi0)
    gradient = {"weight": (start - c)[:6].view(2, 3), "bias": (start - c)[6:]}
    optimizer = torch.optim.SGD(model.parameters(), lr=eta)
    settings = ProMPSettings()
    _, metrics = promp_step(
        model, objective, gradient, lambda x: x, 2, optimizer, eta, coeff, settings
    )
    first = start - eta * (start - c)
    optimum = (c + coeff * start) / (1 + coeff)
    expected = optimum + (1 - eta * (1 + coeff)) ** (settings.steps - 1) * (first - optimum)
    found = _flat(dict(model.named_parameters())).detach()
    torch.testing.assert_close(found, expected, rtol=1e-12, atol=1e-12)
    assert settings.steps == 5
    before = float(0.5 * ((start - centres) ** 2).sum(1).mean())
    after = float(0.5 * ((expected - centres) ** 2).sum(1).mean())
    assert metrics["promp_loss_before"] == pytest.approx(before, rel=1e-12)
    assert metrics["promp_loss_after"] == pytest.approx(after, rel=1e-12)
    assert metrics["promp_inner_kl"] == pytest.approx(
        float(0.5 * ((expected - start) ** 2).sum()), rel=1e-12
    )
    assert metrics["promp_kl_coeff"] == coeff


@pytest.mark.parametrize(
    "kl,factor",
    [(0.005, 0.5), (0.008, 1.0), (0.012, 1.0), (0.02, 2.0), (0.03, 2.0)],
)
def test_promp_halves_the_coefficient_below_target_over_1_5_and_doubles_it_above_1_5_target(
    kl, factor
):
    """ProMP's rule with its target 0.01: halved below 0.00667, doubled above 0.015, kept
    between (the KL after the steps, here a constant)."""
    model = _linear_model()
    phi0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    objective = QuadraticProMP(phi0, torch.zeros(2, 8, dtype=torch.float64), kl=kl)
    gradient = {k: torch.zeros_like(v) for k, v in phi0.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    coeff, metrics = promp_step(model, objective, gradient, lambda x: x, 2, optimizer, 0.1, 0.01)
    assert metrics["promp_inner_kl"] == kl
    assert coeff == 0.01 * factor
    assert metrics["promp_kl_coeff"] == 0.01  # the coefficient the steps used


def test_promp_keeps_the_coefficient_at_the_thresholds_themselves():
    """The rule's comparisons are strict (`kl < target / 1.5`, `kl > target * 1.5`): with a
    target of 0.75 both thresholds (0.5, 1.125) are exact binary numbers, and a KL equal to
    either keeps the coefficient."""
    settings = ProMPSettings(target_inner_kl=0.75)
    for kl in (0.5, 1.125):
        model = _linear_model()
        phi0 = {k: v.detach().clone() for k, v in model.named_parameters()}
        objective = QuadraticProMP(phi0, torch.zeros(2, 8, dtype=torch.float64), kl=kl)
        gradient = {k: torch.zeros_like(v) for k, v in phi0.items()}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        coeff, _ = promp_step(
            model, objective, gradient, lambda x: x, 2, optimizer, 0.1, 0.01, settings
        )
        assert coeff == 0.01, kl


def test_the_outer_steps_defaults_are_the_published_settings():
    """TRPO's: pytorch-maml-rl's for the MAML paper (max KL 0.01, 10 CG iterations, damping
    1e-5, backtracking 0.8 up to 15 times, the Fisher products on every episode); ProMP's:
    its class defaults (5 steps, clip 0.2, inner-KL target 0.01, initial coefficient 0.01),
    with metarl's 1e-12 floor under the coefficient. Every recipe that names no value runs
    with these, so a changed default changes every such run."""
    assert TRPOSettings() == TRPOSettings(0.01, 10, 1e-5, 0.8, 15, 1.0)
    assert ProMPSettings() == ProMPSettings(5, 0.2, 0.01, 1e-2, 1e-12)


def test_a_trpo_checkpoint_has_the_layout_of_a_stateless_torch_optimizer():
    """TRPO holds no state, but its checkpoint entry is laid out as torch's optimizers lay
    theirs (one index per parameter), so every run's checkpoint has one layout."""
    recipe = resolve_recipe("navigation2d-maml")
    learner = build_meta_learner(recipe, CPU)
    step = TRPOStep.from_recipe(recipe, learner)
    sgd = torch.optim.SGD(learner.model.parameters(), lr=0.1).state_dict()
    assert step.state_dict() == {
        "state": {},
        "param_groups": [{"params": sgd["param_groups"][0]["params"]}],
    }


# -- conjugate gradient (metarl/cg.py) at its edges ---------------------------------------------
# `... metarl/cg.py --limit 0 -- tests/test_second_order.py tests/test_maml_rl.py -k "conjugate
# or imaml or trpo or trust_region"`: the solves were tested, the stopping rules where a system
# needs no step, converges exactly, or meets zero curvature were not.


def _diagonal_system(diagonals: list[list[float]]):
    a = torch.diag_embed(torch.tensor(diagonals, dtype=torch.float64))

    def apply_a(v):
        return {"w": (a @ v["w"].unsqueeze(-1)).squeeze(-1)}

    return a, apply_a


def test_cg_solves_a_zero_right_hand_side_by_zero_without_calling_it_indefinite():
    """A task whose right-hand side is 0 (iMAML: a query gradient of 0) has x = 0 and is not
    reported as meeting non-positive curvature; the other task is solved."""
    a, apply_a = _diagonal_system([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    b = {"w": torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)}
    x, indefinite = truncated_conjugate_gradient(apply_a, b, 5)
    assert indefinite.tolist() == [False, False]
    torch.testing.assert_close(x["w"][0], torch.linalg.solve(a[0], b["w"][0]))
    assert torch.equal(x["w"][1], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("truncate", [True, False])
def test_cg_stops_a_system_it_solved_exactly(truncate):
    """A = 2 I: the first step solves it exactly (alpha = 1/2, the residual exactly 0 in binary
    floating point). The system stops there: further iterations would meet p = 0 (p^T A p = 0),
    which truncated CG would report as indefinite and untruncated CG (TRPO's) would turn into
    0 / 0 = NaN."""
    _, apply_a = _diagonal_system([[2.0, 2.0, 2.0]])
    b = {"w": torch.tensor([[1.0, -3.0, 0.5]], dtype=torch.float64)}
    x, indefinite = truncated_conjugate_gradient(apply_a, b, 5, truncate=truncate)
    assert torch.equal(x["w"], b["w"] / 2)
    assert indefinite.tolist() == [False]


def test_cg_reports_zero_curvature_as_non_positive_and_keeps_its_iterate():
    """A = diag(1, 0) and b along the null direction: p^T A p is exactly 0 on the first
    direction, which is not positive curvature; the system keeps x = 0 (any step along it
    would be unbounded) and is reported."""
    _, apply_a = _diagonal_system([[1.0, 0.0]])
    b = {"w": torch.tensor([[0.0, 1.0]], dtype=torch.float64)}
    x, indefinite = truncated_conjugate_gradient(apply_a, b, 3)
    assert indefinite.tolist() == [True]
    assert torch.equal(x["w"], torch.zeros(1, 2, dtype=torch.float64))


# -- MAML-RL's objective (metarl/rl/maml.py) on a Gaussian bandit, in closed form ---------------
# `... metarl/rl/maml.py --limit 36 -- tests/test_maml_rl.py` (a sample of the module's 123
# mutants): the test of ProMP's objective compared it with a written-out form that calls the
# same clipped surrogate, so the clip's bounds were not checked by anything independent.
# One-step episodes, a ~ N(mu, 1): log pi(a) = -(a - mu)^2 / 2 + const, so every ratio, inner
# step and KL below is a line of numpy.


def _bandit_policy(params, obs):
    mean = params["mu"].reshape(-1, 1, 1, 1).expand(*obs.shape[:-1], 1)
    return Independent(Normal(mean, torch.ones_like(mean)), 1)


def _bandit_samples(mu: np.ndarray, rng: np.random.Generator, envs: int = 6) -> Samples:
    """`envs` one-step episodes per task from N(mu[i], 1), advantages of both signs."""
    tasks = len(mu)
    actions = mu[:, None] + rng.standard_normal((tasks, envs))
    return Samples(
        torch.zeros(tasks, envs, 1, 1, dtype=torch.float64),
        torch.tensor(actions, dtype=torch.float64).view(tasks, envs, 1, 1),
        torch.tensor(rng.standard_normal((tasks, envs)), dtype=torch.float64).view(tasks, envs, 1),
        torch.ones(tasks, envs, 1, dtype=torch.float64),
    )


def _bandit_objective(lr: float = 0.5):
    """Two tasks, phi_old mu = 0.1: the pre-update episodes from it, theta_old' by one inner
    step, the post-update episodes from theta_old'."""
    rng = np.random.default_rng(0)
    mu0 = 0.1
    pre = _bandit_samples(np.full(2, mu0), rng)
    a, adv = pre.actions.view(2, -1).numpy(), pre.advantages.view(2, -1).numpy()
    theta_old = mu0 + lr * ((a - mu0) * adv).mean(1)  # the VPG step of the LVC loss at phi
    post = _bandit_samples(theta_old, rng)
    phi = {"mu": torch.tensor([mu0], dtype=torch.float64)}
    return MetaObjective(_bandit_policy, phi, pre, post, lr), mu0, theta_old, lr


def _np(samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    return samples.actions.view(2, -1).numpy(), samples.advantages.view(2, -1).numpy()


def test_maml_rl_surrogate_and_kl_match_the_bandits_closed_form():
    """At mu = 0.1 + 0.3: theta' = mu + lr mean_j (a_j - mu) A_j (the LVC loss's gradient is
    the score's), the surrogate -mean_k r_k A'_k with r_k = pi_theta'(a'_k) / pi_theta_old'(a'_k),
    and KL(pi_theta' || pi_theta_old') = (theta' - theta_old')^2 / 2."""
    objective, mu0, theta_old, lr = _bandit_objective()
    mu = mu0 + 0.3
    losses = objective.losses({"mu": torch.tensor([mu], dtype=torch.float64)}, create_graph=False)
    a, adv = _np(objective.pre)
    b, adv_post = _np(objective.post)
    theta = mu + lr * ((a - mu) * adv).mean(1)
    log_ratio = -((b - theta[:, None]) ** 2) / 2 + (b - theta_old[:, None]) ** 2 / 2
    np.testing.assert_allclose(
        losses.surrogate.numpy(), -(np.exp(log_ratio) * adv_post).mean(1), rtol=1e-12
    )
    np.testing.assert_allclose(losses.kl.numpy(), (theta - theta_old) ** 2 / 2, rtol=1e-12)


def test_promp_objective_matches_the_bandits_closed_form_with_the_clip_engaged():
    """At mu = 0.1 - 0.6 (ratios well outside [0.8, 1.2], advantages of both signs): ProMP's
    re-adaptation theta' = mu + lr mean_j w_j (a_j - mu) A_j, w_j = pi_mu(a_j) / pi_phi_old(a_j),
    its clipped surrogate -mean_k min(r_k A'_k, clip(r_k, 0.8, 1.2) A'_k) and the inner KL
    KL(pi_phi_old || pi_mu) = (mu - 0.1)^2 / 2."""
    objective, mu0, theta_old, lr = _bandit_objective()
    mu = mu0 - 0.6
    surrogate, kl = objective.promp_losses(
        {"mu": torch.tensor([mu], dtype=torch.float64)}, 0.2, create_graph=False
    )
    a, adv = _np(objective.pre)
    b, adv_post = _np(objective.post)
    w = np.exp(-((a - mu) ** 2) / 2 + (a - mu0) ** 2 / 2)
    theta = mu + lr * (w * (a - mu) * adv).mean(1)
    r = np.exp(-((b - theta[:, None]) ** 2) / 2 + (b - theta_old[:, None]) ** 2 / 2)
    # both bounds bind where they change the minimum: above 1.2 with a positive advantage,
    # below 0.8 with a negative one (at mu = 0.1 + 0.6 the upper bound never did)
    assert ((r > 1.2) & (adv_post > 0)).any() and ((r < 0.8) & (adv_post < 0)).any()
    expected = -np.minimum(r * adv_post, np.clip(r, 0.8, 1.2) * adv_post).mean(1)
    np.testing.assert_allclose(surrogate.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(kl.numpy(), np.full(2, (mu - mu0) ** 2 / 2), rtol=1e-12)


def test_promp_objective_refuses_two_inner_steps():
    """ProMP's objective is written for one inner step (its inner KL is phi's); an objective
    of two steps is refused rather than judged after the first."""
    objective, _, theta_old, lr = _bandit_objective()
    two = MetaObjective(
        _bandit_policy,
        {"mu": torch.tensor([0.1], dtype=torch.float64)},
        [objective.pre, objective.post],
        objective.post,
        lr,
    )
    with pytest.raises(ValueError, match="one inner step"):
        two.promp_losses({"mu": torch.tensor([0.1], dtype=torch.float64)}, 0.2)


def test_meta_sgd_rates_alone_take_a_backward_through_a_second_order_inner_step():
    """Meta-SGD's rates learned for a fixed init: phi a constant, the rates alpha requiring
    grad, the step second-order (`create_graph`). The step's graph runs through the inner
    gradient into the inner loss's forward pass, so a plain `.backward()` from the adapted
    weights walks that pass again: `adapt` must keep its graph whenever it builds one, not
    only where phi requires grad (`create_graph or ...` -> `and` freed it: "Trying to
    backward through the graph a second time"). d theta_i' / d alpha = -g_i, g_i = -mean_j
    (a_j - mu) A_j the LVC loss's gradient, so d sum_i theta_i'^2 / d alpha = -2 sum_i
    theta_i' g_i."""
    objective, mu0, _, _ = _bandit_objective()
    phi = {"mu": torch.tensor([mu0], dtype=torch.float64)}
    alpha = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    theta = adapt(_bandit_policy, phi, objective.pre, {"mu": alpha}, create_graph=True)
    (theta["mu"] ** 2).sum().backward()
    a, adv = _np(objective.pre)
    g = -((a - mu0) * adv).mean(1)
    expected = mu0 - 0.5 * g
    np.testing.assert_allclose(theta["mu"].detach().numpy().ravel(), expected, rtol=1e-12)
    assert alpha.grad is not None
    np.testing.assert_allclose(alpha.grad.numpy(), [-2 * (expected * g).sum()], rtol=1e-12)


def test_episode_mean_weights_each_episode_by_its_own_steps():
    """Per episode the mean over its masked steps (an episode without any counts as 0, not
    NaN), then the mean over episodes; here by hand: (2 + 3) / 2 = 2.5, 5, 0 -> 7.5 / 3."""
    values = torch.tensor([[[2.0, 3.0, 9.0], [5.0, 7.0, 7.0], [4.0, 4.0, 4.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    assert episode_mean(values, mask).tolist() == [2.5]
    both = episode_mean(values.expand(2, 3, 3), mask.expand(2, 3, 3))
    assert both.tolist() == [2.5, 2.5]


def test_a_fraction_of_the_episodes_keeps_at_least_one():
    """`Samples.head`: the first ceil(fraction * episodes) of each task's, at least one."""
    samples = _bandit_samples(np.zeros(2), np.random.default_rng(0), envs=4)
    assert samples.head(1.0) is samples
    assert samples.head(0.5).actions.shape[1] == 2
    assert samples.head(0.3).actions.shape[1] == 2
    assert samples.head(0.1).actions.shape[1] == 1
    assert torch.equal(samples.head(0.1).actions, samples.actions[:, :1])


def test_cg_solves_a_small_scale_system_as_exactly_as_a_unit_one():
    """CG is invariant to the scale of A and b: with both 1e-3 times a unit-scale system
    (p^T A p and r^T r far below 1, where a floor or threshold of 1 instead of 1e-30 or 0
    would bind), each task is solved as torch.linalg.solve solves it, and none is reported
    indefinite."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    a = 1e-3 * (m @ m.transpose(1, 2) + torch.eye(4, dtype=torch.float64))
    b = {"w": 1e-3 * torch.randn(2, 4, generator=g, dtype=torch.float64)}
    x, indefinite = truncated_conjugate_gradient(
        lambda v: {"w": (a @ v["w"].unsqueeze(-1)).squeeze(-1)}, b, 4
    )
    assert indefinite.tolist() == [False, False]
    torch.testing.assert_close(x["w"], torch.linalg.solve(a, b["w"]), rtol=1e-9, atol=1e-12)


# --- iMAML (metarl/learners/second_order.py) ------------------------------------------------
# `... metarl/learners/second_order.py --limit 0 -- tests/test_mutants.py
# tests/test_second_order.py tests/test_functional.py`: the tests used SGD in iMAML's inner
# loop (which ignores the step count) and checked the residual only near 0 or 1.


def _imaml_problem(scale: float = 1.0):
    """Linear regression, 2 tasks of 6 support and 4 query points in 3 dimensions, float64;
    targets times `scale`."""
    g = torch.Generator().manual_seed(5)
    model = torch.nn.Linear(3, 1).double()
    phi = {
        k: torch.randn(v.shape, generator=g, dtype=torch.float64)
        for k, v in model.named_parameters()
    }
    sx, qx = (torch.randn(2, n, 3, generator=g, dtype=torch.float64) for n in (6, 4))
    sy, qy = (scale * torch.randn(2, n, 1, generator=g, dtype=torch.float64) for n in (6, 4))
    return model, phi, TaskBatch(sx, sy, qx, qy)


def test_imaml_inner_adam_counts_its_steps_from_one():
    """iMAML's proximal inner loop with Adam is torch.optim.Adam on L_support(w) + lambda / 2
    ||w - phi||^2, task by task (its bias correction needs the steps counted from 1)."""
    model, phi, batch = _imaml_problem()
    lam, steps, lr = 2.0, 5, 0.05
    learner = InnerLoop(model, "mse", InnerOptimizer(OptimizerName.ADAM, lr, beta1=0.9))
    result = implicit_meta_gradient(learner, phi, batch, steps=steps, lam=lam, cg_steps=4)
    for i in range(2):
        w = {k: v.clone().requires_grad_() for k, v in phi.items()}
        adam = torch.optim.Adam(list(w.values()), lr=lr, betas=(0.9, 0.999), eps=1e-8)
        for _ in range(steps):
            adam.zero_grad()
            pred = torch.func.functional_call(model, w, (batch.support_x[i],))
            proximal = sum(((w[k] - phi[k]) ** 2).sum() for k in w)
            (((pred - batch.support_y[i]) ** 2).mean() + lam / 2 * proximal).backward()
            adam.step()
        for k in phi:
            torch.testing.assert_close(result.adapted[k][i], w[k].detach(), rtol=1e-9, atol=1e-12)


def test_imaml_residual_is_the_stationarity_ratio_at_a_small_scale():
    """`imaml_residual` = ||g + lambda (theta - phi)|| / (||g|| + ||lambda (theta - phi)||) per
    task, averaged, with g the support gradient at theta, by hand; on targets of 1e-3 the
    denominator is far below 1 (a floor of 1 instead of 1e-30 would divide by 1)."""
    model, phi, batch = _imaml_problem(scale=1e-3)
    phi = {k: 1e-3 * v for k, v in phi.items()}
    lam = 2.0
    learner = InnerLoop(model, "mse", InnerOptimizer(OptimizerName.SGD, 0.05))
    result = implicit_meta_gradient(learner, phi, batch, steps=3, lam=lam, cg_steps=4)
    ratios = []
    for i in range(2):
        theta = {k: v[i].clone().requires_grad_() for k, v in result.adapted.items()}
        pred = torch.func.functional_call(model, theta, (batch.support_x[i],))
        support_loss = ((pred - batch.support_y[i]) ** 2).mean()
        grads = torch.autograd.grad(support_loss, list(theta.values()))
        g = torch.cat([v.reshape(-1) for v in grads])
        p = torch.cat([lam * (theta[k].detach() - phi[k]).reshape(-1) for k in theta])
        assert float(g.norm() + p.norm()) < 1e-2
        ratios.append(float((g + p).norm() / (g.norm() + p.norm())))
    assert result.metrics["imaml_residual"] == pytest.approx(np.mean(ratios), rel=1e-9)
    assert 0.05 < result.metrics["imaml_residual"] < 0.95


def test_task_chunks_hold_that_many_tasks_at_a_time():
    """`task_chunk` bounds the graph kept in memory to that many tasks (the meta-gradient is
    the same whatever it is: tests/test_second_order.py), 0 meaning all at once; a chunk of 1
    is one task at a time, not all of them."""
    _, _, batch = _imaml_problem()
    three = TaskBatch(*(torch.cat([t, t[:1]]) for t in batch))
    sizes = {k: [c.num_tasks for c in second_order._chunks(three, k)] for k in range(5)}
    assert sizes == {0: [3], 1: [1, 1, 1], 2: [2, 1], 3: [3], 4: [3]}


def test_no_inner_step_records_no_support_loss():
    """Zero inner steps (an evaluation at step 0): theta = phi and no support loss, `[0, tasks]`,
    from both second-order meta-gradients (not a row of zeros, which a mean would count)."""
    model, phi, batch = _imaml_problem()
    learner = InnerLoop(model, "mse", InnerOptimizer(OptimizerName.SGD, 0.05))
    implicit = implicit_meta_gradient(learner, phi, batch, steps=0, lam=2.0, cg_steps=4)
    unrolled = second_order.unrolled_meta_gradient(learner, phi, batch, steps=0, lr=0.05)
    for result in (implicit, unrolled):
        assert result.support_losses.shape == (0, 2)
        for k in phi:
            assert torch.equal(result.adapted[k], phi[k].expand(2, *phi[k].shape))


# -- the supervised inner loop (metarl/learners/inner_loop.py) against torch.optim, task by task
# `python scripts/tools/mutation_check.py metarl/learners/inner_loop.py --limit 0 -- ...`
# left Adam's step count carried from one adaptation to the next, the Reptile blog's gradient
# combinations (which step is g1, and the sum) and the losses of zero steps untested.


def _torch_copy(model, phi, optimizer):
    """A deep copy of `model` at `phi` and `optimizer` over its parameters."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for k, p in m.named_parameters():
            p.copy_(phi[k])
    return m, optimizer(m.parameters())


def test_inner_adam_carried_to_the_next_adaptation_continues_its_step_count(small_mlp, sine_batch):
    """`train.inner_carry_moments`: the second adaptation starts from phi again with the
    first one's moments, its bias correction at steps 4..6, and leaves 6 steps counted; as
    one torch.optim.Adam per task does when the weights are reset and its state kept."""
    learner = learner_for(small_mlp, "adam", 0.01)
    phi = {k: v.detach() for k, v in small_mlp.named_parameters()}
    carry = AdamCarry()
    learner.adapt_with_losses(phi, sine_batch, 3, carry)
    assert carry.steps == 3
    second, _ = learner.adapt_with_losses(phi, sine_batch, 3, carry)
    assert carry.steps == 6
    for i in range(sine_batch.num_tasks):
        m, adam = _torch_copy(
            small_mlp, phi, lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.5, 0.999))
        )
        x, y = sine_batch.support_x[i], sine_batch.support_y[i]
        for _ in range(2):
            with torch.no_grad():
                for k, p in m.named_parameters():
                    p.copy_(phi[k])
            for _ in range(3):
                adam.zero_grad()
                ((m(x) - y) ** 2).mean().backward()
                adam.step()
        for k, v in m.named_parameters():
            torch.testing.assert_close(second[k][i], v.detach(), rtol=1e-4, atol=1e-5)


def test_gradient_combinations_sum_the_gradients_of_the_steps_named_from_one(small_mlp, sine_batch):
    """The Reptile blog's combinations: `which` names inner steps from 1 (g1 at phi); [1, 3]
    of three SGD steps is g1 + g3, task by task, against torch's own gradients along the same
    path; the support losses are each step's, before it."""
    lr = 0.02
    learner = learner_for(small_mlp, "sgd", lr)
    phi = {k: v.detach() for k, v in small_mlp.named_parameters()}
    adapted, total, losses = learner.gradient_combination(phi, sine_batch, 3, [1, 3])
    assert losses.shape == (3, sine_batch.num_tasks)
    for i in range(sine_batch.num_tasks):
        m, sgd = _torch_copy(small_mlp, phi, lambda p: torch.optim.SGD(p, lr=lr))
        x, y = sine_batch.support_x[i], sine_batch.support_y[i]
        grads, seen = [], []
        for _ in range(3):
            sgd.zero_grad()
            loss = ((m(x) - y) ** 2).mean()
            loss.backward()
            seen.append(loss.item())
            grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
            sgd.step()
        np.testing.assert_allclose(losses[:, i].numpy(), seen, rtol=1e-5)
        for k, p in m.named_parameters():
            torch.testing.assert_close(total[k][i], grads[0][k] + grads[2][k])
            torch.testing.assert_close(adapted[k][i], p.detach(), rtol=1e-4, atol=1e-6)


def test_zero_inner_steps_leave_phi_and_no_support_loss(small_mlp, sine_batch):
    """No step: every task's parameters are phi's and the losses an empty `[0, tasks]` (not a
    row of zeros, which the training log would report as a loss before adapting)."""
    learner = learner_for(small_mlp, "sgd", 0.02)
    phi = {k: v.detach() for k, v in small_mlp.named_parameters()}
    params, losses = learner.adapt_with_losses(phi, sine_batch, 0)
    assert losses.shape == (0, sine_batch.num_tasks)
    for k, v in phi.items():
        assert torch.equal(params[k], v.expand(sine_batch.num_tasks, *v.shape))
