"""The RL learners' settings: the recipe's `[learner]` table, typed and checked.

`PPOUpdateSettings` holds the keys of PPO's update (its advantage estimate and its loss) that
every PPO of metarl reads (both RL engines' and RL²'s); `PPOSettings` adds the rest of PPO's
own settings (SB3's names and defaults) read by both RL engines; `BatchedSettings` adds what
only the batched engine reads. They live here, below the learners, so that recipe tools
(`metarl.rl.baselines`, `metarl tasks show`) read them without building a learner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from gymnasium import spaces

from metarl.combinations import DEFAULT_BACKEND, DEFAULT_INNER, Inner, check_backend
from metarl.config import Recipe, build_dataclass
from metarl.errors import ConfigError
from metarl.models import ACTIVATIONS


@dataclass
class PPOUpdateSettings:
    """The keys of PPO's update in the recipe's `[learner]` table (its advantage estimate and
    its loss), read by the PPO engines (`PPOSettings`) and by RL²
    (`metarl.rl.rl2_settings.RL2Settings`): SB3's names and defaults. The subclasses list
    their own keys after these."""

    gamma: float = 0.99
    """Discount factor (RL²'s discounts over the whole trial: the episode boundaries inside
    a trial do not cut it)."""
    gae_lambda: float = 0.95
    """GAE's lambda: the bias-variance trade-off of the advantage estimate."""
    clip_range: float = 0.2
    """PPO's clip of the probability ratio."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus in PPO's loss."""
    vf_coef: float = 0.5
    """Weight of the value loss in PPO's loss."""
    max_grad_norm: float = 0.5
    """Clip of the gradient's norm (in the PPO engines, each task's)."""
    normalize_advantage: bool = True
    """Normalize the advantages within each minibatch."""

    def validate(self) -> None:
        """Range checks of the update's keys: `ConfigError` naming `learner.KEY`."""
        for name, value in (("gamma", self.gamma), ("gae_lambda", self.gae_lambda)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"learner.{name} = {value}: must be in [0, 1]")
        if self.clip_range <= 0:
            raise ConfigError(f"learner.clip_range = {self.clip_range}: must be > 0")
        if self.max_grad_norm <= 0:
            raise ConfigError(f"learner.max_grad_norm = {self.max_grad_norm}: must be > 0")


@dataclass
class PPOSettings(PPOUpdateSettings):
    """The recipe's `[learner]` table for RL: PPO's own settings (SB3's names and defaults,
    except `n_steps` and `batch_size`, sized for short meta-RL rollouts), its update's keys
    (`PPOUpdateSettings`) first."""

    backend: str = DEFAULT_BACKEND
    """The engine (`metarl.combinations.SUPPORTED`): "batched", every task of the meta-batch
    stepped and updated at once (`metarl.learners.batched_rl`); "sb3", one task after
    another through SB3's PPO (`metarl.learners.sb3_ppo`, the reference the batched engine
    is tested against)."""
    n_steps: int = 1000
    """Env steps per rollout and env (one PPO update = one rollout + n_epochs); at least
    `batch_size / n_envs`."""
    n_envs: int = 1
    """Copies of the task's env stepped in lockstep (DummyVecEnv)."""
    n_epochs: int = 10
    """PPO's passes over a rollout per update."""
    batch_size: int = 100
    """PPO's minibatch, in env steps; at most `n_steps * n_envs`."""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layers of the policy and (separately) of the value network."""
    activation: str = "tanh"
    """The hidden layers' activation (`metarl.models.ACTIVATIONS`)."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""
    ortho_init: bool = True
    """SB3's orthogonal initialization of the policy and value networks."""

    owner: ClassVar[str] = "the PPO learner"
    """Who reads these settings (for messages)."""

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> Self:
        """The recipe's `[learner]` table, typed and checked.

        Args:
            recipe: The recipe whose `[learner]` table is read.

        Returns:
            The settings; keys not given take their defaults.

        Raises:
            ConfigError: An unknown key, a wrong type or a value out of range.
        """
        settings: Self = build_dataclass(cls, recipe.learner, "learner", owner=cls.owner)
        settings.validate()
        return settings

    def ppo_kwargs(self, learning_rate: float, action_space: spaces.Space) -> dict[str, Any]:
        """Keyword arguments of SB3's `PPO(...)` for these settings (the meta-learner and the
        benchmark's plain-SB3 baseline build PPO from the same ones).

        Args:
            learning_rate: PPO's learning rate (the recipe's `train.inner_lr`).
            action_space: The env's; `log_std_init` is passed for continuous actions only.

        Returns:
            Everything but the policy name and the env.
        """
        policy_kwargs: dict[str, Any] = {
            "net_arch": list(self.net_arch),
            "activation_fn": ACTIVATIONS[self.activation],
            "ortho_init": self.ortho_init,
        }
        if isinstance(action_space, spaces.Box):
            policy_kwargs["log_std_init"] = self.log_std_init
        return {
            "learning_rate": learning_rate,
            "n_steps": self.n_steps,
            "batch_size": self.batch_size,
            "n_epochs": self.n_epochs,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "clip_range": self.clip_range,
            "ent_coef": self.ent_coef,
            "vf_coef": self.vf_coef,
            "max_grad_norm": self.max_grad_norm,
            "normalize_advantage": self.normalize_advantage,
            "policy_kwargs": policy_kwargs,
        }

    def validate(self) -> None:
        """Range checks: `ConfigError` naming `learner.KEY` and what it accepts."""
        for name in ("n_steps", "n_envs", "n_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"learner.{name} = {getattr(self, name)}: must be >= 1")
        if self.batch_size > self.n_steps * self.n_envs:
            raise ConfigError(
                f"learner.batch_size = {self.batch_size}: must be at most n_steps * n_envs "
                f"= {self.n_steps * self.n_envs}"
            )
        if self.activation not in ACTIVATIONS:
            raise ConfigError(
                f"learner.activation = {self.activation!r}: expected one of "
                + ", ".join(ACTIVATIONS)
            )
        if not self.net_arch or any(n < 1 for n in self.net_arch):
            raise ConfigError(f"learner.net_arch = {self.net_arch}: expected positive widths")
        super().validate()


@dataclass
class BatchedSettings(PPOSettings):
    """`[learner]` of the batched backend: SB3's PPO settings (`PPOSettings`), `n_envs`
    read as envs per task, plus the inner algorithm."""

    inner: Inner = DEFAULT_INNER
    """"ppo" (SB3's update, vmapped) or "vpg" (MAML-RL's policy gradient step)."""
    trpo_fisher_fraction: float = 1.0
    """`outer_optimizer = "trpo"`: the fraction of each task's episodes on which TRPO's
    Fisher-vector products (its conjugate gradient, 11 per iteration, each through the
    adaptation) are computed; the gradient and the line search's surrogate and KL constraint
    always use every episode. 1.0 is MAML-RL's; a fraction is rllab's `subsample_factor`:
    the metric is estimated on fewer samples, which makes the outer step several times
    cheaper (`scripts/benchmarks/bench_trpo.py`)."""

    outer_every_step: bool = False
    """Second-order MAML-RL with `inner_steps` > 1: the outer objective judges every inner
    step's policy on the episodes it sampled (MAML++'s multi-step loss, no extra env steps;
    the trust region bounds each of them), not only the last one (MAML-RL's)."""

    owner: ClassVar[str] = "the batched RL learner"

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.trpo_fisher_fraction <= 1.0:
            raise ConfigError(
                f"learner.trpo_fisher_fraction = {self.trpo_fisher_fraction}: must be in (0, 1]"
            )


SETTINGS: dict[str, type[PPOSettings]] = {"sb3": PPOSettings}
"""The `[learner]` declaration of an engine that does not read `BatchedSettings`."""


def backend_of(recipe: Recipe) -> str:
    """The recipe's RL engine: `[learner] backend`, `DEFAULT_BACKEND` when not given."""
    return check_backend(recipe.learner.get("backend", DEFAULT_BACKEND))


def settings_class(recipe: Recipe) -> type[PPOSettings]:
    """The `[learner]` declaration of the recipe's RL backend (`backend_of`)."""
    return SETTINGS.get(backend_of(recipe), BatchedSettings)


def rl_settings(recipe: Recipe) -> PPOSettings:
    """The `[learner]` settings of the recipe's RL backend (typed, checked).

    Args:
        recipe: An RL recipe (its `[learner]` table and `backend`).

    Returns:
        `BatchedSettings` for the batched engine, `PPOSettings` for `sb3`.

    Raises:
        ConfigError: An unknown key (with the known ones), a wrong type or a value out of
            range, named `learner.KEY`.

    Examples:
        >>> from metarl.registry import resolve_recipe
        >>> from metarl.rl.settings import rl_settings
        >>> settings = rl_settings(resolve_recipe("navigation2d"))
        >>> type(settings).__name__, settings.net_arch
        ('BatchedSettings', [64, 64])
    """
    return settings_class(recipe).from_recipe(recipe)


__all__ = [
    "PPOUpdateSettings",
    "SETTINGS",
    "BatchedSettings",
    "PPOSettings",
    "rl_settings",
    "backend_of",
    "settings_class",
]
