"""RL² (`train.algorithm = "rl2"`): a GRU policy that adapts by its hidden state, on the
batched engine.

Each meta-iteration samples the meta-batch's tasks as every learner does, runs `n_envs`
trials of `trial_episodes` episodes on each (all tasks x trials stepped together in one task
vector env, `metarl.envs.vector`), and updates the policy by PPO on those whole trials
(`metarl.rl.recurrent`). There is no inner gradient step: adapting to a task *is* a trial,
and "after t steps of adaptation" reads "in episode t + 1 of the trial, after t episodes of
experience" (the evaluation's steps axis counts episodes).

How it meets the trainer's contract (`metarl.protocol`): `adapt` runs PPO from phi on this
rank's trials and gives the updated weights W; the algorithm's delta (`meta_gradient`) is
phi - W per task slot, and the trainer's outer step is plain SGD with step 1, which sets phi
to W (the recipe must say `outer_optimizer = "sgd"`, `meta_step = meta_step_final = 1.0`;
anything else is refused). PPO's Adam is this learner's training state (`state_dict`, in the
checkpoint), so a resumed run continues exactly. Under torchrun each rank runs the trials
of its share of the meta-batch and PPO's minibatches are the same sets of the whole batch's
trials on every rank, their gradients summed over ranks (`join_ranks`, `TrialShare`): every
rank takes the same Adam steps, so W, and the run, do not depend on how many ranks split it
(up to float summation order).

`train.inner_lr` is PPO's learning rate; `train.inner_steps` is not read (a trial's length
is `[learner] trial_episodes`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypedDict

import numpy as np
import torch

from metarl.config import Recipe
from metarl.curves import Curve
from metarl.envs.vector import TaskVectorEnv, make_task_vector_env, set_vector_tasks
from metarl.errors import ConfigError
from metarl.learners.batched_rl import one_torch_thread
from metarl.learners.rl_core import (
    SeededAdapt,
    SlotPlace,
    Timers,
    eval_chunk,
    held_out_tasks,
    refuse_supervised_keys,
)
from metarl.protocol import (
    AcrossRanks,
    Adaptation,
    FixesEvalEpisodes,
    MetaDelta,
    Params,
    Progress,
    ScoresPolicies,
    Split,
)
from metarl.rl.recurrent import (
    RecurrentActorCritic,
    RecurrentPPO,
    Trials,
    TrialShare,
    collect_trials,
    one_rank,
)
from metarl.rl.rl2_settings import RL2Settings
from metarl.rl.rollout import RolloutNoise


class RL2Context(TypedDict):
    """What `adapt` keeps for `meta_gradient`: this rank's tasks and seeds, and phi."""

    tasks: list[Any]
    seeds: list[int]
    phi: Params


def build_policy(
    dist: Any, settings: RL2Settings, seed: int, device: torch.device
) -> RecurrentActorCritic:
    """The GRU actor-critic for the spaces of the distribution's envs, initialized from
    `seed` alone (torch's global generator is left as it was).

    Args:
        dist: the RL distribution (one env is made to read its spaces, then closed).
        settings: the recipe's RL² `[learner]` settings (the network's shape).
        seed: the policy's seed.
        device: where the policy lives.

    Returns:
        The recurrent policy holding phi.
    """
    probe = dist.make_env(dist.sample(1, np.random.default_rng(0), Split.TRAIN)[0])
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = RecurrentActorCritic(
                probe.observation_space,
                probe.action_space,
                settings.hidden_size,
                settings.log_std_init,
            )
    except ValueError as e:
        raise ConfigError(f"the RL² learner: {e}") from None
    finally:
        probe.close()
    return model.to(device)


class RL2MetaLearner(SeededAdapt[RL2Context]):
    """RL² on the batched engine (see the module docstring).

    Not an `RLMetaLearnerBase`: it has no inner gradient step to run, but it shares that
    class's `adapt` (`SeededAdapt`), seeds, held-out tasks and metrics
    (`metarl.learners.rl_core`), so its curves sit on the same env-steps axis as MAML's.

    Args:
        recipe: an RL recipe whose row of `metarl.combinations.SUPPORTED` names this
            class; its `[learner]` table is typed by the engine's settings.
        dist: the recipe's task distribution.
        device: where the policy (a GRU actor-critic) lives.

    Examples:
        The `navigation2d-rl2` recipe shrunk to a GRU of 8 units and two trials per task:
        `adapt` runs PPO on the trials of phi, `meta_gradient` gives the delta whose outer
        step of 1 lands on PPO's weights, and the held-out curve is per episode of a trial
        (step t: after t episodes of experience), on the env-steps axis:

        >>> import numpy as np, torch
        >>> from metarl.config import with_overrides
        >>> from metarl.learners import build_meta_learner
        >>> from metarl.registry import resolve_recipe
        >>> recipe = with_overrides(
        ...     resolve_recipe("navigation2d-rl2"),
        ...     "learner",
        ...     n_envs=2,
        ...     hidden_size=8,
        ...     n_epochs=1,
        ...     minibatches=1,
        ... )
        >>> learner = build_meta_learner(recipe, torch.device("cpu"))
        >>> type(learner).__name__
        'RL2MetaLearner'
        >>> phi = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
        >>> tasks = learner.dist.sample(2, np.random.default_rng(0))
        >>> adaptation = learner.adapt(phi, tasks, np.random.default_rng(0))
        >>> adaptation.metrics["env_steps"]  # 2 tasks x 2 trials x 2 episodes of 100 steps
        800.0
        >>> delta = learner.meta_gradient(adaptation).gradient
        >>> all(torch.allclose(phi[n] - delta[n] / 2, adaptation.params[n][0]) for n in phi)
        True
        >>> curves = learner.curves([0, 1], n_tasks=2)
        >>> list(curves), curves["return"].env_steps
        (['return'], [0.0, 100.0])
    """

    name: ClassVar[str] = "the RL² learner"
    model: RecurrentActorCritic
    metrics_across_ranks: ClassVar[Mapping[str, AcrossRanks]] = {
        **SeededAdapt.metrics_across_ranks,
        **{k: AcrossRanks.SAME for k in ("ppo_loss", "policy_loss", "value_loss", "entropy")},
    }
    """PPO's losses are the whole batch's already (summed over ranks at every minibatch
    step, `RecurrentPPO.update`); the trials' returns and successes are means over tasks."""

    @classmethod
    def from_recipe(cls, recipe: Recipe, dist: Any, device: torch.device) -> RL2MetaLearner:
        """The learner of `recipe`: `[model]` and the supervised keys are refused, and the
        outer step must be taken whole, since PPO's update already is RL²'s meta-update.

        Args:
            recipe: a recipe with `train.algorithm = "rl2"`.
            dist: its task distribution.
            device: where the policy lives.

        Returns:
            The learner, its GRU policy initialized from `train.seed`.

        Raises:
            ConfigError: a supervised key or `[model]` table, or `meta_step` /
                `meta_step_final` other than 1.0.
        """
        refuse_supervised_keys(recipe, cls.name)
        t = recipe.train
        if (t.meta_step, t.meta_step_final) != (1.0, 1.0):  # the outer step: SUPPORTED's
            raise ConfigError(
                f"train.meta_step = {t.meta_step}, meta_step_final = {t.meta_step_final}: "
                "RL²'s step is PPO's (learning rate train.inner_lr), applied whole: use "
                "meta_step = 1.0, meta_step_final = 1.0"
            )
        return cls(recipe, dist, device)

    def __init__(self, recipe: Recipe, dist: Any, device: torch.device) -> None:
        self.recipe, self.dist, self.device = recipe, dist, device
        self.settings = s = RL2Settings.from_recipe(recipe)
        self.model = build_policy(dist, s, recipe.train.seed, device)
        # PPO steps a working copy, loaded with phi each iteration, so the trainer's model
        # changes only through the trainer's outer step; its Adam state persists.
        self.work = build_policy(dist, s, recipe.train.seed, device)
        self.ppo = RecurrentPPO(self.work, s, lr=recipe.train.inner_lr)
        self.timers = Timers()
        self._envs: dict[tuple[int, int], TaskVectorEnv] = {}
        self._reduce: Callable[[Params], Params] = one_rank

    def join_ranks(self, reduce: Callable[[Params], Params]) -> None:
        """PPO's sums over ranks (`metarl.protocol.UpdatesAcrossRanks`): the trainer's
        `World.all_reduce_sum`.

        Args:
            reduce: sums a dict of tensors over ranks.
        """
        self._reduce = reduce

    def _env(self, tasks: Sequence[Any], n_envs: int | None = None) -> TaskVectorEnv:
        """A vector env of `len(tasks)` task slots x `n_envs` trials (default: the
        settings'), kept per shape."""
        n_envs = self.settings.n_envs if n_envs is None else n_envs
        key = (len(tasks), n_envs)
        env = self._envs.get(key)
        if env is None:
            env = make_task_vector_env(self.dist, tasks, n_envs)
            self._envs[key] = env
        else:
            set_vector_tasks(env, tasks)
        return env

    def trials(
        self,
        model: RecurrentActorCritic,
        tasks: Sequence[Any],
        seeds: Sequence[int],
        episodes: int,
        index: int = 0,
    ) -> Trials:
        """`n_envs` trials of `episodes` episodes of `model` on each task; the noise of rollout
        `index` of each task's seed (`RolloutNoise`).

        Args:
            model: the GRU policy that acts (its hidden state carried across a trial).
            tasks: the tasks, one slot each.
            seeds: one seed per task.
            episodes: episodes per trial.
            index: the rollout index whose noise each task's seed gives.

        Returns:
            The trials (`Trials`): what the GRU read, its actions, log-probabilities,
            values and rewards, and each episode's return, success and length.
        """
        env = self._env(tasks)
        trials = collect_trials(
            model, env, RolloutNoise(list(seeds), index), episodes, timers=self.timers.rollout
        )
        self.timers.env_steps += trials.env_steps
        return trials

    # -- the MetaLearner interface ---------------------------------------------------------
    def seeded_rollouts(self) -> int:
        return 1

    def adapt_slots(
        self, phi: Params, tasks: list[Any], seeds: list[int], place: SlotPlace
    ) -> Adaptation[RL2Context]:
        """Trials of phi on this rank's tasks, then PPO on the whole meta-batch's trials (this
        rank's share of each minibatch, the gradients summed over ranks, the minibatch order
        drawn from every slot's seed in `place`): W in `params` (one slot), the context
        `meta_gradient` reads, and the log's metrics: PPO's, this rank's trials'
        (`trial_metrics`) and their env steps."""
        n_envs = self.settings.n_envs
        share = TrialShare(place.first * n_envs, len(place.seeds) * n_envs, self._reduce)
        with one_torch_thread():
            with torch.no_grad():
                for name, p in self.work.named_parameters():
                    p.copy_(phi[name])
            trials = self.trials(self.work, tasks, seeds, self.settings.trial_episodes)
            tick = time.perf_counter()
            metrics = self.ppo.update(trials, np.random.default_rng([*place.seeds, 1]), share)
            self.timers.update += time.perf_counter() - tick
        metrics.update(trial_metrics(trials))
        metrics["env_steps"] = float(trials.env_steps)
        params = {n: p.detach().clone().unsqueeze(0) for n, p in self.work.named_parameters()}
        context: RL2Context = {"tasks": tasks, "seeds": seeds, "phi": phi}
        return Adaptation(params, context, metrics)

    def meta_gradient(self, adaptation: Adaptation[RL2Context]) -> MetaDelta[None]:
        """The delta whose SGD step of 1 takes phi to W: (phi - W) per task slot of this rank
        (the trainer divides the ranks' sum by the meta-batch).

        Args:
            adaptation: what `adapt` returned.

        Returns:
            The delta keyed like phi (no metrics, no objective).
        """
        phi = adaptation.context["phi"]
        count = len(adaptation.context["tasks"])
        return MetaDelta({n: (phi[n] - w[0]) * count for n, w in adaptation.params.items()})

    def query_gradient(self, adaptation: Adaptation[RL2Context]) -> tuple[Params, dict[str, float]]:
        """Not offered: RL²'s meta-update is PPO's (`meta_gradient`).

        Args:
            adaptation: what `adapt` returned.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError("RL² takes no query gradient (train.algorithm = rl2)")

    def curves(
        self, steps: list[int], n_tasks: int, progress: Progress | None = None
    ) -> dict[str, Curve]:
        """Per episode of a trial on the recipe's held-out tasks (`eval.seed`, `eval.split`):
        step t is episode t + 1, after t episodes of experience on the task (0: before any).
        Trials run max(steps) + 1 episodes (longer than training's is allowed).

        The return is that of `n_envs` trials per task, the policy sampling as in training.
        Where the distribution scores policies itself (Meta-World, `ScoresPolicies`), its
        protocol leads: `eval_episodes` trials per task (Meta-World's 3 per goal) acting
        deterministically (the Gaussian's mean, clipped to the action space), the hidden
        state carried across the trial's episodes; `success` is the fraction of a task's
        trials whose episode t + 1 has `info["success"]` at any step (Meta-World's
        criterion), `return` their mean return; the sampled trials' return and success
        become `rollout_return` (as the gradient learners name theirs) and `rollout_success`.
        Every curve carries the env steps spent before each episode (`Curve.env_steps`,
        measured on its trials): the axis on which it meets a gradient learner's curve.

        Args:
            steps: episodes of experience before the measured one (0: the first episode).
            n_tasks: held-out tasks (fixed by eval.seed and eval.split).
            progress: called with (tasks done, n_tasks).

        Returns:
            Metric name -> curve, the benchmark's own metric (`success`) first where there
            is one, else `return`.
        """
        wanted = sorted(set(steps))
        episodes = max(wanted) + 1
        tasks, seeds = held_out_tasks(self.recipe.eval, self.dist, n_tasks)
        scored = isinstance(self.dist, ScoresPolicies)
        runs = [(self.settings.n_envs, False)]
        if scored:  # the benchmark's protocol first
            protocol = self.settings.n_envs
            if isinstance(self.dist, FixesEvalEpisodes):
                protocol = int(self.dist.eval_episodes)
            runs.insert(0, (protocol, True))
        work = len(runs) * n_tasks
        curves: dict[str, Curve] = {}
        kept = set(self._envs)
        try:
            with one_torch_thread():
                for i, (n_envs, deterministic) in enumerate(runs):

                    def tick(done: int, i: int = i) -> None:
                        if progress is not None:
                            progress((i * n_tasks + done) * n_tasks / work, n_tasks)

                    per_episode = self._trial_table(
                        tasks, seeds, n_envs, episodes, deterministic, tick
                    )
                    lengths = per_episode.pop("length").mean(1)  # env steps per episode
                    before = np.concatenate([[0.0], np.cumsum(lengths)])
                    env_steps = [float(before[t]) for t in wanted]
                    for name, table in per_episode.items():
                        if scored and not deterministic:
                            name = f"rollout_{name}"
                        curves[name] = dataclasses.replace(
                            Curve.from_values(name, wanted, table[wanted]), env_steps=env_steps
                        )
        finally:
            for key in set(self._envs) - kept:
                self._envs.pop(key).close()
        if "success" in curves:  # the benchmark's own metric leads
            curves = {"success": curves.pop("success"), **curves}
        return curves

    def _trial_table(
        self,
        tasks: list[Any],
        seeds: list[int],
        n_envs: int,
        episodes: int,
        deterministic: bool,
        tick: Callable[[int], None],
    ) -> dict[str, np.ndarray]:
        """`n_envs` trials of `episodes` episodes per task, `eval_chunk` tasks at a time:
        `[episodes, tasks]` tables of the mean return over a task's trials, the fraction
        that succeed (where the env reports success) and the mean episode length."""
        chunk = eval_chunk(self.dist, n_envs)
        tables: dict[str, np.ndarray] = {}
        for start in range(0, len(tasks), chunk):
            part = slice(start, start + chunk)
            size = len(tasks[part])
            env = self._env(tasks[part], n_envs)
            trials = collect_trials(
                self.model,
                env,
                RolloutNoise(seeds[part], 0),
                episodes,
                deterministic=deterministic,
                timers=self.timers.rollout,
            )
            self.timers.env_steps += trials.env_steps
            parts = {"return": trials.episode_returns, "length": trials.episode_lengths}
            if trials.episode_successes is not None:
                parts["success"] = trials.episode_successes
            for name, values in parts.items():
                table = tables.setdefault(name, np.zeros((episodes, len(tasks))))
                table[:, part] = values.reshape(size, n_envs, episodes).mean(1).T
            tick(min(start + chunk, len(tasks)))
        return tables

    def curve(self, steps: list[int], n_tasks: int) -> Curve:
        """The headline metric of `curves` (Meta-World's success, else the return).

        Args:
            steps: episodes of experience before the measured one.
            n_tasks: held-out tasks.

        Returns:
            The headline curve.
        """
        return next(iter(self.curves(steps, n_tasks).values()))

    def state_dict(self) -> dict[str, Any]:
        """PPO's Adam state (moments and step count): the run's optimizer."""
        return {"ppo_adam": self.ppo.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore PPO's Adam state from a checkpoint (`state_dict`'s).

        Args:
            state: what `state_dict` returned.

        Raises:
            KeyError: no `ppo_adam` (a resume would otherwise restart PPO's Adam).
        """
        if "ppo_adam" not in state:
            raise KeyError("ppo_adam: the checkpoint holds no PPO optimizer state")
        self.ppo.optimizer.load_state_dict(state["ppo_adam"])

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def trial_metrics(trials: Trials) -> dict[str, float]:
    """The training log's view of an iteration's trials: the mean return of episode 1
    (`return_before`: no experience of the task yet), of the last episode (`return_after`)
    and of each episode (`return_episode_<i>`); the same for success where the env reports it.

    Args:
        trials: an iteration's trials (`RL2MetaLearner.trials`).

    Returns:
        The metrics by name, as the training log writes them.
    """
    returns = trials.episode_returns.mean(0)
    out = {"return_before": float(returns[0]), "return_after": float(returns[-1])}
    out.update({f"return_episode_{i + 1}": float(r) for i, r in enumerate(returns)})
    if trials.episode_successes is not None:
        won = trials.episode_successes.mean(0)
        out["success_before"], out["success_after"] = float(won[0]), float(won[-1])
    return out


__all__ = ["RL2Context", "RL2MetaLearner", "build_policy", "trial_metrics"]
