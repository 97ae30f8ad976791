"""SB3's `MlpPolicy`, run for many tasks at once with per-task weights.

The parameters are those of one SB3 `ActorCriticPolicy` (built here, so names, shapes and the
orthogonal initialization are SB3's and a policy exports to `stable_baselines3.PPO` as it is):
`mlp_extractor.policy_net.*`, `mlp_extractor.value_net.*`, `action_net.*`, `value_net.*`
and, for continuous actions, `log_std`. Stacked parameters carry a leading task axis; the
network is run layer by layer as batched matmuls over that axis, so one call evaluates every
task's policy on its own observations (`[tasks, batch, obs_dim]`).

The action distribution is SB3's: a diagonal Gaussian with state-independent `log_std`
(Box actions) or a categorical over logits (Discrete). Sampling takes its noise as an
argument, drawn by the caller from per-task generators, so a task's actions depend on its own
seed and on nothing else in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import Tensor

from metarl.errors import ConfigError
from metarl.models import ACTIVATIONS

Params = dict[str, Tensor]

LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))


def build_sb3_policy(
    observation_space: spaces.Space[Any],
    action_space: spaces.Space[Any],
    *,
    net_arch: list[int],
    activation: str,
    ortho_init: bool,
    log_std_init: float,
    seed: int,
) -> ActorCriticPolicy:
    """SB3's `MlpPolicy` for these spaces, initialized from `seed` alone (torch's global
    generator is left as it was). `PPO("MlpPolicy", ...)` under the same seed builds the same
    weights: it draws nothing from torch before it builds its policy."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ConfigError(
            f"observation space {observation_space}: the batched learner takes flat Box "
            'observations (use backend = "sb3" for others)'
        )
    if not isinstance(action_space, spaces.Box | spaces.Discrete):
        raise ConfigError(f"action space {action_space}: expected a Box or a Discrete space")
    kwargs: dict[str, Any] = {
        "net_arch": list(net_arch),
        "activation_fn": ACTIVATIONS[activation],
        "ortho_init": ortho_init,
    }
    if isinstance(action_space, spaces.Box):
        kwargs["log_std_init"] = log_std_init
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ActorCriticPolicy(observation_space, action_space, lambda _: 0.0, **kwargs)


class BatchedPolicy:
    """Per-task forward passes of one SB3 policy's architecture (see the module docstring)."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        self.policy = policy
        self.discrete = isinstance(policy.action_space, spaces.Discrete)
        self.names = [n for n, _ in policy.named_parameters()]
        self.activation: Callable[[Tensor], Tensor] = policy.activation_fn()
        extractor = policy.mlp_extractor
        self._layers = {
            "pi": _linear_names(extractor.policy_net, "mlp_extractor.policy_net."),
            "vf": _linear_names(extractor.value_net, "mlp_extractor.value_net."),
        }

    def _mlp(self, params: Params, layers: list[str], x: Tensor) -> Tensor:
        for name in layers:
            x = self.activation(_linear(params, name, x))
        return x

    # -- stacked parameters, `[tasks, batch, ...]` inputs ----------------------------------
    def heads(self, params: Params, obs: Tensor) -> tuple[Tensor, Tensor]:
        """The action head's output (Gaussian means or logits) and the values: SB3's
        `MlpExtractor` (separate actor and critic MLPs), `action_net` and `value_net`, each
        layer one batched matmul over the task axis (`baddbmm`). Tested equal to the SB3
        policy run per task with `torch.func.functional_call`; a `vmap` of that is slower per
        call, which the rollout would pay at every env step."""
        return self.action_head(params, obs), self.values(params, obs)

    def action_head(self, params: Params, obs: Tensor) -> Tensor:
        """The action head's output alone (the actor MLP and `action_net`): what the
        policy-gradient surrogates differentiate, without the value network's forward."""
        return _linear(params, "action_net.", self._mlp(params, self._layers["pi"], obs))

    def values(self, params: Params, obs: Tensor) -> Tensor:
        """The value network alone (SB3's `predict_values`), `[tasks, batch]`."""
        latent = self._mlp(params, self._layers["vf"], obs)
        return _linear(params, "value_net.", latent).squeeze(-1)

    def sample(self, params: Params, out: Tensor, noise: Tensor) -> Tensor:
        """Actions from the head output `out` and the caller's noise: standard normal draws
        shaped like `out` (Gaussian: mean + std * noise), or uniform draws in (0, 1) shaped
        like `out` (Discrete: the Gumbel-max trick, a categorical draw from the logits)."""
        if self.discrete:
            gumbel = -torch.log(-torch.log(noise))
            return (out + gumbel).argmax(-1)
        return out + params["log_std"].exp().unsqueeze(-2) * noise

    def log_prob_entropy(
        self, params: Params, out: Tensor, actions: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Log-probability of `actions` and the entropy, `[tasks, batch]` each (SB3's
        `evaluate_actions`: summed over the action dimensions)."""
        if self.discrete:
            log_p = torch.log_softmax(out, -1)
            chosen = log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            entropy = -(log_p.exp() * log_p).sum(-1)
            return chosen, entropy
        log_std = params["log_std"].unsqueeze(-2)
        var = torch.exp(2 * log_std)
        log_prob = -((actions - out) ** 2) / (2 * var) - log_std - LOG_SQRT_2PI
        entropy = (0.5 + LOG_SQRT_2PI + log_std).expand_as(out)
        return log_prob.sum(-1), entropy.sum(-1)


def per_task_gradients(
    losses_of: Callable[[Params], Tensor], params: Params
) -> tuple[Params, Tensor]:
    """Per-task gradients (stacked like `params`) of the per-task losses `losses_of(params)`,
    `[tasks]`, and the losses. The tasks share no weights, so the gradient of the losses' sum
    w.r.t. the stacked parameters is the stack of per-task gradients: one backward for all."""
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
        losses = losses_of(leaves)
        grads = torch.autograd.grad(losses.sum(), list(leaves.values()), allow_unused=True)
    out = {
        k: (g if g is not None else torch.zeros_like(v))
        for (k, v), g in zip(leaves.items(), grads, strict=True)
    }
    return out, losses.detach()


def _linear_names(net: torch.nn.Sequential, prefix: str) -> list[str]:
    """The parameter prefixes of the `Linear` layers of one of SB3's MLPs (each followed by
    the activation), e.g. `mlp_extractor.policy_net.0.`."""
    return [f"{prefix}{i}." for i, m in enumerate(net) if isinstance(m, torch.nn.Linear)]


def _linear(params: Params, prefix: str, x: Tensor) -> Tensor:
    """`x @ W^T + b` per task: `x` is `[tasks, batch, in]`, W `[tasks, out, in]`."""
    weight, bias = params[prefix + "weight"], params[prefix + "bias"]
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


__all__ = [
    "BatchedPolicy",
    "Params",
    "build_sb3_policy",
    "per_task_gradients",
]
