"""Baselines that make a meta-RL result honest: what the same budget gives without meta-learning.

- **random**: the policy at its seed initialization, no training at all (`metarl eval RUN
  --init random`: the recipe's model built from `train.seed`).
- **joint with the meta run's outer step** (`joint_outer_recipe`, MAML-RL recipes): TRPO
  (or ProMP's clipped Adam steps, PPO's objective without an inner step) on the task mixture
  with no adaptation, same meta-batch and env steps.
- **joint** (multi-task): PPO on the mixture of training tasks with as many environment steps
  as the meta-training run. It is expressed as a recipe for the same `MetaTrainer`:
  Reptile with `meta_batch = 1`, `inner_steps = 1` and a meta-step of 1 throughout sets
  phi <- W after every single PPO update, so phi is trained by consecutive PPO updates, each
  on a freshly drawn task: sequential PPO across the task mixture. Checkpoints, resume and
  `metarl eval` work unchanged. It differs from one long `PPO.learn()` on a task-switching env
  in one respect: PPO's Adam state starts fresh at every update (the same inner optimizer the
  adaptation uses), which we state rather than hide.
"""

from __future__ import annotations

from metarl.config import Algorithm, OuterOptimizerName, Recipe, with_overrides
from metarl.rl.settings import rl_settings


def _steps_per_update(recipe: Recipe) -> int:
    """Environment steps of one PPO update: a rollout of n_steps in each of n_envs envs."""
    s = rl_settings(recipe)
    return s.n_steps * s.n_envs


def meta_env_steps(recipe: Recipe) -> int:
    """Environment steps a meta-training run of `recipe` takes (adaptation rollouts, plus
    FOMAML's, MAML's and Meta-SGD's one post-update rollout per task)."""
    t = recipe.train
    query = (Algorithm.FOMAML, Algorithm.MAML, Algorithm.METASGD)
    rollouts = t.inner_steps + (1 if t.algorithm in query else 0)
    return t.meta_iterations * t.meta_batch * rollouts * _steps_per_update(recipe)


def joint_recipe(recipe: Recipe, env_steps: int | None = None) -> Recipe:
    """The joint-training baseline of `recipe` with `env_steps` environment steps (default:
    as many as meta-training `recipe` takes), the same PPO settings and seed.

    Args:
        recipe: the meta-training recipe.
        env_steps: the baseline's env steps (None: as many as meta-training `recipe`).

    Returns:
        The baseline's recipe: Reptile with meta-batch 1, one inner update and meta-step 1.
    """
    per_update = _steps_per_update(recipe)
    steps = meta_env_steps(recipe) if env_steps is None else env_steps
    updates = max(1, round(steps / per_update))
    return with_overrides(
        recipe,
        "train",
        algorithm=Algorithm.REPTILE,
        meta_iterations=updates,
        meta_batch=1,
        inner_steps=1,
        meta_step=1.0,
        meta_step_final=1.0,
        outer_optimizer="sgd",
        checkpoint_every=max(updates // 4, 1),
    )


def joint_outer_recipe(recipe: Recipe) -> Recipe:
    """The joint baseline of a MAML-RL recipe with its own outer step: the same learner, outer
    step and meta-batch with no adaptation (`inner_steps = 0`: each iteration's episodes come
    from phi, and the step improves phi's return on the task mixture), for as many env steps
    as meta-training `recipe` takes (twice the iterations: one rollout per task instead of
    two). The step is the recipe's "promp" (its clipped objective with nothing to re-adapt:
    PPO's, with ProMP's 5 Adam steps per batch) or otherwise "trpo". A fairer baseline than
    `joint_recipe`'s sequential inner steps, which take neither the outer optimizer nor the
    meta-batch of the meta run.

    Args:
        recipe: a MAML-RL recipe (`algorithm = "maml"`, its own outer step).

    Returns:
        The baseline's recipe (`inner_steps = 0`, twice the iterations).
    """
    t = recipe.train
    iterations = max(1, round(meta_env_steps(recipe) / (t.meta_batch * _steps_per_update(recipe))))
    promp = t.outer_optimizer == OuterOptimizerName.PROMP
    return with_overrides(
        recipe,
        "train",
        algorithm=Algorithm.MAML,
        outer_optimizer="promp" if promp else "trpo",
        inner_steps=0,
        meta_iterations=iterations,
    )


__all__ = ["joint_recipe", "joint_outer_recipe", "meta_env_steps"]
