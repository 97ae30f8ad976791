"""MAML-RL's second-order meta-gradient, for every task of a meta-batch at once.

The objective (Finn et al. 2017, RL): for task i, episodes D_i ~ pi_phi (pre-update), the
adapted parameters `theta_i' = phi - alpha * grad L_inner_i(phi; D_i)` (one step of plain SGD
on the VPG surrogate), fresh episodes D_i' ~ pi_theta_i' (post-update), and the outer loss
`L_outer_i(theta_i'(phi); D_i')`. Its gradient with respect to phi is

    (I - alpha * Hess L_inner_i(phi)) grad L_outer_i(theta_i')

where the Hessian must account for D_i being sampled from pi_phi: the Hessian of the
*expected* inner objective is `E[(Hess log pi + grad log pi grad log pi^T) A]`, and
differentiating the plain REINFORCE loss `-log pi * A` twice (pytorch-maml-rl's
`reinforce_loss`) gives only the first term (the tests show the meta-gradient through it
wrong).

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution, Independent, Normal, kl_divergence

from metarl.rl.fisher import FISHER_METHODS, FisherMethod, OutputHead, inner_step_jvp
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
    """Log-probabilities of the actions under the policy that sampled them (`ratio_loss_of`)."""

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


def ratio_loss_of(dist: Distribution, samples: Samples) -> Tensor:
    """ProMP's inner loss as its code writes it, for the policies' distribution `dist` on
    `samples`' states: minus the episode mean of `pi(a|s) / pi_sampling(a|s) * A`, the ratio
    to the sampling policy (`log_prob_old`). At the sampling parameters it is `lvc_loss`
    (value and every derivative); elsewhere it is the importance-weighted policy gradient,
    which ProMP's several outer steps per batch re-adapt with."""
    if samples.log_prob_old is None:
        raise ValueError("ProMP's ratio loss needs the samples' log_prob_old")
    ratio = torch.exp(dist.log_prob(samples.actions) - samples.log_prob_old)
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
    stacked: bool = False,
) -> Params:
    """`theta_i' = phi - lr * grad L_inner_i(phi)` for every task, stacked; `lr` a float,
    or Meta-SGD's per-parameter rates alpha keyed like phi (`phi - alpha * grad`, elementwise;
    rates requiring grad make the result differentiable with respect to them). With `stacked`
    phi is already one set of weights per task (`[tasks, ...]`: a later step of a
    multi-step adaptation, taken from the previous step's theta').

    With `create_graph` the step is differentiable twice (the meta-gradient flows through the
    inner gradient); without it the inner gradient is a constant, so a gradient through the
    result with respect to phi is first-order MAML's. Parameters the policy does not use
    (the value head) are left as phi."""
    n = samples.advantages.shape[0]
    with torch.enable_grad():
        base = {k: v if v.requires_grad else v.detach().requires_grad_() for k, v in phi.items()}
        params = (
            base if stacked else {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in base.items()}
        )
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


def adapt_path(
    policy_fn: PolicyFn,
    phi: Params,
    steps: Sequence[Samples],
    lr: float | Params,
    *,
    create_graph: bool,
    inner_loss: InnerLoss = lvc_loss,
) -> list[Params]:
    """`[theta_1', ..., theta_k']` for every task, k = `len(steps)` inner steps from phi, step
    j on `steps[j]` (the episodes of theta_j', so step 0's are phi's): `theta_{j+1}' =
    theta_j' - lr * grad L_inner(theta_j'; steps[j])`. With `create_graph` the chain is
    differentiable twice: with the LVC loss each step's Jacobian `I - lr * H_j` carries the
    dependence of step j's episodes on theta_j' (ProMP's estimator applied per step, as its
    code does for several inner steps)."""
    if not steps:
        raise ValueError("adapt_path needs at least one inner step's samples")
    path = [adapt(policy_fn, phi, steps[0], lr, create_graph=create_graph, inner_loss=inner_loss)]
    for samples in steps[1:]:
        path.append(
            adapt(
                policy_fn,
                path[-1],
                samples,
                lr,
                create_graph=create_graph,
                inner_loss=inner_loss,
                stacked=True,
            )
        )
    return path


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
    post-update policy gradient through the adaptation); with `every_step`, its mean over the
    inner steps' policies, each on the episodes it sampled."""
    kl: Tensor
    """`[tasks]`: episode mean of KL(pi_theta'(.|s) || pi_old(.|s)) on the post-update states
    (MAML-RL's order); with `every_step`, its mean over the steps' policies likewise."""


class MetaObjective:
    """MAML-RL's outer objective of one rank's tasks as a function of phi: re-adapts from phi
    on the fixed pre-update samples (no new env steps) and evaluates the surrogate and the KL
    to the policies that sampled the post-update data (`old`, fixed at construction, from
    phi_old). `losses(phi)` is what the meta-gradient differentiates and what TRPO's
    Fisher-vector products and line search evaluate.

    With several inner steps the outer objective judges the last step's policy
    (`every_step` False, MAML-RL's) or every step's: theta_j' on the episodes it sampled for
    step j + 1 (already collected, so no new env steps) and theta_k' on the post-update ones,
    the surrogates and KLs averaged over the k policies (MAML++'s multi-step loss, Antoniou
    et al. 2019): the trust region then bounds every step's policy, and the init is trained
    to be good after each number of steps up to k, not only after k.

    `path`, where the caller has it, is the adaptation at phi (theta_1', ..., theta_k', as
    `adapt_path` computes them without a graph): the learner's rollouts were collected with
    these policies, so the objective takes them instead of redoing the inner steps."""

    def __init__(
        self,
        policy_fn: PolicyFn,
        phi: Params,
        pre: Samples | Sequence[Samples] | None,
        post: Samples,
        lr: float,
        inner_loss: InnerLoss = lvc_loss,
        *,
        every_step: bool = False,
        path: Sequence[Params] | None = None,
    ) -> None:
        self.policy_fn, self.post, self.lr = policy_fn, post, lr
        self.pre_steps: tuple[Samples, ...] = (
            () if pre is None else (pre,) if isinstance(pre, Samples) else tuple(pre)
        )
        """Each inner step's samples (step j's from theta_j', step 0's from phi); empty for
        the joint baseline (`inner_steps = 0`)."""
        self.inner_loss = inner_loss
        last = max(len(self.pre_steps), 1) - 1  # the path's last policy (joint: phi's)
        every_step = every_step and last > 0  # one step (or none): only the last to judge
        self.judged = list(range(last + 1)) if every_step else [last]
        """Which of the adaptation's policies the outer objective judges (indices into the
        path theta_1', ..., theta_k'), each on `outer_samples`."""
        self.outer_samples = [*self.pre_steps[1:], post] if every_step else [post]
        weights, rates = split_rates(phi, lr)
        fixed = rates if isinstance(rates, float) else {k: v.detach() for k, v in rates.items()}
        if path is None:
            path = self._path(weights, fixed, create_graph=False)
        elif len(path) != last + 1:
            raise ValueError(f"path holds {len(path)} policies, the adaptation {last + 1}")
        # the policies that sampled the judged episodes (the caller's path: not redone)
        self.path_old = [{k: v.detach() for k, v in theta.items()} for theta in path]
        with torch.no_grad():
            self.olds = [
                policy_fn(path[j], samples.obs)
                for j, samples in zip(self.judged, self.outer_samples, strict=True)
            ]
            self.old_log_probs = [
                old.log_prob(samples.actions)
                for old, samples in zip(self.olds, self.outer_samples, strict=True)
            ]
            stacked = {
                k: v.detach().unsqueeze(0).expand(self.n_tasks, *v.shape)
                for k, v in weights.items()
            }
            # the pre-update policies that sampled phi's episodes (ProMP's ratios and inner KL)
            self.pre_old = None if self.pre is None else policy_fn(stacked, self.pre.obs)

    def _path(self, weights: Params, rates: float | Params, *, create_graph: bool) -> list[Params]:
        """Every task's theta_1', ..., theta_k'; without pre-update samples (the joint
        baseline of `inner_steps = 0`) phi itself, expanded per task."""
        if not self.pre_steps:
            return [{k: v.unsqueeze(0).expand(self.n_tasks, *v.shape) for k, v in weights.items()}]
        return adapt_path(
            self.policy_fn,
            weights,
            self.pre_steps,
            rates,
            create_graph=create_graph,
            inner_loss=self.inner_loss,
        )

    @property
    def pre(self) -> Samples | None:
        """phi's own episodes (the first step's), None for the joint baseline."""
        return self.pre_steps[0] if self.pre_steps else None

    @property
    def old_log_prob(self) -> Tensor:
        """The post-update actions' log-probabilities under the policies that sampled them."""
        return self.old_log_probs[-1]

    def policy_fn_old(self, samples: Samples, judged: int = -1) -> Distribution:
        """The policies that sampled the post-update data (or the `judged` step's), on
        `samples`' states."""
        with torch.no_grad():
            return self.policy_fn(self.path_old[judged], samples.obs)

    @property
    def n_tasks(self) -> int:
        return int(self.post.advantages.shape[0])

    def losses(self, phi: Params, *, create_graph: bool = True) -> OuterLosses:
        """The surrogate and KL per task at `phi`; with `create_graph` (and phi requiring
        grad) differentiable through the adaptation, twice."""
        weights, rates = split_rates(phi, self.lr)
        path = self._path(weights, rates, create_graph=create_graph)
        surrogates, kls = [], []
        with torch.set_grad_enabled(any(v.requires_grad for v in path[-1].values())):
            for j, samples, old, old_log_prob in zip(
                self.judged, self.outer_samples, self.olds, self.old_log_probs, strict=True
            ):
                dist = self.policy_fn(path[j], samples.obs)
                ratio = torch.exp(dist.log_prob(samples.actions) - old_log_prob)
                surrogates.append(-episode_mean(ratio * samples.advantages, samples.mask))
                kls.append(episode_mean(kl_divergence(dist, old), samples.mask))
        if len(surrogates) == 1:
            return OuterLosses(surrogates[0], kls[0])
        return OuterLosses(torch.stack(surrogates).mean(0), torch.stack(kls).mean(0))

    def promp_losses(
        self, phi: Params, clip_eps: float, *, create_graph: bool = True
    ) -> tuple[Tensor, Tensor]:
        """ProMP's outer objective per task at `phi` (Rothfuss et al. 2019; its code's
        `pro_mp.py`): minus the episode mean of `min(r A', clip(r, 1 - eps, 1 + eps) A')`, r
        the ratio of the re-adapted post-update policy to the one that sampled, and the inner
        KL `KL(pi_phi_old || pi_phi)` on the pre-update states (the penalty term). The
        re-adaptation uses `ratio_loss_of` (the importance weights to the pre-update sampling
        policy). With `create_graph` differentiable to phi through the adaptation; without,
        values only (the inner gradient still taken, no graph kept). Without pre-update
        samples (the joint baseline, `inner_steps = 0`) the clipped term at phi itself, PPO's
        objective on the task mixture, and no inner KL (zero).

        pi_phi on the pre-update states is evaluated once, for the inner step and the KL
        both: the KL's gradient then shares the inner loss's backward pass through the
        network instead of taking one of its own (a ProMP step is 4 such passes)."""
        weights, rates = split_rates(phi, self.lr)
        if self.pre is None:  # the joint baseline: PPO's clipped objective on phi's episodes
            base = {k: v.unsqueeze(0).expand(self.n_tasks, *v.shape) for k, v in weights.items()}
            with torch.set_grad_enabled(create_graph):
                surrogate = self._clipped_surrogate(base, clip_eps)
            return surrogate, torch.zeros_like(surrogate)
        if self.pre_old is None or len(self.pre_steps) > 1:
            raise ValueError("ProMP's objective needs one inner step's pre-update samples")
        pre_old = self.pre_old
        pre = Samples(
            self.pre.obs,
            self.pre.actions,
            self.pre.advantages,
            self.pre.mask,
            pre_old.log_prob(self.pre.actions),
        )
        kls: list[Tensor] = []

        def inner_loss(policy_fn: PolicyFn, params: Params, samples: Samples) -> Tensor:
            dist = policy_fn(params, samples.obs)
            kls.append(episode_mean(kl_divergence(pre_old, dist), samples.mask))
            return ratio_loss_of(dist, samples)

        if not create_graph:
            weights = {k: v.detach() for k, v in weights.items()}
        adapted = adapt(
            self.policy_fn, weights, pre, rates, create_graph=create_graph, inner_loss=inner_loss
        )
        with torch.set_grad_enabled(create_graph):
            surrogate = self._clipped_surrogate(adapted, clip_eps)
        return surrogate, kls[0] if create_graph else kls[0].detach()

    def _clipped_surrogate(self, theta: Params, clip_eps: float) -> Tensor:
        """Minus the episode mean of `min(r A', clip(r, 1 - eps, 1 + eps) A')` on the
        post-update episodes, r the ratio of the policies `theta` to the sampling ones."""
        dist = self.policy_fn(theta, self.post.obs)
        ratio = torch.exp(dist.log_prob(self.post.actions) - self.old_log_prob)
        a = self.post.advantages
        clipped = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
        return -episode_mean(clipped, self.post.mask)

    def kl_hessian(
        self, phi: Params, fraction: float = 1.0, method: FisherMethod = "hvp"
    ) -> Callable[[Params], Params]:
        """`v -> sum_i Hess_phi KL_i(phi) v` at phi = phi_old (the policies that sampled the
        post-update data), each task's Hessian through the adaptation.

        At phi_old the KL and its gradient in theta' vanish, so the Hessian with respect to
        phi is `J_i^T F_i J_i`: F_i the KL's Hessian in theta_i' (the Fisher matrix of the
        post-update policy on its states) and J_i = d theta_i' / d phi the adaptation's
        Jacobian, the product over the inner steps of `I - lr H_ij`, H_ij the inner LVC
        loss's Hessian at step j (symmetric); with `every_step` the mean over the judged
        policies of `J_ij^T F_ij J_ij`, J_ij the Jacobian of the first j steps. A product is
        two Hessian-vector products of each step's inner loss and one of each KL, each one
        backward on a kept graph: about a third of the cost of differentiating the KL's
        gradient through the adaptation again (the tests check the two agree). With
        `fraction` < 1 the Hessians are estimated on the first `ceil(fraction * episodes)`
        episodes of each task (the episode means keep their scale).

        `method` "jvp" computes the same product in forward mode (`metarl.rl.fisher`): J v
        by Jacobian-vector products through each inner step and the network, F by the KL's
        closed-form Hessian in the distribution's parameters, then one vector-Jacobian
        product of the network and the same reverse chain of the steps."""
        if method not in FISHER_METHODS:
            raise ValueError(f"Fisher method {method!r}: expected one of {FISHER_METHODS}")
        n = self.n_tasks
        outer = [samples.head(fraction) for samples in self.outer_samples]
        pres = [samples.head(fraction) for samples in self.pre_steps]
        olds = (
            self.olds
            if fraction >= 1.0
            else [
                self.policy_fn_old(samples, j)
                for j, samples in zip(self.judged, outer, strict=True)
            ]
        )
        weights, given = split_rates(phi, self.lr)
        rates = None if isinstance(given, float) else {k: v.detach() for k, v in given.items()}
        scale = 1.0 / len(self.judged)

        def rate(k: str) -> float | Tensor:
            return self.lr if rates is None else rates[k]

        chain: list[tuple[Params, Params]] = []  # each step's (theta_j' leaves, inner grads)
        points: list[Params] = []  # theta_1', ..., theta_k' as leaves (joint: phi per task)
        with torch.enable_grad():
            theta = {
                k: v.detach().unsqueeze(0).repeat(n, *([1] * v.dim())) for k, v in weights.items()
            }
            leaves = {k: v.requires_grad_() for k, v in theta.items()}
            for samples in pres:
                inner_grads = _grads(
                    self.inner_loss(self.policy_fn, leaves, samples).sum(),
                    leaves,
                    create_graph=True,
                )
                chain.append((leaves, inner_grads))
                leaves = {
                    k: (v - rate(k) * inner_grads[k]).detach().requires_grad_()
                    for k, v in leaves.items()
                }
                points.append(leaves)
            if not points:
                points.append(leaves)
            kl_terms: dict[int, tuple[Params, Params]] = {}  # step -> (point, KL's grads)
            heads: dict[int, OutputHead] = {}  # step -> the distribution parameters' graph ("jvp")
            for j, samples, old in zip(self.judged, outer, olds, strict=True):
                dist = self.policy_fn(points[j], samples.obs)
                if method == "jvp":
                    heads[j] = OutputHead.of(dist, old, samples.obs, samples.mask, points[j], scale)
                    continue
                kl = episode_mean(kl_divergence(dist, old), samples.mask).sum()
                kl_terms[j] = (points[j], _grads(kl, points[j], create_graph=True))

        def hessian_vector(grads: Params, wrt: Params, w: Params) -> Params:
            used = [k for k in wrt if grads[k].requires_grad]
            if not used:
                return {k: torch.zeros_like(w[k]) for k in wrt}
            with torch.enable_grad():
                dot = torch.stack([(grads[k] * w[k]).sum() for k in used]).sum()
                out = torch.autograd.grad(dot, [wrt[k] for k in used], retain_graph=True)
            by_name = dict(zip(used, out, strict=True))
            return {k: by_name[k] if k in by_name else torch.zeros_like(w[k]) for k in wrt}

        at_steps = [{k: v.detach() for k, v in leaves.items()} for leaves, _ in chain]

        def inner_loss_at(samples: Samples) -> Callable[[Params], Tensor]:
            return lambda p: self.inner_loss(self.policy_fn, p, samples).sum()

        def forward(w: Params, w_rates: Params | None) -> list[Params]:
            """J_1j w for j = 1..k, step by step: d theta_{j+1}' = (I - alpha H_j) d theta_j'
            - grad_j * d alpha (Meta-SGD's rates are the same at every step); joint: [w]."""
            out = []
            for (leaves, inner_grads), at, samples in zip(chain, at_steps, pres, strict=True):
                if method == "jvp":
                    hw = inner_step_jvp(inner_loss_at(samples), at, w)
                else:
                    hw = hessian_vector(inner_grads, leaves, w)
                w = {k: w[k] - rate(k) * hw[k] for k in w}
                if w_rates is not None:
                    w = {k: w[k] - inner_grads[k].detach() * w_rates[k] for k in w}
                out.append(w)
            return out or [w]

        def backward(adjoints: dict[int, Params]) -> tuple[Params, Params | None]:
            """sum_j J_1j^T u_j, the steps in reverse: each maps the adjoint u to u - H_j
            (alpha u) (H_j symmetric) and, for Meta-SGD, adds -grad_j u to the rates' part."""
            u = {k: torch.zeros_like(x) for k, x in next(iter(adjoints.values())).items()}
            by_rate = None if rates is None else {k: torch.zeros_like(x) for k, x in u.items()}
            for at in range(len(points) - 1, -1, -1):
                if at in adjoints:
                    u = {k: u[k] + adjoints[at][k] for k in u}
                if at >= len(chain):  # the joint baseline: J = I
                    continue
                leaves, inner_grads = chain[at]
                if rates is None:
                    hu = hessian_vector(inner_grads, leaves, u)
                    u = {k: u[k] - self.lr * hu[k] for k in u}
                else:
                    assert by_rate is not None
                    by_rate = {k: by_rate[k] - inner_grads[k].detach() * u[k] for k in u}
                    hu = hessian_vector(
                        inner_grads, leaves, {k: rates[k] * x for k, x in u.items()}
                    )
                    u = {k: u[k] - hu[k] for k in u}
            return u, by_rate

        def per_task(x: Tensor) -> Tensor:
            return x.unsqueeze(0).expand(n, *x.shape)

        def product(v: Params) -> Params:
            v_weights, v_rates = split_rates(v, 0.0)
            by_rates = (
                None if isinstance(v_rates, float) else {k: per_task(x) for k, x in v_rates.items()}
            )
            ws = forward({k: per_task(x) for k, x in v_weights.items()}, by_rates)
            adjoints = {}
            for at, (point, kl_grads) in kl_terms.items():
                fw = hessian_vector(kl_grads, point, ws[at])
                adjoints[at] = fw if scale == 1.0 else {k: scale * x for k, x in fw.items()}
            for at, head in heads.items():
                adjoints[at] = head.gauss_newton(self.policy_fn, ws[at])
            by_weight, by_rate = backward(adjoints)
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
    "adapt_path",
    "ratio_loss_of",
    "episode_mean",
    "lvc_loss",
    "policy_function",
]
