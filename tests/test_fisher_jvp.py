"""TRPO's Fisher-vector product in forward mode ("jvp", `metarl.rl.fisher`) against the
three Hessian-vector products ("hvp", the default): the same products and the same trust
region step, to float32's rounding, where the re-adapted policies are the sampling ones
(Fisher fraction 1); and the closed-form KL Hessian it uses against autograd's.

The tolerances: float32 carries 2^-24 ~ 6e-8 relative per operation, and the two methods
accumulate the same sums (over each task's states and the 64-unit layers) in different
orders, forward against reverse, so their products differ by a few roundings: 1.2e-7
relative on HalfCheetahDir's full 40 x 20 x 200 batch (docs/results/speed.md). 1e-5 is
100x that and still 100x below the 2e-3 to 4e-3 by which a different metric (the Fisher
fraction's, below) moves them. Conjugate gradient amplifies rounding by up to the system's
condition number, so the step's yardstick is measured in the test: the default's own move
under rounding-sized perturbations."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from metarl.rl.fisher import distribution_parameters, kl_hessian_in_parameters
from metarl.rl.maml import MetaObjective
from metarl.rl.trpo import TRPOSettings, trust_region_step
from tests.test_maml_rl import adaptation_of, maml_recipe

PRODUCT_RTOL = 1e-5


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _unflat(flat: torch.Tensor, like: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`flat` cut into tensors keyed and shaped like `like`."""
    sizes = [v.numel() for v in like.values()]
    return {k: t.view_as(like[k]) for k, t in zip(like, flat.split(sizes), strict=True)}


@pytest.fixture(scope="module")
def adapted():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield adaptation_of(maml_recipe())
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def adapted_two_steps_every_step():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield adaptation_of(maml_recipe(train={"inner_steps": 2}, learner={"outer_every_step": True}))
    torch.set_num_threads(before)


def products(objective: MetaObjective, phi, fraction: float) -> dict[str, list[torch.Tensor]]:
    """Three random vectors ("v") and both methods' products with them, flat."""
    gen = torch.Generator().manual_seed(7)
    vs = [{k: torch.randn(x.shape, generator=gen) for k, x in phi.items()} for _ in range(3)]
    out = {"v": [_flat([v[k] for k in phi]) for v in vs]}
    for method in ("hvp", "jvp"):
        product = objective.kl_hessian(phi, fraction, method)
        out[method] = [_flat([product(v)[k] for k in phi]) for v in vs]
    return out


@pytest.mark.parametrize("fixture", ["adapted", "adapted_two_steps_every_step"])
def test_forward_mode_fisher_products_are_the_hvp_ones(request, fixture):
    """One and two inner steps (judging both policies): the same products to rounding."""
    _, phi, adaptation, _, handed = request.getfixturevalue(fixture)
    out = products(handed.objective.objective, phi, 1.0)
    for jvp, hvp in zip(out["jvp"], out["hvp"], strict=True):
        assert relative(jvp, hvp) < PRODUCT_RTOL


def test_forward_mode_takes_the_same_trust_region_step(adapted):
    """The whole TRPO step (CG, step size, line search) with either product: the same line
    search, and new weights, step size, KL and surrogate no further from the default's than
    the default's own move when its gradient is perturbed by float32's rounding (2^-24
    relative, three draws), times 3. That spread is the yardstick because it is large here:
    Navigation2D's 4 x 5 x 100 states give 4,000 policy outputs for 8,901 weights, so the
    Fisher matrix is singular up to the 1e-5 damping and 10 CG iterations amplify rounding
    to ~0.7% of the step (measured); on HalfCheetahDir's full batch the two methods' steps
    differ by 4.6e-7 (docs/results/speed.md)."""
    _, phi, adaptation, grads, handed = adapted
    objective = handed.objective.objective
    delta = {k: v / 4 for k, v in grads.items()}
    keys = ("trpo_shs", "trpo_kl", "trpo_loss_after")

    def step(gradient, method):
        new, metrics = trust_region_step(
            phi, objective, gradient, lambda x: x, 4, TRPOSettings(fisher_method=method)
        )
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
        return _flat([new[k] - phi[k] for k in phi]), values, metrics

    hvp_step, hvp_values, hvp = step(delta, "hvp")
    jvp_step, jvp_values, jvp = step(delta, "jvp")
    assert hvp_step.norm() > 0
    gen = torch.Generator().manual_seed(0)
    spread_step, spread_values = 0.0, torch.zeros(len(keys), dtype=torch.float64)
    for _ in range(3):
        rounded = {
            k: v * (1 + 2**-24 * torch.randn(v.shape, generator=gen)) for k, v in delta.items()
        }
        moved_step, moved_values, _ = step(rounded, "hvp")
        spread_step = max(spread_step, relative(moved_step, hvp_step))
        spread_values = torch.maximum(spread_values, (moved_values - hvp_values).abs())
    assert relative(jvp_step, hvp_step) <= 3 * spread_step
    assert ((jvp_values - hvp_values).abs() <= 3 * spread_values).all(), (jvp, hvp)
    assert jvp["trpo_line_search_steps"] == hvp["trpo_line_search_steps"]
    assert jvp["trpo_step_fraction"] == hvp["trpo_step_fraction"]


def test_with_a_fisher_fraction_the_two_methods_are_different_metrics(adapted):
    """On a subsample of the episodes (fraction 0.4) the re-adapted policies are adapted on
    fewer episodes than the sampling ones, so the KL's gradient in the policies' outputs is
    not zero there: "hvp" differentiates it (J^T (J_out^T M J_out + dKL/dout . d2 out) J),
    "jvp" keeps the Gauss-Newton part J^T J_out^T M J_out J alone, positive semi-definite by
    construction. Different products, far above rounding (36% apart on this small batch,
    0.2% on HalfCheetahDir's): the default stays "hvp" while the shipped MuJoCo recipes
    subsample."""
    _, phi, adaptation, _, handed = adapted
    out = products(handed.objective.objective, phi, 0.4)
    for v, jvp, hvp in zip(out["v"], out["jvp"], out["hvp"], strict=True):
        assert relative(jvp, hvp) > 100 * PRODUCT_RTOL
        assert float(v @ jvp) > 0


def test_an_unknown_fisher_method_is_refused(adapted):
    _, phi, adaptation, _, handed = adapted
    with pytest.raises(ValueError, match="Fisher method 'fvp': expected one of"):
        handed.objective.objective.kl_hessian(phi, 1.0, "fvp")  # type: ignore[arg-type]


def autograd_hessian_product(kl_of, at: tuple[torch.Tensor, ...], t: tuple[torch.Tensor, ...]):
    leaves = tuple(x.clone().requires_grad_() for x in at)
    grads = torch.autograd.grad(kl_of(*leaves).sum(), leaves, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, t, strict=True))
    return torch.autograd.grad(dot, leaves)


def test_closed_form_gaussian_kl_hessian_is_autograds():
    """M t for a diagonal Gaussian, away from the old policy (float64, so exact to 1e-12)."""
    gen = torch.Generator().manual_seed(0)
    shape = (3, 5, 2)
    mean, mean_old = torch.randn(shape, generator=gen, dtype=torch.float64).unbind(0)[:2]
    scale, scale_old = (0.2 + torch.rand(2, 5, 2, generator=gen, dtype=torch.float64)).unbind(0)
    t = tuple(torch.randn(5, 2, generator=gen, dtype=torch.float64) for _ in range(2))
    old = Independent(Normal(mean_old, scale_old), 1)

    def kl_of(m, s):
        return kl_divergence(Independent(Normal(m, s), 1), old)

    expected = autograd_hessian_product(kl_of, (mean, scale), t)
    got = kl_hessian_in_parameters((mean, scale), (mean_old, scale_old), t)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_closed_form_categorical_kl_hessian_is_autograds():
    gen = torch.Generator().manual_seed(1)
    logits, logits_old, t = torch.randn(3, 6, 4, generator=gen, dtype=torch.float64).unbind(0)
    old = Categorical(logits=logits_old)

    def kl_of(z):
        return kl_divergence(Categorical(logits=z), old)

    (expected,) = autograd_hessian_product(kl_of, (logits,), (t,))
    (got,) = kl_hessian_in_parameters((logits,), (old.logits,), (t,))
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_a_policy_without_a_closed_form_kl_hessian_is_refused():
    from torch.distributions import Beta

    with pytest.raises(TypeError, match="diagonal Gaussian or a categorical policy, not Beta"):
        distribution_parameters(Beta(torch.ones(2), torch.ones(2)))


def test_the_policies_distribution_parameters_are_its_mean_and_scale(adapted):
    meta, phi, adaptation, _, handed = adapted
    post = handed.objective.objective.post
    stacked = {k: v.unsqueeze(0).expand(4, *v.shape) for k, v in phi.items()}
    mean, scale = distribution_parameters(meta.policy_fn(stacked, post.obs))
    assert mean.shape == scale.shape == post.actions.shape
    torch.testing.assert_close(scale[0, 0, 0], phi["log_std"].exp())


def test_with_a_fisher_fraction_hvp_is_the_full_hessian_and_jvp_its_psd_part(adapted):
    """Which method is which, away from fraction 1: "hvp" differentiates the KL's gradient,
    the full Hessian, which on this batch at fraction 0.4 has a direction of negative
    curvature; "jvp" is its Gauss-Newton part, positive semi-definite, so it is not negative
    along that direction either. The direction: shifted power iteration on `top * I - H`."""
    _, phi, adaptation, _, handed = adapted
    objective = handed.objective.objective
    keys = list(phi)

    def as_operator(method: str):
        product = objective.kl_hessian(phi, 0.4, method)  # type: ignore[arg-type]

        def apply(x: torch.Tensor) -> torch.Tensor:
            out = product(_unflat(x, phi))
            return _flat([out[k] for k in keys])

        return apply

    full, gauss_newton = as_operator("hvp"), as_operator("jvp")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(sum(v.numel() for v in phi.values()), generator=gen)
    for _ in range(30):
        y = full(x)
        x = y / y.norm()
    top = abs(float(x @ full(x)))
    for _ in range(60):
        y = top * x - full(x)
        x = y / y.norm()
    assert float(x @ full(x)) < -1e-4 * top
    assert float(x @ gauss_newton(x)) > -1e-5 * top
