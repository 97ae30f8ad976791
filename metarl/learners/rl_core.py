"""What the RL meta-learner's engines share: everything but stepping the envs and the update.

An RL recipe is adapted by the engine its `[learner] backend` names (`metarl.combinations`,
which also picks MAML-RL's second-order learner): the batched engine
(`metarl.learners.batched_rl`, every task of a meta-batch at once) or SB3's
(`metarl.learners.sb3_ppo`, one task after another: the reference). Each engine subclasses
`RLMetaLearnerBase` and writes only its rollout (`run`) and FOMAML's loss
(`query_gradient`); what they share lives here, written once:

- settings: the recipe's `[learner]` table (`metarl.rl.settings`), the refusal of supervised
  keys (`refuse_supervised_keys`), construction from a recipe (`from_recipe`);
- randomness: one seed per meta-batch slot (`slot_seeds`), the held-out tasks and their seeds
  (`held_out_tasks`), and which rollouts a run collects and measures (`RolloutSchedule`);
- phi at the start (`initial_policy`), the names of the metrics the trainer logs
  (`adaptation_metrics`, `query_metrics`), the timers the benchmark reads (`Timers`), and
  the benchmark's own score of a policy (`policy_scorer`: Meta-World's success rate);
- adaptation (`adapt`) and evaluation (`curves`, the benchmark's own scoring included), with
  the family's own episode metrics (`metarl.protocol.ReportsEpisodes`).

A new engine is one module with a `RLMetaLearnerBase` subclass and one row in
`metarl.combinations.SUPPORTED`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, SupportsFloat

import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy

from metarl.config import EvalConfig, Recipe
from metarl.curves import Curve
from metarl.errors import ConfigError
from metarl.protocol import (
    AcrossRanks,
    Adaptation,
    BoundsEvalEnvs,
    C,
    MetaDelta,
    MetaLearnerBase,
    Params,
    Progress,
    ScoresPolicies,
    ScoresPoliciesTogether,
    Split,
    task_rng,
)
from metarl.rl.policy import build_sb3_policy
from metarl.rl.rollout import RolloutTimers, logged
from metarl.rl.settings import PPOSettings

Scorer = Callable[[Any, Callable[[np.ndarray], np.ndarray]], dict[str, float]]
"""A distribution's `evaluate_policy(task, act)`: metrics of a deterministic policy `act`."""


def refuse_supervised_keys(recipe: Recipe, learner: str) -> None:
    """`[model]` and the supervised learner's `[train]`/`[eval]` keys have no meaning for an
    RL learner: the first one given is a `ConfigError` naming it and why. (Which algorithms
    an RL learner runs is `metarl.combinations.SUPPORTED`'s to say.)

    Args:
        recipe: the recipe to check.
        learner: how the message names the learner ("the batched RL learner").

    Raises:
        ConfigError: a `[model]` table, or a supervised-only key.
    """
    if recipe.model:
        raise ConfigError(
            "[model] is not used by RL recipes; put net_arch, "
            "activation and log_std_init in [learner]"
        )
    recipe.refuse_supervised(learner)


def initial_policy(
    dist: Any, settings: PPOSettings, seed: int, device: torch.device
) -> ActorCriticPolicy:
    """phi at the start: SB3's `MlpPolicy` for the spaces of the distribution's envs, shaped
    by the `[learner]` settings and initialized from `seed` (train.seed) alone.

    Args:
        dist: the RL distribution (one env is made to read its spaces, then closed).
        settings: the `[learner]` table's network shape and initialization.
        seed: the policy's seed.
        device: where the policy lives.

    Returns:
        The policy holding phi.
    """
    probe = dist.make_env(dist.sample(1, np.random.default_rng(0), Split.TRAIN)[0])
    policy = build_sb3_policy(
        probe.observation_space,
        probe.action_space,
        net_arch=settings.net_arch,
        activation=settings.activation,
        ortho_init=settings.ortho_init,
        log_std_init=settings.log_std_init,
        seed=seed,
    ).to(device)
    probe.close()
    return policy


def slot_seeds(rng: np.random.Generator, n_tasks: int, rollouts: int, slots: slice) -> list[int]:
    """One seed per meta-batch slot, drawn for all `n_tasks` slots and then cut to `slots`,
    so a slot's rollouts do not depend on how the meta-batch is split across ranks. Rollout
    r of a task uses seed + r, so the seeds leave room for `rollouts` of them below 2**31.

    Args:
        rng: the iteration's generator.
        n_tasks: the whole meta-batch's size.
        rollouts: rollouts per task (the seeds stay below 2**31 - rollouts).
        slots: this rank's slots.

    Returns:
        The seeds of `slots`.

    Examples:
        A rank holding slots 2 and 3 gets the seeds those slots get in the whole batch:

        >>> import numpy as np
        >>> from metarl.learners.rl_core import slot_seeds
        >>> whole = slot_seeds(np.random.default_rng(0), 4, 2, slice(None))
        >>> whole[2:] == slot_seeds(np.random.default_rng(0), 4, 2, slice(2, 4))
        True
    """
    return [int(s) for s in rng.integers(2**31 - 1 - rollouts, size=n_tasks)][slots]


@dataclass(frozen=True)
class SlotPlace:
    """Where this rank's slots sit in the meta-batch: the index of its first slot and every
    slot's seed, for what must not depend on how the batch is split (RL²'s PPO minibatches)."""

    first: int
    seeds: list[int]


class SeededAdapt(MetaLearnerBase[C, Any]):
    """`adapt` of an RL learner, written once: every task's seed drawn from the iteration's
    generator, then this rank's slots kept (`slot_seeds`), so a task's rollouts do not depend
    on how the meta-batch is split across ranks. A learner says how many rollouts a seed
    covers (`seeded_rollouts`) and adapts its slots' tasks from their seeds (`adapt_slots`)."""

    metrics_across_ranks: ClassVar[Mapping[str, AcrossRanks]] = {
        "env_steps": AcrossRanks.SUM,
        "query_env_steps": AcrossRanks.SUM,
    }
    """The env steps (`adaptation_metrics`, `query_metrics`) are this rank's tasks' count:
    summed over ranks; the returns and the family's metrics are means over the tasks."""

    def adapt(
        self,
        phi: Params,
        tasks: Sequence[Any],
        rng: np.random.Generator,
        slots: slice = slice(None),
    ) -> Adaptation[C]:
        """Adapt phi to this rank's tasks (`adapt_slots`).

        Args:
            phi: the meta-parameters.
            tasks: the whole meta-batch.
            rng: the iteration's generator: every task's seed is drawn from it, then this
                rank keeps its slots'.
            slots: this rank's tasks.

        Returns:
            What `adapt_slots` returns.
        """
        everyone = slot_seeds(rng, len(tasks), self.seeded_rollouts(), slice(None))
        place = SlotPlace(range(len(tasks))[slots].start, everyone)
        return self.adapt_slots(phi, list(tasks)[slots], everyone[slots], place)

    def seeded_rollouts(self) -> int:
        """Rollouts per task in one adaptation (seed + r is rollout r's)."""
        raise NotImplementedError

    def adapt_slots(
        self, phi: Params, tasks: list[Any], seeds: list[int], place: SlotPlace
    ) -> Adaptation[C]:
        """Adapt phi to this rank's `tasks`, task i's rollouts drawn from `seeds[i]`; `place`
        says where they sit in the meta-batch."""
        raise NotImplementedError


def held_out_tasks(evaluation: EvalConfig, dist: Any, n_tasks: int) -> tuple[list[Any], list[int]]:
    """The recipe's fixed evaluation tasks and one seed each (functions of eval.seed and
    eval.split alone, so every engine and every init is evaluated on the same ones).

    Args:
        evaluation: the recipe's `[eval]` table (its seed and split).
        dist: the task distribution.
        n_tasks: how many tasks.

    Returns:
        The tasks and one rollout seed per task.
    """
    split = Split(evaluation.split)
    rng = task_rng(evaluation.seed, split)
    tasks = list(dist.sample(n_tasks, rng, split))
    seeds = [int(s) for s in rng.integers(2**31 - 1000, size=n_tasks)]
    return tasks, seeds


@dataclass(frozen=True)
class RolloutSchedule:
    """The rollouts of adapting a task with `updates` inner updates: rollout t is collected
    after t updates; those in `measure` are measured; with `extra`, one more rollout after
    the last update is collected and kept (FOMAML's query rollout).

    Args:
        updates: inner updates of the task.
        measure: the update counts after which the rollout's return is recorded.
        extra: collect one more rollout after the last update (FOMAML's query rollout).

    Examples:
        Two updates, measured before the first and after the last: three rollouts.

        >>> from metarl.learners.rl_core import RolloutSchedule
        >>> schedule = RolloutSchedule(updates=2, measure=(0, 2))
        >>> schedule.rollouts, [t for t in range(3) if schedule.measured(t)]
        (3, [0, 2])
        >>> RolloutSchedule(updates=2, measure=(0,)).rollouts  # no rollout after the last
        2
    """

    updates: int
    measure: Sequence[int]
    extra: bool = False

    @property
    def rollouts(self) -> int:
        """Rollouts to collect: one per update, plus one after the last when it is needed."""
        needed = self.extra or self.updates in self.measure
        return self.updates + 1 if needed else self.updates

    def measured(self, t: int) -> bool:
        """Whether rollout `t` (collected after t updates) is measured.

        Args:
            t: the rollout's index.

        Returns:
            True for the indices in `measure`, and for the extra rollout.
        """
        return t in self.measure or (self.extra and t == self.updates)


def adaptation_metrics(return_before: SupportsFloat, env_steps: int) -> dict[str, float]:
    """What `adapt` reports to the trainer's log: the mean return of the first rollouts (of
    phi) and the env steps taken.

    Args:
        return_before: the mean return of phi's rollouts.
        env_steps: the env steps the adaptation took.

    Returns:
        `return_before` and `env_steps`, as floats (the log's names).
    """
    return {"return_before": float(return_before), "env_steps": float(env_steps)}


def query_metrics(
    query_loss: SupportsFloat, return_after: SupportsFloat, env_steps: int
) -> dict[str, float]:
    """What `query_gradient` (FOMAML) reports: the loss whose gradient it took, the mean
    return of the query rollouts (of the adapted policies), and their env steps.

    Args:
        query_loss: the loss whose gradient was taken.
        return_after: the mean return of the adapted policies' rollouts.
        env_steps: the env steps of those rollouts.

    Returns:
        `query_loss`, `return_after` and `query_env_steps`, as floats (the log's names).
    """
    return {
        "query_loss": float(query_loss),
        "return_after": float(return_after),
        "query_env_steps": float(env_steps),
    }


def with_env_steps(curves: dict[str, Curve], per_update: int) -> dict[str, Curve]:
    """`curves` with `Curve.env_steps` set: `per_update` env steps of rollouts per task for
    each inner update (a curve's step t follows t updates, so t x `per_update` env steps).

    Args:
        curves: metric name -> curve, over inner updates.
        per_update: env steps of one task's rollout (what an inner update costs it).

    Returns:
        The same curves, each with its `env_steps` axis.

    Examples:
        >>> import numpy as np
        >>> from metarl.curves import Curve
        >>> from metarl.learners.rl_core import with_env_steps
        >>> curve = Curve.from_values("return", [0, 1, 3], np.zeros((3, 4)))
        >>> with_env_steps({"return": curve}, per_update=200)["return"].env_steps
        [0.0, 200.0, 600.0]
    """
    return {
        k: dataclasses.replace(c, env_steps=[float(t * per_update) for t in c.steps])
        for k, c in curves.items()
    }


def policy_scorer(dist: Any) -> Scorer | None:
    """The distribution's own score of a policy (`evaluate_policy(task, act)`, optional in
    the RL protocol: Meta-World's success rate and return), or None: evaluation then reports
    the return of the rollouts.

    Args:
        dist: an RL distribution.

    Returns:
        Its `evaluate_policy`, or None where it has none.
    """
    return dist.evaluate_policy if isinstance(dist, ScoresPolicies) else None


@dataclass
class Timers:
    """Seconds per part of the inner loop, and env steps (`scripts/benchmarks/bench_rl.py`)."""

    rollout: RolloutTimers = field(default_factory=RolloutTimers)
    """Stepping the envs and running the policy, apart (the batched engine)."""
    collect: float = 0.0
    """Both in one call (SB3's `collect_rollouts`)."""
    update: float = 0.0
    swap: float = 0.0
    """Loading phi, a fresh optimizer, setting the task, seeding and resetting the envs."""
    env_steps: int = 0

    def reset(self) -> None:
        self.rollout = RolloutTimers()
        self.collect = self.update = self.swap = 0.0
        self.env_steps = 0


EVAL_CHUNK = 64
"""Held-out tasks adapted together in `curves` (bounds the rollout arrays' memory)."""


def eval_chunk(dist: Any, n_envs: int) -> int:
    """Held-out tasks adapted together: `EVAL_CHUNK`, fewer where the distribution's envs are
    heavy (its `max_eval_subenvs`, e.g. Meta-World's), at least one.

    Args:
        dist: an RL distribution.
        n_envs: envs per task.

    Returns:
        How many tasks `curves` adapts together.
    """
    if not isinstance(dist, BoundsEvalEnvs):
        return EVAL_CHUNK
    return max(1, min(EVAL_CHUNK, dist.max_eval_subenvs // n_envs))


@dataclass
class TasksRun:
    """What an engine's `run` produced for a batch of tasks: the one result type every
    engine returns, so `adapt` and `curves` are written once above the engines."""

    params: Params
    """The adapted parameters, stacked `[tasks, ...]`."""
    returns: dict[int, np.ndarray]
    """Updates done before a measured rollout -> its per-task mean return `[tasks]`."""
    rollout_steps: int
    """Env steps of one rollout of every task (what an update costs in env steps)."""
    episodes: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    """Like `returns`: the distribution's own metrics of the measured rollouts' first
    episodes (`metarl.protocol.ReportsEpisodes`), each `[tasks, envs]`."""


RolloutTick = Callable[[int], None]
"""Called by an engine after each rollout with the number of tasks it rolled out."""


@dataclass(frozen=True)
class RunRequest:
    """What `rollouts` is asked: adapt `phi` to every task with `updates` inner updates of
    step size `lr`, rollout t (after t updates) of task i drawing its randomness from
    (seeds[i], t) alone; measure the rollouts in `measure`; `on_rollout` hears each one.

    Seeding each rollout by (task seed, update) rather than by a shared stream is what makes
    a task's numbers independent of which other tasks share its batch, its rank or its
    evaluation chunk. Callers build it through `RLMetaLearnerBase.run`.

    Args:
        phi: the policy's parameters to adapt from, keyed like `model.named_parameters()`.
        tasks: the tasks, one per slot.
        seeds: one seed per task.
        updates: inner updates per task.
        lr: the inner step size.
        measure: the update counts after which the rollout's return is recorded.
        on_rollout: called with the number of tasks after each rollout (progress bars).
    """

    phi: Params
    tasks: list[Any]
    seeds: list[int]
    updates: int
    lr: float
    measure: tuple[int, ...] = (0,)
    on_rollout: RolloutTick | None = None

    @property
    def schedule(self) -> RolloutSchedule:
        """Which rollouts to collect and which of them to measure."""
        return RolloutSchedule(self.updates, self.measure)

    def rolled_out(self, n_tasks: int) -> None:
        """Tell `on_rollout` that a rollout of `n_tasks` tasks is done (engines call it after
        each rollout, so progress is reported the same way whichever engine runs).

        Args:
            n_tasks: the tasks the rollout covered.
        """
        if self.on_rollout is not None:
            self.on_rollout(n_tasks)


class RLMetaLearnerBase(SeededAdapt[Any]):
    """The part of an RL meta-learner that is not its engine. A subclass sets `name` (how
    messages call it), builds `model` (an SB3 `ActorCriticPolicy` holding phi) in
    `__init__(recipe, dist, device)` and implements its rollouts (adapt a batch of tasks and
    measure its rollouts: `rollouts`), `query_gradient` (FOMAML's loss is the engine's) and, for
    distributions that score policies themselves, `deterministic_act`. `adapt`, `curves`,
    the seeds, the held-out tasks and the metrics are written here, once.

    Writing them once is why the engines agree: the same seeds, held-out tasks and metrics
    whichever engine rolls out, so a run of the batched engine and one of SB3's are
    compared on the same tasks.

    Examples:
        A tiny Navigation2D learner (two 20-step episodes per update) adapts two tasks by
        one update and measures the rollouts before and after it, then the held-out curve:

        >>> import numpy as np, torch
        >>> from metarl.config import with_overrides
        >>> from metarl.learners import build_meta_learner
        >>> from metarl.registry import resolve_recipe
        >>> recipe = with_overrides(
        ...     resolve_recipe("navigation2d"), "learner", n_steps=20, batch_size=20, n_epochs=1
        ... )
        >>> learner = build_meta_learner(recipe, torch.device("cpu"))
        >>> type(learner).__name__
        'BatchedRLMetaLearner'
        >>> tasks = learner.dist.sample(2, np.random.default_rng(0))
        >>> run = learner.run(learner.phi(), tasks, seeds=[0, 1], updates=1, measure=(0, 1))
        >>> sorted(run.returns), run.returns[1].shape
        ([0, 1], (2,))
        >>> curves = learner.curves([0, 1], n_tasks=2)
        >>> list(curves), curves["return"].steps
        (['return'], [0, 1])
    """

    name: ClassVar[str] = "the RL learner"
    recipe: Recipe
    timers: Timers

    @classmethod
    def from_recipe(cls, recipe: Recipe, dist: Any, device: torch.device) -> RLMetaLearnerBase:
        """The learner of `recipe`: `[model]` and the supervised learner's keys are refused,
        naming the first one given; `[learner]` is typed by the engine's settings.

        Args:
            recipe: an RL recipe.
            dist: its task distribution.
            device: where the policy lives.

        Returns:
            The engine's learner, its policy initialized from `train.seed`.

        Raises:
            ConfigError: a `[model]` table or a supervised-only `[train]` key, or a
                `[learner]` key the engine does not read.
        """
        refuse_supervised_keys(recipe, cls.name)
        return cls(recipe, dist, device)  # type: ignore[call-arg]

    # -- what an engine writes ----------------------------------------------------------------
    def rollouts(self, request: RunRequest) -> TasksRun:
        """Adapt `request.phi` to every task of the request and measure the rollouts it asks
        for (see `RunRequest`): the engine's one job.

        Args:
            request: the policy, tasks, seeds, updates, step size and measured rollouts.

        Returns:
            The adapted parameters (stacked), the measured returns and the env steps of
            one rollout.

        Raises:
            NotImplementedError: the subclass is not an engine (it writes no rollouts).
        """
        raise NotImplementedError(f"{self.name} has no rollouts")

    def deterministic_act(self, params: Params, index: int) -> Callable[[np.ndarray], np.ndarray]:
        """Task `index`'s policy in the stacked `params` acting deterministically (the
        Gaussian's mean, clipped to the action space): what a distribution that scores
        policies (`policy_scorer`) is handed.

        Args:
            params: adapted parameters, stacked `[tasks, ...]` (`TasksRun.params`).
            index: the task whose weights act.

        Returns:
            A function from a batch of observations to actions.

        Raises:
            NotImplementedError: the engine cannot hand out a policy.
        """
        raise NotImplementedError(f"{self.name} cannot hand out a deterministic policy")

    def eval_chunk(self) -> int:
        """Held-out tasks adapted together by `curves`."""
        return EVAL_CHUNK

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Around `curves`: an engine releases there what the evaluation built."""
        yield

    # -- written once --------------------------------------------------------------------------
    def phi(self) -> Params:
        """A detached copy of the model's parameters (what `run` and `adapt` start from)."""
        return {n: p.detach().clone() for n, p in self.model.named_parameters()}

    def run(
        self,
        phi: Params,
        tasks: Sequence[Any],
        seeds: Sequence[int],
        updates: int,
        *,
        lr: float | None = None,
        measure: Sequence[int] = (0,),
        on_rollout: RolloutTick | None = None,
    ) -> TasksRun:
        """Adapt phi to every task with `updates` inner updates of step size `lr`
        (train.inner_lr when not given) and measure the rollouts in `measure` (`rollouts`).

        Args:
            phi: the parameters to adapt from (`phi()` gives the model's, detached).
            tasks: the tasks.
            seeds: one seed per task; a task's rollouts depend on its seed alone.
            updates: inner updates per task.
            lr: the inner step size (None: `train.inner_lr`).
            measure: the update counts whose rollouts are measured.
            on_rollout: hears each rollout, with the number of tasks it covered.

        Returns:
            The adapted parameters, stacked `[tasks, ...]`, and the measured returns.
        """
        lr = self.recipe.train.inner_lr if lr is None else lr
        request = RunRequest(phi, list(tasks), list(seeds), updates, lr, tuple(measure))
        return self.rollouts(dataclasses.replace(request, on_rollout=on_rollout))

    def seeded_rollouts(self) -> int:
        return self.recipe.train.inner_steps

    def adapt_slots(
        self, phi: Params, tasks: list[Any], seeds: list[int], place: SlotPlace
    ) -> Adaptation[Any]:
        """`train.inner_steps` updates of the tasks from phi (`run`); the log gets the return
        of phi's rollouts, the env steps, and the family's metrics of phi's episodes
        (`<name>_before`); the context holds the tasks and seeds `query_gradient` rolls out
        again from."""
        k = self.recipe.train.inner_steps
        run = self.run(phi, tasks, seeds, k)
        metrics = adaptation_metrics(run.returns[0].mean(), k * run.rollout_steps)
        metrics.update(logged(run.episodes.get(0, {}), "before"))
        return Adaptation(run.params, {"tasks": tasks, "seeds": seeds}, metrics)

    def curve(self, steps: list[int], n_tasks: int) -> Curve:
        """The headline metric of `curves`: success rate where the distribution scores
        policies itself (Meta-World), else the return.

        Args:
            steps: the numbers of inner updates after which it is measured.
            n_tasks: held-out tasks.

        Returns:
            The headline curve.
        """
        return next(iter(self.curves(steps, n_tasks).values()))

    def eval_tasks(self, n_tasks: int) -> tuple[list[Any], list[int]]:
        """The recipe's fixed held-out tasks and their seeds (the same for every engine).

        Args:
            n_tasks: how many tasks.

        Returns:
            The tasks and one rollout seed per task (`held_out_tasks`).
        """
        return held_out_tasks(self.recipe.eval, self.dist, n_tasks)

    def meta_gradient(self, adaptation: Any) -> MetaDelta[Any]:
        """Not offered by the first-order engines: Reptile's delta is the trainer's and
        FOMAML's is `query_gradient`; second-order MAML-RL is
        `metarl.learners.maml_rl.MAMLRLMetaLearner` (`metarl.combinations` routes to it).

        Args:
            adaptation: what `adapt` returned.

        Raises:
            NotImplementedError: always, naming the learner.
        """
        raise NotImplementedError(f"{self.name} takes reptile or fomaml")

    def curves(
        self, steps: list[int], n_tasks: int, progress: Progress | None = None
    ) -> dict[str, Curve]:
        """Each metric over held-out tasks after each number of inner updates in `steps`,
        adapting from `model` with eval.inner_lr (default: train.inner_lr), `eval_chunk`
        tasks at a time: the mean return of the rollout collected after t updates, and a
        curve per family metric of its first episodes (`ReportsEpisodes`). A distribution
        that scores policies (`policy_scorer`, Meta-World) scores each adapted policy with
        its benchmark's own protocol: its metrics lead, and the rollouts' return is kept as
        `rollout_return`. `progress(done, n_tasks)` hears each rollout, as the fraction of
        the tasks' work done (the scoring, where there is one, counts as much again).

        Args:
            steps: the numbers of inner updates after which each metric is measured.
            n_tasks: held-out tasks (`eval_tasks`: fixed by eval.seed and eval.split).
            progress: called with (tasks done, n_tasks).

        Returns:
            Metric name -> curve, the headline (`curve`'s) first.
        """
        with self.evaluating():
            return self._curves(steps, n_tasks, progress)

    def _curves(
        self, steps: list[int], n_tasks: int, progress: Progress | None
    ) -> dict[str, Curve]:
        wanted = sorted(set(steps))
        phi = self.phi()
        tasks, seeds = self.eval_tasks(n_tasks)
        chunk = self.eval_chunk()
        values = np.zeros((len(wanted), n_tasks))
        family: dict[str, np.ndarray] = {}  # name -> [steps, tasks]
        per_update = 0  # env steps of one task's rollout: what an inner update costs it
        share = 0.5 if policy_scorer(self.dist) is not None else 1.0  # of the progress bar
        done = 0.0

        def tick(size: int) -> None:
            nonlocal done
            done += share * size / (max(wanted) + 1)
            if progress is not None:
                progress(done, n_tasks)

        for start in range(0, n_tasks, chunk):
            part = slice(start, start + chunk)
            run = self.run(
                phi,
                tasks[part],
                seeds[part],
                max(wanted),
                lr=self.recipe.eval_inner_lr,
                measure=wanted,
                on_rollout=tick,
            )
            per_update = run.rollout_steps // len(tasks[part])
            for row, t in enumerate(wanted):
                values[row, part] = run.returns[t]
                for name, per_episode in run.episodes.get(t, {}).items():
                    table = family.setdefault(name, np.zeros((len(wanted), n_tasks)))
                    table[row, part] = per_episode.mean(-1)
        curves = {"return": Curve.from_values("return", wanted, values)}

        def scored_tick(finished: int) -> None:  # tasks scored at one step count
            if progress is not None:
                progress(done + (1 - share) * finished / len(wanted), n_tasks)

        scored = self._scored_curves(phi, tasks, seeds, wanted, chunk, scored_tick)
        if scored:  # the benchmark's own protocol (Meta-World): its metrics lead
            rollouts = dataclasses.replace(curves["return"], metric="rollout_return")
            curves = {**scored, "rollout_return": rollouts}
        for name, table in family.items():  # a scored metric of the same name stays
            curves.setdefault(name, Curve.from_values(name, wanted, table))
        return with_env_steps(curves, per_update)

    def _scored_curves(
        self,
        phi: Params,
        tasks: list[Any],
        seeds: list[int],
        wanted: list[int],
        chunk: int,
        tick: Callable[[int], None],
    ) -> dict[str, Curve]:
        """The distribution's own score (`policy_scorer`: Meta-World's evaluator, success
        rate and return) of each task's policy after each t in `wanted` updates (`chunk`
        tasks adapted at a time, as the rollouts of `curves` were), acting deterministically
        (`deterministic_act`): the same protocol on every engine, so their numbers compare.
        Adapting is a function of (phi, task, seed), so each t replays the same updates.
        Empty where the distribution has no score of its own."""
        score = policy_scorer(self.dist)
        if score is None:
            return {}
        # the same score of a chunk's tasks together where the distribution has it
        # (Meta-World's batched step, its envs built once for every chunk and step count);
        # None from it means: one task at a time
        many = (
            self.dist.evaluate_policies if isinstance(self.dist, ScoresPoliciesTogether) else None
        )
        values: dict[str, np.ndarray] = {}
        finished = 0
        try:
            for row, t in enumerate(wanted):
                for start in range(0, len(tasks), chunk):
                    part = slice(start, start + chunk)
                    run = self.run(
                        phi, tasks[part], seeds[part], t, lr=self.recipe.eval_inner_lr, measure=()
                    )
                    acts = [self.deterministic_act(run.params, i) for i in range(len(tasks[part]))]
                    together = many(tasks[part], acts) if many is not None else None
                    for offset, task in enumerate(tasks[part]):
                        scores = (
                            {k: v[offset] for k, v in together.items()}
                            if together is not None
                            else score(task, acts[offset])
                        )
                        for name, value in scores.items():
                            table = values.setdefault(name, np.zeros((len(wanted), len(tasks))))
                            table[row, start + offset] = value
                        finished += 1
                        tick(finished)
        finally:
            if isinstance(self.dist, ScoresPoliciesTogether):
                self.dist.release_scorer()
        return {name: Curve.from_values(name, wanted, v) for name, v in values.items()}


__all__ = [
    "EVAL_CHUNK",
    "RLMetaLearnerBase",
    "RolloutSchedule",
    "RolloutTick",
    "RunRequest",
    "SeededAdapt",
    "SlotPlace",
    "TasksRun",
    "Timers",
    "adaptation_metrics",
    "eval_chunk",
    "held_out_tasks",
    "initial_policy",
    "policy_scorer",
    "query_metrics",
    "refuse_supervised_keys",
    "slot_seeds",
    "with_env_steps",
]
