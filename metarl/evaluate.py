"""Evaluating a run: its recipe and meta-trained parameters, ready to adapt to held-out tasks.

The evaluation tasks are a pure function of `eval.seed`, so numbers compare across runs and
across initializations: `load_run(..., init=...)` evaluates a run's recipe from its
meta-trained weights ("meta"), from the recipe's seed initialization without any training
("random"), or from the weights of another run of the same task and model ("joint": a
multi-task baseline trained with the same budget), or from a model shipped with metarl
("pretrained:NAME", `metarl.zoo`), always with the run's own protocol. A pretrained model needs
no run: without one it is evaluated with the recipe it was trained with.

`evaluate_run` is what `metarl eval` does: the adaptation curve in the recipe's mode (for
supervised tasks, transductive or not); `compare_runs` evaluates several runs of a task and
the baselines beside them, and `plot_comparison` draws them on one PNG.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict, Unpack

import torch

from metarl import zoo
from metarl.config import Algorithm, Recipe, recipe_from_dict
from metarl.curves import Curve
from metarl.errors import UserError
from metarl.learners import build_meta_learner
from metarl.learners.supervised import SupervisedMetaLearner
from metarl.protocol import MetaLearner
from metarl.run import RunDir


class Init(str, enum.Enum):
    """Where an evaluation adapts from (`--init`)."""

    META = "meta"
    """The run's meta-trained weights."""
    RANDOM = "random"
    """The recipe's seed initialization, without training."""
    JOINT = "joint"
    """The weights of another run of the same task and model (`--joint-run`)."""
    PRETRAINED = "pretrained"
    """A model shipped with metarl (`pretrained:NAME`, `metarl.zoo`)."""

    @property
    def label(self) -> str:
        """How a figure names it."""
        return INIT_LABELS.get(self, self.value)


INIT_LABELS = {
    Init.META: "meta-trained",
    Init.RANDOM: "random init",
    Init.JOINT: "joint training",
}
INITS = ("meta", "random", "joint", "pretrained:NAME")
"""What `--init` takes."""


@dataclass(frozen=True)
class Start:
    """An evaluation's `init`, typed: which `Init`, and the shipped model's name for
    `Init.PRETRAINED`. `str()` gives it back as `--init` spells it."""

    init: Init
    pretrained: str | None = None

    @classmethod
    def parse(cls, text: str | Start) -> Start:
        """`--init`'s value, or a one-line refusal naming what it takes."""
        if isinstance(text, Start):
            return text
        if text.startswith(zoo.PREFIX) and text != zoo.PREFIX:
            return cls(Init.PRETRAINED, text.removeprefix(zoo.PREFIX))
        if text in (Init.META, Init.RANDOM, Init.JOINT):
            return cls(Init(text))
        raise UserError(f"--init {text!r}: expected one of {', '.join(INITS)}")

    def __str__(self) -> str:
        if self.pretrained is not None:
            return zoo.PREFIX + self.pretrained
        return self.init.value

    @property
    def label(self) -> str:
        """How a figure names it (a shipped model: `pretrained:NAME`)."""
        return str(self) if self.pretrained is not None else self.init.label


Progress = Callable[[str, float, float], None]
"""`progress(label, done, total)`: how far the evaluation `label` is, in tasks."""


class EvalOptions(TypedDict, total=False):
    """What `compare_runs` passes on to every `evaluate_run` it makes (see there)."""

    tasks: int | None
    steps: list[int] | None
    transductive: bool | None
    progress: Progress | None


def load_run(
    path: Path | None,
    device: torch.device,
    init: str | Start = "meta",
    joint_run: Path | None = None,
) -> tuple[Recipe, MetaLearner, int | None]:
    """The recipe and meta-learner of a run directory, its model holding the initialization
    `init` (one of `INITS`; "joint" takes its weights from the run directory `joint_run`,
    "pretrained:NAME" from the shipped model NAME, whose own recipe is used when `path` is
    None), and the meta-iteration of the checkpoint those weights come from (None for the
    random and shipped inits): a run still training is evaluated at the checkpoint on disk.

    Args:
        path: A run directory (None only with a "pretrained:NAME" `init`).
        device: Where the model goes.
        init: "meta" (the run's checkpoint), "random", "joint" or "pretrained:NAME".
        joint_run: The baseline run whose weights `init = "joint"` takes.

    Returns:
        The recipe, the meta-learner holding the weights, and their checkpoint's iteration.

    Raises:
        UserError: An unknown `init`, a missing or damaged run, or weights that do not fit
            the run's model.
    """
    start = Start.parse(init)
    pretrained = start.pretrained
    if start.init is Init.JOINT and joint_run is None:
        raise UserError(
            "--init joint needs --joint-run DIR (a run of the same recipe trained as a baseline)"
        )
    if pretrained:
        weights, info = zoo.load_weights(pretrained)
        if path is None:
            recipe = recipe_from_dict(info["recipe"], source=str(start))
        else:
            recipe = RunDir.open(path).recipe()
        meta = build_meta_learner(recipe, device)
        _load_matching(meta, weights, _mismatch(f"--init {start}", path))
        return recipe, meta, None
    if path is None:
        raise UserError("give a RUN_DIR (a run directory written by `metarl train`)")
    run = RunDir.open(path)
    recipe = run.recipe()
    meta = build_meta_learner(recipe, device)
    iteration = None
    if start.init is Init.META:
        checkpoint = run.load_checkpoint(device)
        iteration = checkpoint.iteration
        _load_matching(
            meta,
            checkpoint.model,
            f"{path}: its config.toml describes another model than its checkpoint.pt "
            "(config.toml edited after training, or the checkpoint damaged); restore it",
        )
        meta.load_state_dict(checkpoint.learner)  # what the learner learned besides phi
        # (Meta-SGD for RL: the inner rates its adaptation steps with)
    elif start.init is Init.JOINT and joint_run is not None:
        joint = RunDir.open(joint_run)
        if joint.recipe().task != recipe.task:
            raise UserError(
                f"--joint-run {joint_run}: its [task] differs from the one of {path} "
                "(another distribution, or recorded under other versions): not comparable"
            )
        joint_checkpoint = joint.load_checkpoint(device)
        iteration = joint_checkpoint.iteration
        _load_matching(meta, joint_checkpoint.model, _mismatch(f"--joint-run {joint_run}", path))
    return recipe, meta, iteration


def _mismatch(what: str, path: Path | None) -> str:
    return f"{what}: its model does not match the one of {path} (train it from the same recipe)"


def _load_matching(meta: MetaLearner, weights: dict[str, torch.Tensor], error: str) -> None:
    """Load weights into the run's model, refusing other names or shapes with `error`
    (`load_state_dict` would raise a size-mismatch traceback)."""
    mine = meta.model.state_dict()
    if {k: tuple(v.shape) for k, v in weights.items()} != {
        k: tuple(v.shape) for k, v in mine.items()
    }:
        raise UserError(error)
    meta.model.load_state_dict(weights)


@dataclass
class Evaluation:
    """An adaptation curve of a run and how it was measured."""

    run_dir: Path | None
    """None for a shipped model evaluated with its own recipe (`init` names it)."""
    recipe: Recipe
    meta: MetaLearner
    curve: Curve
    init: Start
    transductive: bool | None
    """The query sets' batching for supervised tasks; None for RL (no such choice)."""
    others: list[Curve] = field(default_factory=list)
    """Further metrics beside the headline `curve` (Meta-World: the return beside success)."""
    iteration: int | None = None
    """The meta-iteration of the checkpoint evaluated (None: random init, shipped model)."""

    def mode(self) -> str:
        """ ", transductive" / ", non-transductive" for a title of a classification; "" for
        regression and RL, where the query batching changes nothing."""
        if self.transductive is None or self.curve.metric != "accuracy":
            return ""
        return ", transductive" if self.transductive else ", non-transductive"

    @property
    def source(self) -> str:
        """The run directory, or the shipped model evaluated without one."""
        return str(self.run_dir) if self.run_dir is not None else str(self.init)

    def to_json(self, joint_run: Path | None = None) -> dict[str, Any]:
        """What `metarl eval --json` prints for this run: the contract scripts read.

        Args:
            joint_run: the `--joint-run` the curve came from, recorded with `--init joint`.

        Returns:
            `run`, `task`, `init`, the `iteration` and `transductive` where they apply, the
            headline curve's fields (`metric`, `steps`, `mean`, `ci95`, `n_tasks`, and
            `env_steps` for RL: `metarl.curves.Curve.to_json`), and each other metric's
            curve under its name.
        """
        payload: dict[str, Any] = {
            "run": self.source,
            "task": self.recipe.task_name,
            "init": str(self.init),
        }
        if self.iteration is not None:
            payload["iteration"] = self.iteration
        if self.transductive is not None:
            payload["transductive"] = self.transductive
        payload.update(self.curve.to_json())
        for other in self.others:
            payload[other.metric] = other.to_json()
        if joint_run is not None and self.init.init is Init.JOINT:
            payload["joint_run"] = str(joint_run)
        return payload


def evaluate_run(
    path: Path | None,
    device: torch.device,
    *,
    tasks: int | None = None,
    steps: list[int] | None = None,
    transductive: bool | None = None,
    init: str | Start = "meta",
    joint_run: Path | None = None,
    progress: Progress | None = None,
) -> Evaluation:
    """The adaptation curve of the run in `path` on `tasks` held-out tasks (default: the
    recipe's eval settings): what `metarl eval RUN_DIR` prints.

    Args:
        path: A run directory (None with `init` "pretrained:NAME": the shipped model on its
            own recipe).
        device: Where the adaptation runs.
        tasks: Held-out tasks (default: the recipe's `eval.tasks`).
        steps: Numbers of adaptation steps to report (default: `eval.steps`).
        transductive: Supervised tasks only (default: the recipe's `eval.transductive`).
        init: The initialization adapted from, as for `load_run`.
        joint_run: The baseline run of `init = "joint"`.
        progress: `progress(label, done, total)` hears how many of the tasks are adapted
            (RL: fractions of tasks, rollout by rollout).

    Returns:
        The curve (mean and 95% CI of the metric per number of steps) and how it was made.

    Raises:
        UserError: `tasks` below 1, `transductive` for an RL task, or as `load_run`.

    Examples:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from metarl.config import with_overrides
        >>> from metarl.evaluate import evaluate_run
        >>> from metarl.registry import resolve_recipe
        >>> from metarl.train import MetaTrainer
        >>> recipe = with_overrides(resolve_recipe("sine"), "train", meta_iterations=2)
        >>> out = Path(tempfile.mkdtemp()) / "sine"
        >>> _ = MetaTrainer.start(recipe, out, torch.device("cpu")).fit(progress=False)
        >>> result = evaluate_run(out, torch.device("cpu"), tasks=20, steps=[0, 5])
        >>> result.curve.metric, result.curve.steps, result.curve.n_tasks
        ('mse', [0, 5], 20)
        >>> result.curve.mean[1] < result.curve.mean[0]  # 5 steps on the support set help
        True
    """
    if tasks is not None and tasks < 1:
        raise UserError(f"--tasks {tasks}: must be a positive integer")
    init = Start.parse(init)
    recipe, meta, iteration = load_run(path, device, init=init, joint_run=joint_run)
    n_tasks = tasks if tasks is not None else recipe.eval.tasks
    steps = steps or recipe.eval.steps
    label = f"{init}" if path is None else f"{path.name} ({init})"
    report = None if progress is None else functools.partial(progress, label)
    if isinstance(meta, SupervisedMetaLearner):
        mode = recipe.supervised_eval().transductive if transductive is None else transductive
        curve = meta.curve(steps, n_tasks, transductive=mode, progress=report)
        return Evaluation(path, recipe, meta, curve, init, mode, iteration=iteration)
    if transductive is not None:
        raise UserError(
            f"--transductive/--no-transductive: only for supervised tasks, not {recipe.task_name!r}"
        )
    # RL: every metric the distribution scores (Meta-World: success, then return)
    curve, *others = meta.curves(steps, n_tasks, progress=report).values()
    return Evaluation(path, recipe, meta, curve, init, None, others, iteration)


@dataclass
class Comparison:
    """The curves `metarl eval` shows together: one per run (all of one task, same protocol),
    and the baselines of the first run on the same tasks (random init, joint training)."""

    runs: list[Evaluation]
    baselines: list[Evaluation]
    joint_run: Path | None = None

    def paired(self) -> dict[str, list[tuple[float, float]]]:
        """The first run's curve minus each other run's and each baseline's, task by task
        (all were adapted on the same held-out tasks and seeds): `label -> [(mean, ci95)]`
        per step. A difference whose CI excludes 0 is a difference, not task-to-task noise."""
        first = self.runs[0]
        others = [(e.source, e) for e in self.runs[1:]]
        others += [(b.init.label, b) for b in self.baselines]
        # RL² (episodes of a trial) against a gradient learner (updates): step t of each is
        # another amount of experience, so a difference at the same t means nothing
        return {
            f"{first.source} - {label}": first.curve.paired_difference(e.curve)
            for label, e in others
            if is_rl2(e.recipe) == is_rl2(first.recipe)
        }

    def to_json(self) -> dict[str, Any]:
        """One run: its object, plus `baselines` when any; several: `task`, `runs`, ...;
        `paired`: the first run minus each other curve, per task (mean, 95% CI per step)."""
        joint = self.joint_run
        baselines = [b.to_json(joint) for b in self.baselines]
        if len(self.runs) == 1:
            first = self.runs[0]
            payload = first.to_json(joint)
        else:
            payload = {
                "task": self.runs[0].recipe.task_name,
                "runs": [e.to_json(joint) for e in self.runs],
            }
        if baselines:
            payload["baselines"] = baselines
        paired = self.paired()
        if paired:
            payload["paired"] = {
                label: {"mean": [m for m, _ in d], "ci95": [c for _, c in d]}
                for label, d in paired.items()
            }
        return payload


def compare_runs(
    paths: list[Path | None],
    device: torch.device,
    *,
    init: str | Start = "meta",
    joint_run: Path | None = None,
    random_baseline: bool = False,
    **options: Unpack[EvalOptions],
) -> Comparison:
    """Evaluate every run in `paths` from `init` on the same held-out tasks, and for the first
    the baselines: random init when `random_baseline`, the weights of `joint_run` when given
    (each unless it is `init` itself). Runs of different tasks are refused before any work.
    `paths` may be `[None]` with `init` "pretrained:NAME" (the shipped model with its own
    recipe; no baselines then, as they need a run).

    Args:
        paths: Run directories of one task.
        device: Where the adaptation runs.
        init: As for `evaluate_run`.
        joint_run: A joint-training run of the same task, evaluated as a baseline.
        random_baseline: Also evaluate the first run's network from a random init.
        **options: `tasks`, `steps`, `transductive` and `progress`, as for `evaluate_run`.

    Returns:
        The runs' evaluations and the baselines', all on the same held-out tasks, so their
        differences are paired task by task (`Comparison.paired`).

    Raises:
        UserError: Runs of different tasks, or as `evaluate_run`.
    """
    init = Start.parse(init)
    tasks_of = [RunDir.open(p).recipe().task_name if p is not None else "" for p in paths]
    for p, task in zip(paths[1:], tasks_of[1:], strict=True):
        if task != tasks_of[0]:
            raise UserError(
                f"{p}: its task {task!r} differs from {tasks_of[0]!r} of {paths[0]}; "
                "compare runs of one task"
            )
    runs = [
        evaluate_run(
            p,
            device,
            init=init,
            joint_run=joint_run if init.init is Init.JOINT else None,
            **options,
        )
        for p in paths
    ]
    # the baselines on exactly the first run's tasks and steps
    first = runs[0]
    same: EvalOptions = {**options, "tasks": first.curve.n_tasks, "steps": first.curve.steps}
    others: list[tuple[Start, Path | None]] = []
    if random_baseline:
        others.append((Start(Init.RANDOM), None))
    if joint_run is not None:
        others.append((Start(Init.JOINT), joint_run))
    if paths[0] is None:
        others = []
    baselines = [
        evaluate_run(paths[0], device, init=b_init, joint_run=b_run, **same)
        for b_init, b_run in others
        if b_init != init
    ]
    return Comparison(runs, baselines, joint_run)


def algorithm_label(recipe: Recipe) -> str:
    """The algorithm as a figure names it: `maml + trpo` (MAML-RL) and `maml + promp` (ProMP)
    where the outer step is the algorithm's own, else the algorithm alone."""
    outer = recipe.train.outer_optimizer
    return f"{recipe.train.algorithm.value}{f' + {outer.value}' if outer.learner_steps else ''}"


def is_rl2(recipe: Recipe) -> bool:
    """A run of RL² (adapts by episodes of a trial, not by gradient steps)."""
    return recipe.train.algorithm is Algorithm.RL2


ENV_STEPS_AXIS = (
    "env steps spent adapting to the task\n(RL²: the trial's earlier episodes; "
    "gradient learners: the updates' rollouts)"
)


def adaptation_axis(comparison: Comparison) -> tuple[str, list[list[float]] | None]:
    """The x axis of `plot_comparison`: its label, and each curve's positions (runs, then
    baselines) where they are not the step counts. RL² beside a gradient learner: the env
    steps spent adapting (`Curve.env_steps`), the one axis on which an episode of a trial
    and a policy-gradient update mean the same experience; RL² alone: episodes of experience
    in the trial; a gradient learner alone: its updates (supervised: inner steps)."""
    first = comparison.runs[0]
    if first.meta.dist.kind != "rl":
        return "inner steps on the support set", None
    evaluations = comparison.runs + comparison.baselines
    families = {is_rl2(e.recipe) for e in evaluations}
    if len(families) == 1:
        if is_rl2(first.recipe):
            return "episodes of experience in the trial (RL²)", None
        return "policy-gradient updates on the task", None
    positions = []
    for e in evaluations:
        if e.curve.env_steps is None:
            raise UserError(f"{e.source}: its curve does not count env steps; re-evaluate it")
        positions.append(e.curve.env_steps)
    return ENV_STEPS_AXIS, positions


def plot_comparison(comparison: Comparison, path: Path) -> list[Path]:
    """All curves of `comparison` on one PNG at `path` (the metric against inner steps, or
    for RL against the axis of `adaptation_axis`: env steps where RL² meets a gradient
    learner); for one sine run the fitted waves beside it (`<stem>-fits.png`)."""
    from metarl.distributions.sine import SineDistribution
    from metarl.plots import plot_curves

    runs, first = comparison.runs, comparison.runs[0]
    series = []
    for e in runs:
        what = f"{e.init.label}, {algorithm_label(e.recipe)}"
        name = e.run_dir.name if e.run_dir is not None else str(e.init)
        series.append((f"{name} ({what})" if len(runs) > 1 else what, e.curve))
    xlabel, positions = adaptation_axis(comparison)
    # names, not absolute paths, in a figure that is shared
    for b in comparison.baselines:
        joint = comparison.joint_run
        extra = f" ({joint.name})" if b.init.init is Init.JOINT and joint else " (no meta-training)"
        if positions is not None:  # families mixed: say whose baseline it is
            extra = f"{extra[:-1]}, {algorithm_label(b.recipe)})"
        series.append((b.init.label + extra, b.curve))
    one = first.run_dir.name if first.run_dir is not None else str(first.init)
    where = one if len(runs) == 1 else f"{len(runs)} runs"
    title = f"{first.recipe.task_name}: {where}, held-out tasks{first.mode()}"
    written = [plot_curves(series, path, title=title, xlabel=xlabel, x=positions)]
    meta = first.meta
    if (
        len(runs) == 1
        and isinstance(meta, SupervisedMetaLearner)
        and isinstance(meta.dist, SineDistribution)
    ):
        fits = path.with_name(path.stem + "-fits.png")
        written.append(sine_fits(meta, fits, steps=max(first.curve.steps)))
    return written


def sine_fits(meta: SupervisedMetaLearner, path: Path, steps: int = 10, n: int = 4) -> Path:
    """`n` held-out sine tasks adapted `steps` steps from the run's phi, drawn by
    `plots.plot_sine_fits` (the predictions before and after beside the true waves)."""
    from metarl.plots import plot_sine_fits

    phi, learner = meta.evaluation_start()
    batch = meta.eval_batch(n).to(meta.device)
    adapted = learner.adapt(phi, batch, steps)
    before = learner.predict({k: v.expand(n, *v.shape) for k, v in phi.items()}, batch.query_x)
    after = learner.predict(adapted, batch.query_x)
    return plot_sine_fits(batch, before, after, path, steps)
