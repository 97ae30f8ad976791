"""MAML-RL's second-order meta-gradient, for every task of a meta-batch at once.

The objective (Finn et al. 2017, RL): for task i, episodes D_i ~ pi_phi (pre-update), the
adapted parameters `theta_i' = phi - alpha * grad L_inner_i(phi; D_i)` (one step of plain SGD
on the VPG surrogate), fresh episodes D_i' ~ pi_theta_i' (post-update), and the outer loss
`L_outer_i(theta_i'(phi); D_i')`. Its gradient with respect to phi is

    (I - alpha * Hess L_inner_i(phi)) grad L_outer_i(theta_i')

where the Hessian must account for D_i being sampled from pi_phi: the Hessian of the
*expected* inner objective is `E[(Hess log pi + grad log pi grad log pi^T) A]`, and
differentiating the plain REINFORCE loss `-log pi * A` twice (pytorch-maml-rl's
`reinforce_loss`) gives only the first term.

**Estimator: ProMP's low-variance curvature (LVC) objective** (Rothfuss et al. 2019, eq. 8):
the inner loss is `-exp(log pi(a|s) - stop_grad(log pi(a|s))) * A` per step (`lvc_loss`). Its
value equals `-A`, its gradient at phi equals the VPG gradient exactly, and its Hessian is
`-(Hess log pi + grad log pi grad log pi^T) A` per step: the score-function term that the
naive loss drops, with the per-step (not the cumulative, DiCE) likelihood ratio, which is
ProMP's bias-for-variance trade: exact for one-step problems (the bandit of the tests),
slightly biased over long horizons. The advantages are constants (the fitted baseline and the
normalization are not differentiated), as in MAML-RL and ProMP.

The stacked parameters are `phi.unsqueeze(0).expand(tasks, ...)`: a differentiable expansion
of phi, so one backward of the summed per-task outer losses gives the sum over tasks of the
per-task meta-gradients (the tasks share no weights).

A policy is given as a function `(stacked params, obs [tasks, envs, time, obs_dim]) ->` a
`torch.distributions.Distribution` of batch shape `[tasks, envs, time]` (`policy_function`
wraps `metarl.rl.policy.BatchedPolicy`); the tests run the same code on a Gaussian bandit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent, Normal, kl_divergence

from metarl.rl.policy import BatchedPolicy, Params
from metarl.rl.rollout import Rollout
from metarl.rl.vpg import vpg_advantages

PolicyFn = Callable[[Params, Tensor], Distribution]
"""`(stacked params, obs [tasks, envs, time, obs_dim]) -> distribution over actions, batch
shape [tasks, envs, time]`."""


@dataclass
class Samples:
    """What the surrogates need of one rollout per task: `[tasks, envs, time, ...]`."""

    obs: Tensor
    actions: Tensor
    advantages: Tensor
    """Constants (no gradient flows into them)."""
    mask: Tensor
    """1 on the steps that count (MAML-RL: each sub-env's first episode)."""
    log_prob_old: Tensor | None = None
    """Log-probabilities of the actions under the policy that sampled them (`ratio_loss`)."""

    def head(self, fraction: float) -> Samples:
        """The first `ceil(fraction * envs)` episodes of each task (all of them at 1.0)."""
        if fraction >= 1.0:
            return self
        k = max(1, math.ceil(fraction * self.obs.shape[1]))
        old = None if self.log_prob_old is None else self.log_prob_old[:, :k]
        return Samples(
            self.obs[:, :k], self.actions[:, :k], self.advantages[:, :k], self.mask[:, :k], old
        )

    @classmethod
    def from_rollout(cls, rollout: Rollout, gamma: float) -> Samples:
        """MAML-RL's samples: the linear-baseline, normalized advantages of `metarl.rl.vpg`."""
        return cls(
            rollout.obs,
            rollout.actions,
            vpg_advantages(rollout, gamma).detach(),
            rollout.first_episode,
        )


def episode_mean(values: Tensor, mask: Tensor) -> Tensor:
    """`[tasks]`: the mean over each task's episodes of each episode's mean of `values`
    over its masked steps (the weighting of `metarl.rl.vpg.vpg_loss`)."""
    per_episode = (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_episode.mean(-1)


def lvc_loss(policy_fn: PolicyFn, params: Params, samples: Samples) -> Tensor:
    """ProMP's LVC inner loss per task, `[tasks]`: minus the episode mean of
    `exp(log pi - stop_grad(log pi)) * A`. Value and gradient are the VPG loss's; the
    Hessian includes the sampling distribution's dependence on the parameters."""
    log_prob = policy_fn(params, samples.obs).log_prob(samples.actions)
    ratio = torch.exp(log_prob - log_prob.detach())
    return -episode_mean(ratio * samples.advantages, samples.mask)


def reinforce_loss(policy_fn: PolicyFn, params: Params, samples: Samples) -> Tensor:
    """The naive inner loss `-log pi * A` (pytorch-maml-rl's `reinforce_loss`): the same
    gradient as `lvc_loss`, but its Hessian misses the score-function term. Kept to show, in
    the tests, that a meta-gradient through it is wrong."""
    log_prob = policy_fn(params, samples.obs).log_prob(samples.actions)
    return -episode_mean(log_prob * samples.advantages, samples.mask)


def ratio_loss(policy_fn: PolicyFn, params: Params, samples: Samples) -> Tensor:
    """ProMP's inner loss as its code writes it: minus the episode mean of
    `pi(a|s) / pi_sampling(a|s) * A`, the ratio to the sampling policy (`log_prob_old`). At
    the sampling parameters it is `lvc_loss` (value and every derivative); elsewhere it is
    the importance-weighted policy gradient, which ProMP's several outer steps per batch
    re-adapt with."""
    if samples.log_prob_old is None:
        raise ValueError("ratio_loss needs the samples' log_prob_old")
    log_prob = policy_fn(params, samples.obs).log_prob(samples.actions)
    ratio = torch.exp(log_prob - samples.log_prob_old)
    return -episode_mean(ratio * samples.advantages, samples.mask)


InnerLoss = Callable[[PolicyFn, Params, Samples], Tensor]


def adapt(
    policy_fn: PolicyFn,
    phi: Params,
    samples: Samples,
    lr: float | Params,
    *,
    create_graph: bool,
    inner_loss: InnerLoss = lvc_loss,
) -> Params:
    """`theta_i' = phi - lr * grad L_inner_i(phi)` for every task, stacked; `lr` a float,
    or Meta-SGD's per-parameter rates alpha keyed like phi (`phi - alpha * grad`, elementwise;
    rates requiring grad make the result differentiable with respect to them).

    With `create_graph` the step is differentiable twice (the meta-gradient flows through the
    inner gradient); without it the inner gradient is a constant, so a gradient through the
    result with respect to phi is first-order MAML's. Parameters the policy does not use
    (the value head) are left as phi."""
    n = samples.advantages.shape[0]
    with torch.enable_grad():
        base = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in phi.items()}
        params = {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in base.items()}
        loss = inner_loss(policy_fn, params, samples).sum()
        grads = torch.autograd.grad(
            loss,
            list(params.values()),
            create_graph=create_graph,
            retain_graph=create_graph or any(v.requires_grad for v in phi.values()),
            allow_unused=True,
        )
    keep = any(v.requires_grad for v in phi.values())
    out: Params = {}
    for (k, p), g in zip(params.items(), grads, strict=True):
        rate = lr[k] if isinstance(lr, dict) else lr
        step = p if g is None else p - rate * g
        out[k] = step if keep or _requires_grad(rate) else step.detach()
    return out


RATE_PREFIX = "inner_lr:"
"""Meta-SGD for RL: the key of a weight's learned inner rates alpha in a parameter dict that
also holds the weights (`MetaObjective` and TRPO's step optimize both)."""


def split_rates(params: Params, lr: float) -> tuple[Params, float | Params]:
    """(weights, the inner step's rates): the `RATE_PREFIX` entries keyed by their weight's
    name, or `lr` where params holds none (MAML's fixed step)."""
    weights = {k: v for k, v in params.items() if not k.startswith(RATE_PREFIX)}
    if len(weights) == len(params):
        return weights, lr
    return weights, {k: params[RATE_PREFIX + k] for k in weights}


def with_rates(weights: Params, rates: Params | None) -> Params:
    """The inverse of `split_rates`: weights, then their rates under `RATE_PREFIX`."""
    if rates is None:
        return dict(weights)
    return {**weights, **{RATE_PREFIX + k: rates[k] for k in weights}}


def _requires_grad(value: float | Tensor) -> bool:
    return isinstance(value, Tensor) and value.requires_grad


@dataclass
class OuterLosses:
    """The outer objective of a rank's tasks at some phi."""

    surrogate: Tensor
    """`[tasks]`: minus the episode mean of `pi_theta'(a|s) / pi_old(a|s) * A'` on the
    post-update samples (TRPO's importance-weighted surrogate; at phi_old its gradient is the
    post-update policy gradient through the adaptation)."""
    kl: Tensor
    """`[tasks]`: episode mean of KL(pi_theta'(.|s) || pi_old(.|s)) on the post-update states
    (MAML-RL's order)."""


class MetaObjective:
    """MAML-RL's outer objective of one rank's tasks as a function of phi: re-adapts from phi
    on the fixed pre-update samples (no new env steps) and evaluates the surrogate and the KL
    to the policies that sampled the post-update data (`old`, fixed at construction, from
    phi_old). `losses(phi)` is what the meta-gradient differentiates and what TRPO's
    Fisher-vector products and line search evaluate."""

    def __init__(
        self,
        policy_fn: PolicyFn,
        phi: Params,
        pre: Samples | None,
        post: Samples,
        lr: float,
        inner_loss: InnerLoss = lvc_loss,
    ) -> None:
        self.policy_fn, self.pre, self.post, self.lr = policy_fn, pre, post, lr
        self.inner_loss = inner_loss
        weights, rates = split_rates(phi, lr)
        fixed = rates if isinstance(rates, float) else {k: v.detach() for k, v in rates.items()}
        adapted = self._adapt(weights, fixed, create_graph=False)
        self.adapted_old = adapted
        with torch.no_grad():
            self.old = policy_fn(adapted, post.obs)
            self.old_log_prob = self.old.log_prob(post.actions)
            stacked = {
                k: v.detach().unsqueeze(0).expand(self.n_tasks, *v.shape)
                for k, v in weights.items()
            }
            # the pre-update policies that sampled `pre` (ProMP's ratios and inner KL)
            self.pre_old = None if pre is None else policy_fn(stacked, pre.obs)

    def _adapt(self, weights: Params, rates: float | Params, *, create_graph: bool) -> Params:
        """theta' for every task; without pre-update samples (`pre` None: the joint baseline
        of `inner_steps = 0`) phi itself, expanded per task."""
        if self.pre is None:
            return {k: v.unsqueeze(0).expand(self.n_tasks, *v.shape) for k, v in weights.items()}
        return adapt(
            self.policy_fn,
            weights,
            self.pre,
            rates,
            create_graph=create_graph,
            inner_loss=self.inner_loss,
        )

    def policy_fn_old(self, samples: Samples) -> Distribution:
        """The policies that sampled the post-update data, on `samples`' states."""
        with torch.no_grad():
            return self.policy_fn(self.adapted_old, samples.obs)

    @property
    def n_tasks(self) -> int:
        return int(self.post.advantages.shape[0])

    def losses(self, phi: Params, *, create_graph: bool = True) -> OuterLosses:
        """The surrogate and KL per task at `phi`; with `create_graph` (and phi requiring
        grad) differentiable through the adaptation, twice."""
        weights, rates = split_rates(phi, self.lr)
        adapted = self._adapt(weights, rates, create_graph=create_graph)
        with torch.set_grad_enabled(any(v.requires_grad for v in adapted.values())):
            dist = self.policy_fn(adapted, self.post.obs)
            ratio = torch.exp(dist.log_prob(self.post.actions) - self.old_log_prob)
            surrogate = -episode_mean(ratio * self.post.advantages, self.post.mask)
            kl = episode_mean(kl_divergence(dist, self.old), self.post.mask)
        return OuterLosses(surrogate, kl)

    def promp_losses(self, phi: Params, clip_eps: float) -> tuple[Tensor, Tensor]:
        """ProMP's outer objective per task at `phi` (Rothfuss et al. 2019; its code's
        `pro_mp.py`): minus the episode mean of `min(r A', clip(r, 1 - eps, 1 + eps) A')`, r
        the ratio of the re-adapted post-update policy to the one that sampled, and the inner
        KL `KL(pi_phi_old || pi_phi)` on the pre-update states (the penalty term). The
        re-adaptation uses `ratio_loss` (the importance weights to the pre-update sampling
        policy). Differentiable to phi through the adaptation."""
        if self.pre is None or self.pre_old is None:
            raise ValueError("ProMP's objective needs the pre-update samples")
        pre = Samples(
            self.pre.obs,
            self.pre.actions,
            self.pre.advantages,
            self.pre.mask,
            self.pre_old.log_prob(self.pre.actions),
        )
        weights, rates = split_rates(phi, self.lr)
        adapted = adapt(
            self.policy_fn, weights, pre, rates, create_graph=True, inner_loss=ratio_loss
        )
        dist = self.policy_fn(adapted, self.post.obs)
        ratio = torch.exp(dist.log_prob(self.post.actions) - self.old_log_prob)
        a = self.post.advantages
        clipped = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
        surrogate = -episode_mean(clipped, self.post.mask)
        base = {k: v.unsqueeze(0).expand(self.n_tasks, *v.shape) for k, v in weights.items()}
        inner_kl = episode_mean(
            kl_divergence(self.pre_old, self.policy_fn(base, self.pre.obs)), self.pre.mask
        )
        return surrogate, inner_kl

    def kl_hessian(self, phi: Params, fraction: float = 1.0) -> Callable[[Params], Params]:
        """`v -> sum_i Hess_phi KL_i(phi) v` at phi = phi_old (the policies that sampled the
        post-update data), each task's Hessian through the adaptation.

        At phi_old the KL and its gradient in theta' vanish, so the Hessian with respect to
        phi is `J_i^T F_i J_i`: F_i the KL's Hessian in theta_i' (the Fisher matrix of the
        post-update policy on its states) and J_i = d theta_i' / d phi = I - lr H_i, H_i the
        inner LVC loss's Hessian (symmetric). A product is two per-task Hessian-vector
        products of the inner loss and one of the KL, each one backward on a kept graph:
        about a third of the cost of differentiating the KL's gradient through the adaptation
        again (the tests check the two agree). With `fraction` < 1 both Hessians are
        estimated on the first `ceil(fraction * episodes)` episodes of each task (the
        episode means keep their scale)."""
        n = self.n_tasks
        post = self.post.head(fraction)
        pre = None if self.pre is None else self.pre.head(fraction)
        old = self.old if fraction >= 1.0 else self.policy_fn_old(post)
        weights, given = split_rates(phi, self.lr)
        rates = None if isinstance(given, float) else {k: v.detach() for k, v in given.items()}

        def rate(k: str) -> float | Tensor:
            return self.lr if rates is None else rates[k]

        with torch.enable_grad():
            stacked = {
                k: v.detach().unsqueeze(0).repeat(n, *([1] * v.dim())) for k, v in weights.items()
            }
            leaves = {k: v.requires_grad_() for k, v in stacked.items()}
            if pre is None:  # no adaptation: J = I (the joint baseline)
                inner_grads = {k: torch.zeros_like(v) for k, v in leaves.items()}
            else:
                inner = self.inner_loss(self.policy_fn, leaves, pre).sum()
                inner_grads = _grads(inner, leaves, create_graph=True)
            adapted = {
                k: (v - rate(k) * inner_grads[k]).detach().requires_grad_()
                for k, v in leaves.items()
            }
            dist = self.policy_fn(adapted, post.obs)
            kl = episode_mean(kl_divergence(dist, old), post.mask).sum()
            kl_grads = _grads(kl, adapted, create_graph=True)
        steps = {k: g.detach() for k, g in inner_grads.items()}  # Meta-SGD: d theta' / d alpha

        def hessian_vector(grads: Params, wrt: Params, w: Params) -> Params:
            used = [k for k in wrt if grads[k].requires_grad]
            if not used:
                return {k: torch.zeros_like(w[k]) for k in wrt}
            with torch.enable_grad():
                dot = torch.stack([(grads[k] * w[k]).sum() for k in used]).sum()
                out = torch.autograd.grad(dot, [wrt[k] for k in used], retain_graph=True)
            by_name = dict(zip(used, out, strict=True))
            return {k: by_name[k] if k in by_name else torch.zeros_like(w[k]) for k in wrt}

        def jacobian(w: Params, w_rates: Params | None) -> Params:
            """J w per task: d theta' = (I - alpha H) d phi - grad * d alpha."""
            hw = hessian_vector(inner_grads, leaves, w)
            out = {k: w[k] - rate(k) * hw[k] for k in w}
            if w_rates is not None:
                out = {k: out[k] - steps[k] * w_rates[k] for k in out}
            return out

        def jacobian_transpose(u: Params) -> tuple[Params, Params | None]:
            """J^T u per task: (u - H (alpha u), -grad u); H is symmetric."""
            if rates is None:  # J is symmetric: MAML's product, in its order of operations
                return jacobian(u, None), None
            hu = hessian_vector(inner_grads, leaves, {k: rates[k] * x for k, x in u.items()})
            return {k: u[k] - hu[k] for k in u}, {k: -steps[k] * x for k, x in u.items()}

        def per_task(x: Tensor) -> Tensor:
            return x.unsqueeze(0).expand(n, *x.shape)

        def product(v: Params) -> Params:
            v_weights, v_rates = split_rates(v, 0.0)
            by_rates = (
                None if isinstance(v_rates, float) else {k: per_task(x) for k, x in v_rates.items()}
            )
            w = jacobian(
                {k: per_task(x) for k, x in v_weights.items()},
                by_rates,
            )
            by_weight, by_rate = jacobian_transpose(hessian_vector(kl_grads, adapted, w))
            return with_rates(
                {k: x.sum(0) for k, x in by_weight.items()},
                None if by_rate is None else {k: x.sum(0) for k, x in by_rate.items()},
            )

        return product

    def gradient(self, phi: Params, *, first_order: bool = False) -> tuple[Params, OuterLosses]:
        """The sum over tasks of d surrogate_i / d phi (second order; with `first_order` the
        inner gradient is held constant, which is first-order MAML) and the losses."""
        leaves = {k: v.detach().requires_grad_() for k, v in phi.items()}
        with torch.enable_grad():
            out = self.losses(leaves, create_graph=not first_order)
            grads = torch.autograd.grad(
                out.surrogate.sum(), list(leaves.values()), allow_unused=True
            )
        total = {
            k: torch.zeros_like(v) if g is None else g
            for (k, v), g in zip(leaves.items(), grads, strict=True)
        }
        return total, OuterLosses(out.surrogate.detach(), out.kl.detach())


def _grads(loss: Tensor, wrt: Params, *, create_graph: bool) -> Params:
    """d loss / d each of `wrt`, zeros (not requiring grad) for those it does not use."""
    grads = torch.autograd.grad(
        loss, list(wrt.values()), create_graph=create_graph, allow_unused=True
    )
    return {
        k: torch.zeros_like(v) if g is None else g
        for (k, v), g in zip(wrt.items(), grads, strict=True)
    }


def meta_gradient(
    policy_fn: PolicyFn,
    phi: Params,
    pre: Samples,
    post: Samples,
    lr: float,
    inner_loss: InnerLoss = lvc_loss,
    *,
    first_order: bool = False,
) -> tuple[Params, Tensor]:
    """MAML-RL's meta-gradient estimate: the sum over tasks of
    `d L_outer_i(theta_i'(phi); post_i) / d phi`, with `theta_i'` one inner step of `lr` on
    `pre_i` (samples of pi_phi) and `post_i` samples of pi_theta_i'. Returns it and the
    per-task outer losses (`first_order`: without the inner step's derivative). The learner
    (`metarl.learners.maml_rl`) computes the same through `MetaObjective.gradient`."""
    objective = MetaObjective(policy_fn, phi, pre, post, lr, inner_loss)
    grads, losses = objective.gradient(phi, first_order=first_order)
    return grads, losses.surrogate


class _Categorical(Categorical):
    """A categorical that takes the rollout's float-stored actions."""

    def log_prob(self, value: Tensor) -> Tensor:
        return super().log_prob(value.long())


def policy_function(policy: BatchedPolicy) -> PolicyFn:
    """The action distribution of SB3's policy with per-task weights (the rollout's
    `BatchedPolicy`): a diagonal Gaussian with state-independent `log_std`, or a categorical."""

    def distribution(params: Params, obs: Tensor) -> Distribution:
        tasks = obs.shape[0]
        flat = obs.reshape(tasks, -1, obs.shape[-1])
        out = policy.action_head(params, flat)
        out = out.view(*obs.shape[:-1], out.shape[-1])
        if policy.discrete:
            return _Categorical(logits=out, validate_args=False)
        log_std = params["log_std"].view(tasks, *([1] * (obs.dim() - 2)), -1)
        return Independent(Normal(out, log_std.exp(), validate_args=False), 1)

    return distribution


__all__ = [
    "MetaObjective",
    "OuterLosses",
    "PolicyFn",
    "Samples",
    "adapt",
    "episode_mean",
    "lvc_loss",
    "meta_gradient",
    "policy_function",
    "ratio_loss",
    "reinforce_loss",
]
