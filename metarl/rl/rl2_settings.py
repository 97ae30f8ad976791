"""RL²'s settings: the recipe's `[learner]` table when `train.algorithm = "rl2"`, typed and
checked (below the learners, as `metarl.rl.settings`, so recipe tools read them without
building a learner).

The trial is the unit of RL²: `trial_episodes` episodes of one task with the hidden state
carried across them. Every meta-iteration runs `n_envs` trials of each of the meta-batch's
tasks (all stepped together), then PPO on them (`metarl.rl.recurrent`), with learning rate
`train.inner_lr`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from metarl.config import Recipe, build_dataclass
from metarl.errors import ConfigError
from metarl.rl.settings import PPOUpdateSettings


@dataclass
class RL2Settings(PPOUpdateSettings):
    """`[learner]` of `algorithm = "rl2"`: its PPO's update (`PPOUpdateSettings`, SB3's
    names), then the trials' and the recurrent policy's keys."""

    trial_episodes: int = 2
    """Episodes per trial: the hidden state is carried across them and reset only when the
    next trial starts. Evaluation may run longer trials (`eval.steps` up to any count)."""
    hidden_size: int = 64
    """Units of the GRU."""
    n_envs: int = 10
    """Trials per task per meta-iteration (stepped together with the other tasks')."""
    n_epochs: int = 4
    """PPO's passes over an iteration's trials."""
    minibatches: int = 4
    """Minibatches per epoch; each holds whole trials."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this for PPO's values and advantages (not for what the policy
    reads or what is reported): keeps the value loss of long trials with large returns from
    swamping the policy's gradient under `max_grad_norm`."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the Gaussian policy (continuous actions)."""

    owner: ClassVar[str] = "the RL² learner"

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> Self:
        """The recipe's `[learner]` table, typed and checked."""
        settings: Self = build_dataclass(cls, recipe.learner, "learner", owner=cls.owner)
        settings.validate()
        return settings

    def validate(self) -> None:
        for name in ("trial_episodes", "hidden_size", "n_envs", "n_epochs", "minibatches"):
            if getattr(self, name) < 1:
                raise ConfigError(f"learner.{name} = {getattr(self, name)}: must be >= 1")
        super().validate()
        if self.reward_scale <= 0:
            raise ConfigError(f"learner.reward_scale = {self.reward_scale}: must be > 0")


__all__ = ["RL2Settings"]
