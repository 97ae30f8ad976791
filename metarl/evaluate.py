"""Evaluating a run: its recipe and meta-trained parameters, ready to adapt to held-out tasks.

The evaluation tasks are a pure function of `eval.seed`, so numbers compare across runs and
across initializations: `load_run(..., init=...)` evaluates a run's recipe from its
meta-trained weights ("meta"), from the recipe's seed initialization without any training
("random"), or from the weights of another run of the same task and model ("joint": a
multi-task baseline trained with the same budget), or from a model shipped with metarl
("pretrained:NAME", `metarl.zoo`), always with the run's own protocol. A pretrained model needs
no run: without one it is evaluated with the recipe it was trained with.

`evaluate_run` is what `metarl eval` does: the adaptation curve in the recipe's mode (for
supervised tasks, transductive or not), and `plot_evaluation` its PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from metarl import zoo
from metarl.config import Recipe, recipe_from_dict
from metarl.curves import Curve
from metarl.errors import UserError
from metarl.learners import build_meta_learner
from metarl.protocol import MetaLearner
from metarl.run import RunDir

if TYPE_CHECKING:
    from metarl.learners.supervised import SupervisedMetaLearner

INITS = ("meta", "random", "joint", "pretrained:NAME")


def load_run(
    path: Path | None,
    device: torch.device,
    init: str = "meta",
    joint_run: Path | None = None,
) -> tuple[Recipe, MetaLearner]:
    """The recipe and meta-learner of a run directory, its model holding the initialization
    `init` (one of `INITS`; "joint" takes its weights from the run directory `joint_run`,
    "pretrained:NAME" from the shipped model NAME, whose own recipe is used when `path` is
    None)."""
    pretrained = init.removeprefix(zoo.PREFIX) if init.startswith(zoo.PREFIX) else None
    if init not in INITS[:3] and not pretrained:
        raise UserError(f"--init {init!r}: expected one of {', '.join(INITS)}")
    if (init == "joint") != (joint_run is not None):
        raise UserError("--joint-run DIR goes with --init joint (and only with it)")
    if pretrained:
        weights, info = zoo.load_weights(pretrained)
        if path is None:
            recipe = recipe_from_dict(info["recipe"], source=init)
        else:
            recipe = RunDir.open(path).recipe()
        meta = build_meta_learner(recipe, device)
        _load_matching(meta, weights, _mismatch(f"--init {init}", path))
        return recipe, meta
    if path is None:
        raise UserError("give a RUN_DIR (a run directory written by `metarl train`)")
    run = RunDir.open(path)
    recipe = run.recipe()
    meta = build_meta_learner(recipe, device)
    if init == "meta":
        weights = run.load_checkpoint(device).model
        _load_matching(
            meta,
            weights,
            f"{path}: its config.toml describes another model than its checkpoint.pt "
            "(edited after training?); restore it",
        )
    elif joint_run is not None:
        joint = RunDir.open(joint_run)
        if joint.recipe().task != recipe.task:
            raise UserError(
                f"--joint-run {joint_run}: its [task] differs from the one of {path} "
                "(another distribution, or recorded under other versions): not comparable"
            )
        weights = joint.load_checkpoint(device).model
        _load_matching(meta, weights, _mismatch(f"--joint-run {joint_run}", path))
    return recipe, meta


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
    init: str
    transductive: bool | None
    """The query sets' batching for supervised tasks; None for RL (no such choice)."""
    others: list[Curve] = field(default_factory=list)
    """Further metrics beside the headline `curve` (Meta-World: the return beside success)."""

    def mode(self) -> str:
        """ ", transductive" / ", non-transductive" for a title, "" for RL."""
        if self.transductive is None:
            return ""
        return ", transductive" if self.transductive else ", non-transductive"

    @property
    def source(self) -> str:
        """The run directory, or the shipped model evaluated without one."""
        return str(self.run_dir) if self.run_dir is not None else self.init

    def to_json(self, joint_run: Path | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "run": self.source,
            "task": self.recipe.task_name,
            "init": self.init,
        }
        if self.transductive is not None:
            payload["transductive"] = self.transductive
        payload.update(self.curve.to_json())
        for other in self.others:
            payload[other.metric] = other.to_json()
        if joint_run is not None:
            payload["joint_run"] = str(joint_run)
        return payload


def evaluate_run(
    path: Path | None,
    device: torch.device,
    *,
    tasks: int | None = None,
    steps: list[int] | None = None,
    transductive: bool | None = None,
    init: str = "meta",
    joint_run: Path | None = None,
) -> Evaluation:
    """The adaptation curve of the run in `path` on `tasks` held-out tasks (default: the
    recipe's eval settings). `transductive` applies to supervised tasks only (default: the
    recipe's `eval.transductive`)."""
    if tasks is not None and tasks < 1:
        raise UserError(f"--tasks {tasks}: must be a positive integer")
    recipe, meta = load_run(path, device, init=init, joint_run=joint_run)
    n_tasks = tasks if tasks is not None else recipe.eval.tasks
    steps = steps or recipe.eval.steps
    if meta.dist.kind == "supervised":
        mode = recipe.eval.transductive if transductive is None else transductive
        curve = cast("SupervisedMetaLearner", meta).curve(steps, n_tasks, transductive=mode)
        return Evaluation(path, recipe, meta, curve, init, mode)
    if transductive is not None:
        raise UserError(
            f"--transductive/--no-transductive: only for supervised tasks, not {recipe.task_name!r}"
        )
    # RL: every metric the distribution scores (Meta-World: success, then return)
    curves = getattr(meta, "curves", None)
    if curves is None:
        return Evaluation(path, recipe, meta, meta.curve(steps, n_tasks), init, None)
    curve, *others = curves(steps, n_tasks).values()
    return Evaluation(path, recipe, meta, curve, init, None, others)


def plot_evaluation(evaluation: Evaluation, path: Path) -> list[Path]:
    """The curve as a PNG at `path`, and for sine regression the fitted waves beside it
    (`<stem>-fits.png`)."""
    from metarl.plots import plot_curve, plot_sine_fits
    from metarl.sine import SineDistribution

    e = evaluation
    written = [plot_curve(e.curve, path, title=f"{e.recipe.task_name}: {e.source}")]
    if isinstance(e.meta.dist, SineDistribution):
        fits = path.with_name(path.stem + "-fits.png")
        meta = cast("SupervisedMetaLearner", e.meta)
        written.append(plot_sine_fits(meta, fits, steps=max(e.curve.steps)))
    return written
