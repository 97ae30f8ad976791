"""Recipes: one TOML file says which task distribution, which network, how to meta-train and
how to evaluate. The catalog in `tasks/` is written in this format, and so is a run's
`config.toml`, so a run directory is itself a recipe.

```toml
description = "Sine regression (Reptile paper)"
[task]
name = "sine"            # a registered distribution; other keys are its options
[model]                  # options of the distribution's network
hidden = [64, 64]
[train]
algorithm = "reptile"
meta_iterations = 2000
[eval]
steps = [0, 1, 10, 32]
```
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from metarl.errors import ConfigError, did_you_mean
from metarl.outer_registry import OuterOptimizerName as OuterOptimizerName
from metarl.tomlio import read_toml, toml_value


class Algorithm(str, enum.Enum):
    """The outer loop's meta-gradient (`train.algorithm`).

    Examples:
        >>> from metarl.config import Algorithm
        >>> Algorithm("metasgd").second_order, Algorithm.REPTILE.needs_query
        (True, False)
    """

    REPTILE = "reptile"
    FOMAML = "fomaml"
    MAML = "maml"
    IMAML = "imaml"
    METASGD = "metasgd"
    GRADIENTS = "gradients"
    RL2 = "rl2"

    @property
    def needs_query(self) -> bool:
        """Reptile and the gradient combinations take no query set; the others do."""
        return self not in (Algorithm.REPTILE, Algorithm.GRADIENTS, Algorithm.RL2)

    @property
    def second_order(self) -> bool:
        """MAML, iMAML and Meta-SGD differentiate through (or around) the inner loop."""
        return self in (Algorithm.MAML, Algorithm.IMAML, Algorithm.METASGD)


class OptimizerName(str, enum.Enum):
    """The inner loop's optimizer (`train.inner_optimizer`)."""

    SGD = "sgd"
    ADAM = "adam"


MAX_ITERATIONS = 100_000_000
MAX_TASKS = 100_000
"""Tasks per meta-batch or evaluation: far above any paper's (tens to a thousand)."""
MAX_STEPS = 100_000
"""Inner or evaluation adaptation steps: the papers use at most some hundreds."""
MAX_SEED = 2**64 - 1
"""torch.manual_seed takes up to 64 bits; numpy's seed sequences take any non-negative int."""


@dataclass
class TrainConfig:
    """How to meta-train."""

    algorithm: Algorithm = Algorithm.REPTILE
    """reptile: meta-gradient phi - W; fomaml: query-loss gradient at W; maml: the query loss
    differentiated through the inner loop; imaml: the implicit gradient of a proximal inner
    problem; metasgd: maml with a learned per-parameter inner learning rate alpha; gradients:
    the sum of the inner-loop minibatch gradients named by `combination` (the Reptile blog);
    rl2: RL² (RL tasks), a recurrent policy that adapts by its hidden state across the
    episodes of a trial, trained by PPO (`metarl.learners.rl2`)."""
    meta_iterations: int = 1000
    """Outer steps."""
    meta_batch: int = 5
    """Tasks adapted per outer step (1 gives serial Reptile)."""
    inner_steps: int = 5
    """Inner optimizer steps per task."""
    inner_lr: float = 0.02
    """The inner loop's step size (PPO's learning rate for RL)."""
    meta_step: float = 1.0
    """Outer step size at the first iteration (Reptile's epsilon, or the outer Adam's lr)."""
    meta_step_final: float = 0.0
    """Outer step size at the last iteration; annealed linearly in between."""
    outer_optimizer: OuterOptimizerName = OuterOptimizerName.SGD
    """sgd: phi <- phi - step * delta (Reptile's interpolation); adam: delta as Adam's gradient;
    trpo: MAML-RL's trust-region step (RL recipes with algorithm = "maml" only; `meta_step`
    is then unused: the step length comes from the KL bound, `metarl.rl.trpo`); promp:
    ProMP's clipped objective, 5 Adam steps of `meta_step` per batch (RL maml only,
    `metarl.rl.promp`); or any step registered in `metarl.outer_registry.OUTER_STEPS`."""
    seed: int = 0
    """Seeds the model's initialization and every meta-batch's tasks and data."""
    checkpoint_every: int = 500
    """Iterations between checkpoints (a checkpoint is also written at the end and on Ctrl-C)."""
    checkpoint_seconds: float = 60.0
    """Also checkpoint when this many seconds passed since the last one, so a crash or a kill
    loses at most this much work whatever the speed of an iteration."""
    log_every: int = 10
    """Iterations between lines of metrics.jsonl."""
    tensorboard: bool | None = None
    """Also write metrics.jsonl's rows as TensorBoard event files in the run directory; by
    default when the `tensorboard` package is installed (`false` turns it off)."""


def _supervised(default: Any, why_not_rl: str) -> Any:
    """A setting only the supervised learner reads: its default, and why an RL learner has no
    use for it (the RL learners refuse it with this reason)."""
    return field(default=default, metadata={"why_not_rl": why_not_rl})


@dataclass
class SupervisedSettings:
    """The supervised learner's settings, written in `[train]` (the catalog's recipe shape):
    the vmapped SGD/Adam inner loop and the episodes it adapts to."""

    inner_optimizer: OptimizerName = _supervised(
        OptimizerName.SGD, "PPO's optimizer is its own Adam"
    )
    """The inner loop's optimizer (maml and metasgd differentiate through plain SGD steps)."""
    inner_batch: int = _supervised(0, "PPO's minibatch is [learner] batch_size")
    """Support examples per inner step; 0 uses the whole support set each step."""
    inner_beta1: float = _supervised(0.9, "PPO's Adam uses its own betas")
    """Adam's beta1 in the inner loop (the Reptile paper uses 0 for classification)."""
    support_shots: int = _supervised(10, "a task's data is its rollouts: [learner] n_steps")
    """Support examples per task in training (per class for classification)."""
    query_shots: int = _supervised(10, "FOMAML's query set is one more rollout: [learner] n_steps")
    """Query examples per task in training (used by all but Reptile; per class for
    classification)."""
    maml_task_chunk: int = _supervised(0, "maml runs on supervised tasks only")
    """maml/metasgd: tasks whose second-order graph is held in memory at once (0 = all of a
    rank's tasks). The graph grows with tasks x inner steps; chunks of k tasks bound it to k
    tasks' worth, the meta-gradient unchanged (the per-task sums are accumulated)."""
    imaml_lambda: float = _supervised(10.0, "imaml runs on supervised tasks only")
    """imaml: the proximal weight lambda of (lambda/2)||theta - phi||^2 in the inner loss.
    10, not the paper's smaller values: the implicit gradient holds only where the inner loop
    reaches the proximal minimizer, and on tanh networks lambda = 1 leaves lambda I + H
    indefinite (sine-imaml at 1 barely learns; docs/results.md)."""
    cg_steps: int = _supervised(5, "imaml runs on supervised tasks only")
    """imaml: conjugate-gradient steps solving (I + H/lambda) x = grad L_query (the paper
    uses 5-20)."""
    combination: str = _supervised(
        "g1+g2+g3+g4", "gradient combinations run on supervised tasks only"
    )
    """gradients: which inner-loop minibatch gradients make the meta-gradient, "g1", "g2",
    "g1+g2", ... -- g_i is the support-loss gradient of the i-th inner step (on its own
    minibatch, at the parameters after i - 1 steps). g1 alone is joint training; the sum of all
    k is Reptile's phi - W with SGD; g2 alone is first-order MAML with one step."""
    amp: bool = _supervised(False, "SB3's PPO runs in float32, amp = false is implied")
    """Mixed precision: the inner loop's forward and backward under bfloat16 autocast (for
    the conv nets on a GPU). Parameters, optimizer states and the meta-update stay float32."""
    inner_carry_moments: bool = _supervised(False, "PPO starts every task with fresh Adam")
    """Training only: carry the inner Adam's moments from task to task (per meta-batch slot)
    instead of resetting them for every task, as supervised-reptile does. Evaluation always
    starts from fresh moments. Needs inner_optimizer = "adam"."""

    def validate(self, algorithm: Algorithm) -> None:
        """Range checks, and what `algorithm` needs (a query set; plain SGD to differentiate
        through).

        Args:
            algorithm: the recipe's `train.algorithm`.

        Raises:
            ConfigError: a value out of range, or a setting the algorithm cannot use.
        """
        if self.support_shots < 1:
            raise ConfigError(f"train.support_shots = {self.support_shots}: must be >= 1")
        for name in ("inner_batch", "query_shots"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} = {getattr(self, name)}: must be 0 or more")
        if not 0.0 <= self.inner_beta1 < 1.0:
            raise ConfigError(f"train.inner_beta1 = {self.inner_beta1}: must be in [0, 1)")
        if self.inner_carry_moments and self.inner_optimizer is not OptimizerName.ADAM:
            raise ConfigError(
                'train.inner_carry_moments = true: needs train.inner_optimizer = "adam" '
                "(SGD has no moments)"
            )
        if algorithm.needs_query and self.query_shots < 1:
            raise ConfigError(
                f"train.query_shots = 0: {algorithm.value} needs a query set (use >= 1)"
            )
        if algorithm in (Algorithm.MAML, Algorithm.METASGD):
            if self.inner_optimizer is not OptimizerName.SGD:
                raise ConfigError(
                    f"train.inner_optimizer = {self.inner_optimizer.value!r}: {algorithm.value} "
                    'differentiates through plain SGD steps (use "sgd")'
                )
            if self.amp:
                raise ConfigError(f"train.amp = true: {algorithm.value} runs in float32")
        if algorithm is Algorithm.GRADIENTS:
            self.combination_indices()
        if self.maml_task_chunk < 0:
            raise ConfigError(f"train.maml_task_chunk = {self.maml_task_chunk}: must be >= 0")
        if self.imaml_lambda <= 0:
            raise ConfigError(f"train.imaml_lambda = {self.imaml_lambda}: must be > 0")
        if self.cg_steps < 1:
            raise ConfigError(f"train.cg_steps = {self.cg_steps}: must be >= 1")

    def combination_indices(self) -> list[int]:
        """The 1-based inner steps whose gradients `combination` sums (e.g. "g1+g3": [1, 3])."""
        terms = self.combination.replace(" ", "").split("+")
        if not all(t[:1] == "g" and t[1:].isdigit() and int(t[1:]) >= 1 for t in terms):
            raise ConfigError(
                f"train.combination = {self.combination!r}: expected gradients g1, g2, ... "
                'joined by "+", e.g. "g1+g2"'
            )
        indices = sorted({int(t[1:]) for t in terms})
        return indices


@dataclass
class EvalConfig:
    """How to measure fast adaptation on held-out tasks (every learner's `[eval]` keys)."""

    tasks: int = 1000
    """Held-out tasks the metric is averaged over."""
    steps: list[int] = field(default_factory=lambda: [0, 1, 10, 32])
    """Numbers of adaptation steps at which the metric is reported."""
    inner_lr: float | None = None
    """Defaults to the training inner lr (`Recipe.eval_inner_lr` resolves it)."""
    seed: int = 2024
    """Fixes the evaluation tasks, so numbers compare across runs."""
    split: Literal["train", "val", "test"] = "test"
    """The split the held-out tasks are drawn from."""


@dataclass
class SupervisedEval:
    """The supervised learner's `[eval]` keys: the held-out episodes and how they are
    adapted and classified."""

    support_shots: int = _supervised(10, "RL tasks adapt on rollouts: [learner] n_steps")
    """Support examples per held-out task (per class for classification)."""
    query_shots: int = _supervised(100, "RL tasks are scored on the rollout after adapting")
    """Query examples per held-out task (per class for classification)."""
    inner_batch: int = _supervised(0, "PPO's minibatch is [learner] batch_size")
    """Support examples per adaptation step; 0 uses the whole support set."""
    transductive: bool = _supervised(True, "a policy acts on one observation at a time")
    """Classify the whole query set in one batch, so BatchNorm normalizes with its statistics
    (the paper's "+ transduction" rows). False classifies each query example in a batch of the
    support set plus that one example, as the paper's main rows do. Same numbers for networks
    without BatchNorm."""

    def validate(self) -> None:
        for name in ("support_shots", "query_shots"):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"eval.{name} = {getattr(self, name)}: must be a positive integer"
                )
        if self.inner_batch < 0:
            raise ConfigError(f"eval.inner_batch = {self.inner_batch}: must be 0 or more")


SUPERVISED: dict[str, type] = {"train": SupervisedSettings, "eval": SupervisedEval}
"""The keys of `[train]` and `[eval]` that only the supervised learner reads, by table: each
declared once, with its default and why an RL learner has no use for it (field metadata)."""
SUPERVISED_TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(SupervisedSettings))


@dataclass
class Recipe:
    """A complete description of a meta-learning job.

    Read one with `load_recipe_file` or `recipe_from_dict`, or by catalog name with
    `metarl.registry.resolve_recipe`; every key is listed in the settings reference.

    Examples:
        >>> from metarl.registry import resolve_recipe
        >>> recipe = resolve_recipe("sine")
        >>> recipe.task_name, recipe.train.algorithm.value, recipe.eval.steps
        ('sine', 'reptile', [0, 1, 10, 32])
        >>> recipe.to_dict()["train"]["meta_batch"]
        32
    """

    task: dict[str, Any]
    """`name` of the distribution plus its options."""
    model: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    learner: dict[str, Any] = field(default_factory=dict)
    """The `[learner]` table: the RL learner's PPO settings (n_steps, gamma, net_arch, ...),
    typed and checked by the learner (`metarl.rl.settings.PPOSettings`)."""
    supervised: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The keys of `[train]` and `[eval]` that only the supervised learner reads (`SUPERVISED`),
    as given (typed when parsed); absent keys take `SupervisedSettings`' and `SupervisedEval`'s
    defaults. An RL learner refuses any of them (`refuse_supervised`)."""
    description: str = ""
    source: str = ""
    """Where the recipe came from (a catalog name or a file); not a setting."""

    @property
    def task_name(self) -> str:
        """The registered distribution the tasks come from (`[task] name`)."""
        return str(self.task["name"])

    def supervised_settings(self) -> SupervisedSettings:
        """The supervised learner's settings: the `[train]` keys given, defaults for the rest;
        a `[learner]` table (the RL learner's) is refused, naming its first key."""
        if self.learner:
            raise ConfigError(
                f"learner.{next(iter(self.learner))}: [learner] holds the PPO settings of RL "
                f"tasks; the supervised learner of task {self.task_name!r} takes its settings "
                f"in [train] ({', '.join(SUPERVISED_TRAIN_KEYS)})"
            )
        settings: SupervisedSettings = build_dataclass(
            SupervisedSettings, self.supervised.get("train", {}), "train"
        )
        settings.validate(self.train.algorithm)
        return settings

    def supervised_eval(self) -> SupervisedEval:
        """The supervised learner's `[eval]` settings: the keys given, defaults for the rest."""
        settings: SupervisedEval = build_dataclass(
            SupervisedEval, self.supervised.get("eval", {}), "eval"
        )
        return settings

    def refuse_supervised(self, learner: str) -> None:
        """Refuse the supervised learner's `[train]`/`[eval]` keys for an RL `learner`: the
        first one given is a `ConfigError` naming it, the learner, and why it has no use.

        Args:
            learner: how the message names the RL learner.

        Raises:
            ConfigError: the first supervised-only key given.
        """
        for section, cls in SUPERVISED.items():
            given = self.supervised.get(section, {})
            why = {f.name: f.metadata["why_not_rl"] for f in dataclasses.fields(cls)}
            for key, value in given.items():
                raise ConfigError(
                    f"{section}.{key} = {toml_value(value)}: a setting of the supervised "
                    f"learner, not used by {learner} of task {self.task_name!r} "
                    f"({why[key]}); remove it"
                )

    @property
    def eval_inner_lr(self) -> float:
        """The inner learning rate of evaluation: `eval.inner_lr`, else `train.inner_lr`."""
        return self.train.inner_lr if self.eval.inner_lr is None else self.eval.inner_lr

    @property
    def task_options(self) -> dict[str, Any]:
        """The distribution's options: `[task]` without its `name`."""
        return {k: v for k, v in self.task.items() if k != "name"}

    def to_dict(self) -> dict[str, Any]:
        """Plain values, ready for TOML or JSON."""
        return {
            "description": self.description,
            "task": dict(self.task),
            "model": dict(self.model),
            "train": _plain({**dataclasses.asdict(self.train), **self.supervised.get("train", {})}),
            "eval": _plain({**dataclasses.asdict(self.eval), **self.supervised.get("eval", {})}),
            "learner": dict(self.learner),
        }

    def validate(self) -> None:
        """Range checks that a type check cannot do; raise `ConfigError` naming the field."""
        t, e = self.train, self.eval
        positive = {
            "train.meta_iterations": t.meta_iterations,
            "train.meta_batch": t.meta_batch,
            "train.checkpoint_every": t.checkpoint_every,
            "train.log_every": t.log_every,
            "eval.tasks": e.tasks,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} = {value}: must be a positive integer")
        # A typo (an extra three zeros) should be refused, not run for days or exhaust memory.
        at_most = {
            "train.meta_iterations": (t.meta_iterations, MAX_ITERATIONS),
            "train.meta_batch": (t.meta_batch, MAX_TASKS),
            "train.inner_steps": (t.inner_steps, MAX_STEPS),
            "eval.tasks": (e.tasks, MAX_TASKS),
            "eval.steps": (max(e.steps, default=0), MAX_STEPS),
        }
        for name, (value, limit) in at_most.items():
            if value > limit:
                raise ConfigError(f"{name} = {value}: must be at most {limit:,}")
        for name, seed in (("train.seed", t.seed), ("eval.seed", e.seed)):
            if not 0 <= seed <= MAX_SEED:
                raise ConfigError(f"{name} = {seed}: expected an integer from 0 to 2**64 - 1")
        if t.checkpoint_seconds <= 0:
            raise ConfigError(
                f"train.checkpoint_seconds = {t.checkpoint_seconds}: must be > 0 (seconds)"
            )
        if t.inner_steps < 0:
            raise ConfigError(f"train.inner_steps = {t.inner_steps}: must be 0 or more")
        self.supervised_eval().validate()
        for name, rate in (("train.inner_lr", t.inner_lr), ("eval.inner_lr", e.inner_lr)):
            if rate is not None and not rate > 0:  # nan too
                raise ConfigError(f"{name} = {rate}: must be > 0")
        if t.meta_step < 0 or t.meta_step_final < 0:
            raise ConfigError(
                f"train.meta_step = {t.meta_step}, meta_step_final = {t.meta_step_final}: "
                "must be >= 0"
            )
        if not e.steps or any(s < 0 for s in e.steps):
            raise ConfigError(f"eval.steps = {e.steps}: must be a non-empty list of integers >= 0")


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in d.items()}


def coerce_value(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a field's or parameter's type annotation (the few types configs
    use; others pass unchecked) and return it typed (an enum member, an int as a float).

    Args:
        value: A plain value, as read from TOML.
        annotation: The type it must have (`int`, `float | None`, `list[int]`, an enum, a
            `Literal`, ...).
        where: The setting's name for the error message (`"train.inner_lr"`).

    Returns:
        The value typed.

    Raises:
        ConfigError: `value` does not fit `annotation`.

    Examples:
        >>> from metarl.config import Algorithm, coerce_value
        >>> coerce_value("maml", Algorithm, "train.algorithm")
        <Algorithm.MAML: 'maml'>
        >>> coerce_value(1, float, "train.inner_lr")
        1.0
        >>> coerce_value("1", int, "train.seed")
        Traceback (most recent call last):
        ...
        metarl.errors.ConfigError: train.seed = '1': expected an integer
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce_value(value, inner[0], where)
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed or not isinstance(value, type(allowed[0])):
            raise ConfigError(
                f"{where} = {value!r}: expected one of {', '.join(map(str, allowed))}"
            )
        return value
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            choices = ", ".join(m.value for m in annotation)
            raise ConfigError(f"{where} = {value!r}: expected one of {choices}") from None
    if annotation is OuterOptimizerName:
        try:
            return OuterOptimizerName(value)
        except ValueError as e:
            raise ConfigError(f"{where} = {e}") from None
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r}: expected true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} = {value!r}: expected an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} = {value!r}: expected a number")
        if not math.isfinite(value):
            raise ConfigError(f"{where} = {value}: expected a finite number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r}: expected a string")
        return value
    if origin in (list, tuple, Sequence):
        items = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} = {value!r}: expected a list")
        item = items[0] if len(set(items)) == 1 else Any
        return [coerce_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Mapping) and not isinstance(value, Mapping):
        raise ConfigError(f"{where} = {value!r}: expected a table")
    return value


def build_dataclass(
    cls: type, data: Mapping[str, Any], where: str, owner: str = "", *, table: bool = True
) -> Any:
    """`cls(**data)` with unknown keys and wrong types reported by name.

    Args:
        cls: A dataclass whose fields are the accepted keys.
        data: The keys given.
        where: Names the data: a recipe table (`"train"`: messages read `[train] unknown
            key ...` and `train.key = ...`) or, with `table=False`, a place such as a file
            and a field (`"f.toml: params.x"`: `f.toml: params.x: unknown key ...`).
        owner: Who reads the data (e.g. "the PPO learner"), for the message.
        table: Whether `where` is a recipe table.

    Returns:
        An instance of `cls`; keys not given take its defaults.

    Raises:
        ConfigError: An unknown key (with the known ones and a "did you mean") or a value
            of the wrong type.

    Examples:
        >>> from metarl.config import EvalConfig, build_dataclass
        >>> build_dataclass(EvalConfig, {"tasks": 50}, "eval").tasks
        50
        >>> build_dataclass(EvalConfig, {"task": 50}, "eval")
        Traceback (most recent call last):
        ...
        metarl.errors.ConfigError: [eval] unknown key 'task'; known keys: ...
    """
    head, field_of = (f"[{where}]", f"{where}.") if table else (f"{where}:", f"{where}: ")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{head} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        of = f" ({owner}'s settings)" if owner else ""
        raise ConfigError(
            f"{head}{of} unknown key {unknown[0]!r}; known keys: {', '.join(names)}"
            + did_you_mean(unknown[0], names)
        )
    return cls(**{k: coerce_value(v, hints[k], f"{field_of}{k}") for k, v in data.items()})


RECIPE_KEYS = ("description", "task", "model", "train", "eval", "learner")


def reject_non_finite(value: Any, where: str) -> None:
    """Refuse nan and inf anywhere in a recipe (TOML reads `nan` and `inf` as floats): no
    setting of any learner, task or network means anything when it is not finite, and one
    non-finite step size would only show up later, as a run of NaN weights.

    Args:
        value: a recipe's value (tables and lists are searched).
        where: how the message names its key.

    Raises:
        ConfigError: a nan or inf, naming the key.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} = {value}: expected a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            reject_non_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            reject_non_finite(v, f"{where}[{i}]")


def split_table(data: Any, section: str, common: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """`[train]` or `[eval]` split into the keys every learner reads (fields of `common`) and
    the supervised learner's (`SUPERVISED[section]`, type-checked here, so a wrong type is
    refused when the recipe is read whatever the learner). An unknown key is refused with
    both lists of known keys.

    Args:
        data: the table as read.
        section: "train" or "eval".
        common: the dataclass of the keys every learner reads.

    Returns:
        The common keys and the supervised learner's keys.

    Raises:
        ConfigError: an unknown key (both lists of known keys in the message), or a value
            of the wrong type.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"[{section}] must be a table, got {data!r}")
    own = SUPERVISED[section]
    own_names = {f.name for f in dataclasses.fields(own)}
    known = [f.name for f in dataclasses.fields(common)] + sorted(own_names)
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            f"[{section}] unknown key {unknown[0]!r}; known keys: {', '.join(known)}"
            + did_you_mean(unknown[0], known)
        )
    hints = typing.get_type_hints(own)
    given = {
        k: coerce_value(v, hints[k], f"{section}.{k}") for k, v in data.items() if k in own_names
    }
    return {k: v for k, v in data.items() if k not in own_names}, given


def forget_recorded_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """A run directory's recipe (`config.toml`, a checkpoint's config) as the current parser
    reads it. Earlier versions of metarl wrote every `[eval]` key into an RL run's config,
    the supervised learner's defaults included (`support_shots = 10`, `transductive = true`,
    ...) and `None` for the supervised `[train]` keys, which the RL learners now refuse as
    given: in an RL recipe (one with a `[learner]` table) a supervised-only key that holds its
    default or None is dropped, so those runs still resume and evaluate. A non-default value
    stays, and is refused by name.

    Args:
        data: the recipe as a dict (`config.toml` read).

    Returns:
        The same recipe without those recorded defaults.
    """
    if not isinstance(data.get("learner"), dict):
        return data
    out = dict(data)
    for table, cls in (("train", SupervisedSettings), ("eval", SupervisedEval)):
        values = out.get(table)
        if not isinstance(values, dict):
            continue
        kept = dict(values)
        for f in fields(cls):
            default = f.default.value if isinstance(f.default, enum.Enum) else f.default
            if f.name in kept and kept[f.name] in (default, None):
                del kept[f.name]
        out[table] = kept
    return out


def recipe_from_dict(data: dict[str, Any], source: str) -> Recipe:
    """Build and validate a recipe from plain values, as read from TOML.

    Args:
        data: The recipe's tables: `task` (with `name`), and optionally `model`, `train`,
            `eval`, `learner` and `description`.
        source: Where the data came from (a file, a catalog name); it starts every error
            message and is kept as `Recipe.source`.

    Returns:
        The typed recipe (enums for the algorithm and optimizers, floats for numbers).

    Raises:
        ConfigError: The first unknown key, wrong type or value out of range, named with
            its table (`train.meta_batch = 0: must be a positive integer`).

    Examples:
        >>> from metarl.config import recipe_from_dict
        >>> recipe = recipe_from_dict(
        ...     {"task": {"name": "sine"}, "train": {"algorithm": "maml", "inner_steps": 1}},
        ...     source="example",
        ... )
        >>> recipe.train.algorithm.second_order, recipe.eval.tasks
        (True, 1000)
        >>> recipe_from_dict({"task": {"name": "sine"}, "train": {"inner_stepz": 1}}, "example")
        Traceback (most recent call last):
        ...
        metarl.errors.ConfigError: example: [train] unknown key 'inner_stepz'; known keys: ...
    """
    try:
        reject_non_finite(data, "")
        unknown = sorted(set(data) - set(RECIPE_KEYS))
        if unknown:
            raise ConfigError(
                f"unknown top-level key {unknown[0]!r}; known keys: {', '.join(RECIPE_KEYS)}"
            )
        task = data.get("task")
        if not isinstance(task, dict) or not isinstance(task.get("name"), str):
            raise ConfigError('[task] needs name = "<distribution>" (see `metarl tasks list`)')
        model = data.get("model", {})
        if not isinstance(model, dict):
            raise ConfigError(f"[model] must be a table, got {model!r}")
        learner = data.get("learner", {})
        if not isinstance(learner, dict):
            raise ConfigError(f"[learner] must be a table, got {learner!r}")
        common = {"train": TrainConfig, "eval": EvalConfig}
        tables = {name: split_table(data.get(name, {}), name, cls) for name, cls in common.items()}
        recipe = Recipe(
            task=dict(task),
            model=dict(model),
            learner=dict(learner),
            train=build_dataclass(TrainConfig, tables["train"][0], "train"),
            eval=build_dataclass(EvalConfig, tables["eval"][0], "eval"),
            supervised={name: given for name, (_, given) in tables.items() if given},
            description=str(data.get("description", "")),
            source=source,
        )
        recipe.validate()
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return recipe


def load_recipe_file(path: Path) -> Recipe:
    """Read a recipe from a TOML file, typed and checked (`recipe_from_dict`).

    A run directory's `config.toml` is a recipe too, and so is every file of the catalog
    (`metarl.registry.resolve_recipe` finds those by name).

    Args:
        path: The TOML file.

    Returns:
        The recipe, with `source` set to `path`.

    Raises:
        ConfigError: A key that does not exist, a value of the wrong type, out of range or
            not finite; the message names the file and the key. A file that cannot be read
            or parsed is a `UserError` naming it.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from metarl.config import load_recipe_file
        >>> path = Path(tempfile.mkdtemp()) / "my-sine.toml"
        >>> _ = path.write_text('[task]\\nname = "sine"\\n[train]\\nmeta_iterations = 20\\n')
        >>> recipe = load_recipe_file(path)
        >>> recipe.task_name, recipe.train.meta_iterations, recipe.train.algorithm.value
        ('sine', 20, 'reptile')
    """
    return recipe_from_dict(read_toml(path), source=str(path))


def with_overrides(recipe: Recipe, section: str, **values: Any) -> Recipe:
    """A copy of `recipe` with some settings of one table replaced, checked again.

    This is what the command line's options (`--meta-iterations`, `--algorithm`, ...) do.

    Args:
        recipe: The recipe to start from (left unchanged).
        section: The table: "train", "eval" or "learner".
        **values: Settings of that table by name; `None` means "not given" and is skipped.

    Returns:
        The new recipe (the same object when every value is `None`).

    Raises:
        ConfigError: A value refused as in a recipe file.

    Examples:
        >>> from metarl.config import recipe_from_dict, with_overrides
        >>> recipe = recipe_from_dict({"task": {"name": "sine"}}, source="example")
        >>> short = with_overrides(recipe, "train", meta_iterations=10, seed=None)
        >>> short.train.meta_iterations, recipe.train.meta_iterations
        (10, 1000)
    """
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        return recipe
    data = recipe.to_dict()
    data[section].update(
        {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in given.items()}
    )
    return recipe_from_dict(data, source=recipe.source)
