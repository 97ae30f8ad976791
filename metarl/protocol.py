"""The Task protocol: what every task distribution, supervised or RL, offers the loops.

A *task* is a small, serializable description (a sine's amplitude and phase, the classes of an
episode, an environment's physics parameters). A *distribution* samples tasks from a
`np.random.Generator` it is handed -- never from global random state -- for one of three
splits. Supervised distributions then turn tasks into support/query tensors
(`SupervisedDistribution.episodes`); RL distributions turn a task into a Gymnasium environment
(`RLDistribution.make_env`). The outer loop sees only `sample`, so both kinds drive it.

The other side of the contract is the `MetaLearner`: the inner loop as the outer loop sees it.
The trainer hands it phi (a `Params` dict) and a meta-batch of tasks and gets back an
`Adaptation` (the adapted parameters W_i stacked on a task axis); for FOMAML it also asks for
the per-task sum of query gradients at W_i, and for MAML, iMAML and Meta-SGD for the
meta-gradient the learner computed while adapting. Which learner adapts a distribution is chosen by
the distribution's `kind` and the recipe's choices (`metarl.combinations.SUPPORTED`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    NamedTuple,
    Protocol,
    TypedDict,
    TypeVar,
    runtime_checkable,
)

import numpy as np

if TYPE_CHECKING:  # annotations only: the CLI's listings import this module without torch
    import torch

    from metarl.curves import Curve

Params = dict[str, "torch.Tensor"]
Progress = Callable[[float, float], None]
"""`progress(done, total)`: how far an evaluation is, in tasks (fractions allowed)."""
"""Parameters by name, as `named_parameters()` gives them: phi has the model's shapes, adapted
parameters carry a leading task axis."""


class Split(str, enum.Enum):
    """Which part of a distribution tasks are drawn from."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


SPLIT_STREAM = {Split.TRAIN: 0, Split.VAL: 1, Split.TEST: 2}


def task_rng(seed: int, split: Split, *keys: int) -> np.random.Generator:
    """The generator for one draw of tasks: a pure function of the seed, the split and the
    keys (e.g. the iteration), never of global state or of what ran before.

    Args:
        seed: The recipe's `train.seed` or `eval.seed`.
        split: The split the tasks come from.
        *keys: Further integers, e.g. the meta-iteration.

    Returns:
        A fresh generator: the same arguments give the same tasks in any process.

    Examples:
        >>> from metarl.protocol import Split, task_rng
        >>> a = task_rng(0, Split.TRAIN, 7).integers(1000, size=3)
        >>> b = task_rng(0, Split.TRAIN, 7).integers(1000, size=3)
        >>> c = task_rng(0, Split.TEST, 7).integers(1000, size=3)
        >>> bool((a == b).all()), bool((a == c).all())
        (True, False)
    """
    return np.random.default_rng([seed, SPLIT_STREAM[split], *keys])


class Task(Protocol):
    """A serializable task description: `to_dict()` gives plain JSON/TOML values."""

    def to_dict(self) -> dict[str, Any]: ...


class TaskBatch(NamedTuple):
    """Support and query data of a meta-batch of tasks, stacked on a leading task axis.

    Shapes: `support_x` is `[tasks, support, *features]`, `support_y` is `[tasks, support, ...]`,
    and the same for the query set.

    Examples:
        >>> import torch
        >>> from metarl.protocol import TaskBatch
        >>> batch = TaskBatch(*(torch.zeros(4, 10, 1) for _ in range(4)))
        >>> batch.num_tasks, batch.take(slice(1, 3)).num_tasks
        (4, 2)
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor

    def to(self, device: torch.device | str) -> TaskBatch:
        """The four tensors on `device`."""
        return TaskBatch(*(t.to(device, non_blocking=True) for t in self))

    def take(self, index: slice) -> TaskBatch:
        """The tasks `index` of the batch (a contiguous slice along the task axis)."""
        return TaskBatch(*(t[index] for t in self))

    @property
    def num_tasks(self) -> int:
        """The size of the task axis."""
        return int(self.support_x.shape[0])


Kind = Literal["supervised", "rl"]
"""Which learners adapt a distribution's tasks (`metarl.combinations.SUPPORTED`)."""


@runtime_checkable
class TaskDistribution(Protocol):
    """Anything that samples tasks. `kind` says which learner can adapt to them."""

    kind: Kind

    def sample(self, n: int, rng: np.random.Generator, split: Split) -> Sequence[Task]:
        """Draw `n` tasks of `split` using only `rng`."""
        ...


@runtime_checkable
class SupervisedDistribution(TaskDistribution, Protocol):
    """A distribution whose tasks become support/query tensors."""

    loss: str  # "mse" or "cross_entropy"
    metric: str  # the evaluation metric's name, e.g. "mse" or "accuracy"

    def episodes(
        self,
        tasks: Sequence[Task],
        rng: np.random.Generator,
        *,
        support: int,
        query: int,
        evaluation: bool = False,
    ) -> TaskBatch:
        """Support/query tensors for `tasks`. `evaluation=True` selects the evaluation protocol
        (e.g. sine's fixed query grid) instead of training sampling."""
        ...

    # Optional: `to(device)`, the capability `HoldsData`.

    def build_model(self, **options: Any) -> torch.nn.Module:
        """The network this distribution is meta-learned with; `options` is the recipe's
        `[model]` table."""
        ...


@runtime_checkable
class RLDistribution(TaskDistribution, Protocol):
    """A distribution whose tasks become Gymnasium environments."""

    def make_env(self, task: Task) -> Any:
        """A `gymnasium.Env` with `task` set."""
        ...

    # Optional parts are the capabilities below (`ScoresPolicies`, `ScoresPoliciesTogether`,
    # `ReportsEpisodes`, `MakesVectorEnv`, `BoundsEvalEnvs`, `RecordsRun`), each checked with
    # `isinstance` where it is used.


# -- optional capabilities: small protocols, checked with isinstance where they are used ----


@runtime_checkable
class HoldsData(Protocol):
    """A supervised distribution holding data (decoded images) that it moves to the device,
    so that episodes are assembled there."""

    def to(self, device: torch.device | str) -> Any: ...


@runtime_checkable
class BuildsModel(Protocol):
    """A distribution (or its class) that builds the network it is meta-learned with."""

    def build_model(self, **options: Any) -> torch.nn.Module: ...


@runtime_checkable
class ScoresPolicies(Protocol):
    """An RL distribution that scores a deterministic policy (`act`: observations ->
    actions) on a task with the benchmark's own protocol (Meta-World: success rate and
    return); evaluation then reports those metrics, the first one as the headline."""

    def evaluate_policy(self, task: Any, act: Callable[[Any], Any]) -> dict[str, float]: ...


@runtime_checkable
class ScoresPoliciesTogether(Protocol):
    """A `ScoresPolicies` distribution that scores many tasks' policies at once with the same
    protocol (Meta-World on its batched step), or answers None where it cannot (then each
    task is scored alone). It may keep its envs from one call to the next; the evaluation
    calls `release_scorer` when it is done."""

    def evaluate_policies(
        self, tasks: Sequence[Any], acts: Sequence[Callable[[Any], Any]]
    ) -> Mapping[str, Any] | None: ...

    def release_scorer(self) -> None:
        """Free what `evaluate_policies` keeps between calls (its envs)."""


@dataclass(frozen=True)
class FirstEpisodes:
    """What the envs' infos said over each sub-env's first episode of a rollout, for the info
    keys a `ReportsEpisodes` distribution watches (a key its envs never report is absent):
    `means[key]` the mean of `info[key]` over the episode's steps, `ever[key]` 1.0 where it
    was positive at some step, else 0.0; both `[tasks, envs]`."""

    means: Mapping[str, np.ndarray] = field(default_factory=dict)
    ever: Mapping[str, np.ndarray] = field(default_factory=dict)


@runtime_checkable
class ReportsEpisodes(Protocol):
    """An RL distribution whose envs say more about an episode than its return (a forward
    velocity, a success flag): the rollout records the info keys in `episode_info` over each
    first episode, and `episode_metrics` turns them into the family's own metrics, each
    `[tasks, envs]` (one value per episode). Training logs each one's mean as
    `<name>_before` / `<name>_after`; evaluation gives each a curve."""

    episode_info: tuple[str, ...]

    def episode_metrics(
        self, tasks: Sequence[Any], first: FirstEpisodes
    ) -> dict[str, np.ndarray]: ...


@runtime_checkable
class MakesVectorEnv(Protocol):
    """An RL distribution with a vector env of its own for `n_tasks` x `envs_per_task` envs
    (None: the protocol fallback steps `make_env`'s envs)."""

    def make_vector_env(self, n_tasks: int, envs_per_task: int) -> Any: ...


@runtime_checkable
class BoundsEvalEnvs(Protocol):
    """An RL distribution whose envs are heavy: at most this many envs are held at once
    while evaluating (Meta-World's)."""

    max_eval_subenvs: int


@runtime_checkable
class FixesEvalEpisodes(Protocol):
    """An RL distribution whose benchmark fixes how many episodes per task score a policy
    (Meta-World's evaluator: 3 per goal)."""

    eval_episodes: int


@runtime_checkable
class UpdatesAcrossRanks(Protocol):
    """A learner whose `adapt` itself takes a training step that must see the whole meta-batch
    (RL²'s PPO update on every rank's trials). The trainer hands it, once, the sum over ranks
    (`World.all_reduce_sum`; the identity for one process), which its step calls inside."""

    def join_ranks(self, reduce: Callable[[Params], Params]) -> None: ...


@runtime_checkable
class RecordsRun(Protocol):
    """A distribution (any kind) with task options a run directory records in its [task]
    table (simulator versions) and passes back when the run is reopened, so the
    distribution can refuse a run made under other versions."""

    def run_record(self) -> Mapping[str, Any]: ...


@runtime_checkable
class ParametrizedTask(Protocol):
    """A task of an environment family: its parameters by name (`metarl.envs`)."""

    params: Mapping[str, Any]


class AcrossRanks(str, enum.Enum):
    """How one rank's value of a training metric combines with the other ranks' into the
    value of the whole meta-batch, the one the trainer logs under torchrun (each rank adapts
    its share of the tasks; `metarl.distributed.MetricsLayout` does the combining, in the
    iteration's one all-reduce). A learner lists its metrics that are not `MEAN` in
    `MetaLearner.metrics_across_ranks`."""

    MEAN = "mean"
    """A mean over this rank's tasks (a loss, a return, a success rate, an accuracy): the
    ranks' values weighted by their task counts. The default."""
    SUM = "sum"
    """A count over this rank's tasks (`env_steps`): summed."""
    SAME = "same"
    """Already the whole meta-batch's, identical on every rank (RL²'s PPO losses, summed over
    ranks inside its update): rank 0's, checked equal to every rank's."""
    OWN = "own"
    """This process's own measurement, which no sum over ranks describes (seconds spent by
    part, as `elapsed_s`): rank 0's."""


C = TypeVar("C")
"""A learner's adaptation context: what it keeps from `adapt` to finish the step."""
D = TypeVar("D", bound=TaskDistribution)
"""The kind of distribution a learner adapts to."""
Obj = TypeVar("Obj")
"""What a meta-gradient was taken of, for an outer step that re-evaluates it."""


class RolloutContext(TypedDict):
    """The context of an RL adaptation: the tasks of this rank's slots and each one's seed
    (a task's rollouts are a function of its seed)."""

    tasks: list[Any]
    seeds: list[int]


@dataclass
class Adaptation(Generic[C]):
    """Adapted parameters of a meta-batch, and what a learner needs to finish the step."""

    params: Params
    """W_i, stacked: every tensor has a leading task axis."""
    context: C
    """Learner-specific, typed by the learner: the supervised learner's `TaskBatch` (or its
    second-order `MetaGradient`), the RL learners' `RolloutContext`."""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MetaDelta(Generic[Obj]):
    """One rank's meta-gradient (or Reptile's delta), as the learner hands it to the trainer."""

    gradient: Params
    """The per-task sum over this rank's adapted tasks, keyed like phi."""
    metrics: dict[str, float] = field(default_factory=dict)
    objective: Obj | None = None
    """What the gradient was taken of, for an outer step that re-evaluates it (MAML-RL's
    `metarl.rl.outer_objective.OuterObjective`); None where the learner leaves nothing."""


@dataclass(frozen=True)
class MetaStep(Generic[Obj]):
    """What one meta-iteration hands its outer step: the meta-gradient, the objective it was
    taken of, and how to reach the other ranks."""

    gradient: Params
    """The meta-batch mean of the meta-gradient, already summed over ranks."""
    reduce: Callable[[Params], Params]
    """Sums a dict of tensors over ranks (the identity for one process)."""
    meta_batch: int
    lr: float
    """This iteration's `meta_step` (annealed by the trainer's schedule)."""
    objective: Obj | None = None
    """This rank's `MetaDelta.objective`, passed on as the learner left it."""


class OuterStep(Protocol):
    """The outer step (`train.outer_optimizer`): moves the learner's phi from the meta-batch's
    meta-gradient. Built once per run from the recipe and the learner
    (`metarl.outer.build_outer_step`); it owns its settings and state, which the checkpoint
    keeps in torch's optimizer layout (`state`, `param_groups`, and any keys of its own)."""

    def step(self, meta: MetaStep[Any]) -> dict[str, float]:
        """Take the step on the learner's model; returns metrics ({} when it has none)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The step's state for the checkpoint (an optimizer state dict and its own keys)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` gave."""
        ...


class MetaLearner(Protocol[C]):
    """The inner loop as the trainer, evaluation, export and the CLI see it: parameters in,
    parameters out. `MetaLearnerBase` gives the optional parts their defaults."""

    @property
    def model(self) -> torch.nn.Module:
        """Holds phi; its parameters are the ones the outer optimizer steps."""
        ...

    @property
    def dist(self) -> TaskDistribution:
        """Where the outer loop draws each meta-batch of tasks from."""
        ...

    def adapt(
        self, phi: Params, tasks: Sequence[Task], rng: np.random.Generator, slots: slice
    ) -> Adaptation[C]:
        """Adapt phi to the tasks `tasks[slots]` with the recipe's inner loop.

        `tasks` is the whole meta-batch and `rng` the iteration's generator: whatever a learner
        draws from `rng` (data, seeds) it draws for every task, then keeps its slots, so a
        slot's data does not depend on how the meta-batch is split across ranks."""
        ...

    def query_gradient(self, adaptation: Adaptation[C]) -> tuple[Params, dict[str, float]]:
        """FOMAML's ingredient: sum over the adapted tasks of the query-loss gradient at their
        adapted parameters W_i (first order), plus metrics."""
        ...

    def meta_gradient(self, adaptation: Adaptation[C]) -> MetaDelta[Any]:
        """MAML's, iMAML's or Meta-SGD's meta-gradient, summed over the adapted tasks and
        keyed like phi, with metrics and the objective it was taken of where an outer step
        re-evaluates it (learners that refuse those algorithms raise)."""
        ...

    def curve(self, steps: list[int], n_tasks: int) -> Curve:
        """The evaluation metric on the recipe's held-out tasks after each number of steps."""
        ...

    def curves(
        self, steps: list[int], n_tasks: int, progress: Progress | None = None
    ) -> dict[str, Curve]:
        """Every metric the evaluation reports, the headline (`curve`'s) first;
        `progress(done, total)` hears how far it is, in tasks (fractions allowed)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Training state beyond the weights, for the checkpoint ({} when there is none)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` gave (from a checkpoint); a key it needs and does not
        find is a damaged checkpoint (`KeyError`)."""
        ...

    @property
    def metrics_across_ranks(self) -> Mapping[str, AcrossRanks]:
        """How the metrics `adapt` and the meta-gradient report combine over torchrun ranks,
        by name; a name not listed is a mean over the tasks (`AcrossRanks.MEAN`)."""
        ...

    @property
    def rank_local_state(self) -> frozenset[str]:
        """Keys of `state_dict` that hold one rank's slots (rank 0's, in the checkpoint): a
        resume under several ranks restarts them instead of loading rank 0's into every rank."""
        ...

    def run_record(self) -> dict[str, Any]:
        """Task options a run directory records in its [task] table (the simulator versions
        behind the numbers; {} when there are none)."""
        ...


class MetaLearnerBase(Generic[C, D]):
    """The defaults of `MetaLearner`'s optional parts: one metric, no state beyond the
    weights, nothing to record. Learners subclass it (`C`: their adaptation context, `D`:
    their distribution type) and override what they have."""

    model: torch.nn.Module
    dist: D
    metrics_across_ranks: ClassVar[Mapping[str, AcrossRanks]] = {}
    """Every metric a mean over the tasks unless listed (`MetaLearner.metrics_across_ranks`)."""

    def curve(self, steps: list[int], n_tasks: int) -> Curve:
        raise NotImplementedError

    def curves(
        self, steps: list[int], n_tasks: int, progress: Progress | None = None
    ) -> dict[str, Curve]:
        curve = self.curve(steps, n_tasks)
        return {curve.metric: curve}

    def meta_gradient(self, adaptation: Adaptation[C]) -> MetaDelta[Any]:
        raise NotImplementedError(f"{type(self).__name__} computes no second-order meta-gradient")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    @property
    def rank_local_state(self) -> frozenset[str]:
        return frozenset()

    def run_record(self) -> dict[str, Any]:
        """The distribution's `run_record()`, the one optional method of the Task protocol
        that a run directory keeps (Meta-World's simulator versions)."""
        return dict(self.dist.run_record()) if isinstance(self.dist, RecordsRun) else {}
