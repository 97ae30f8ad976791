"""Meta-training: the one loop of every algorithm (Reptile, first-order MAML, MAML, Meta-SGD
and iMAML) over a run directory.

The loop emits events to callbacks (progress bars live in the CLI, not here). Tasks of
iteration `i` come from a generator seeded by `(seed, i)` alone, so a resumed run sees the same
tasks as an uninterrupted one, and splitting the meta-batch across torchrun ranks does not
change which tasks an iteration draws.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from metarl import algorithms
from metarl.config import Recipe, with_overrides
from metarl.distributed import MetricsLayout, World
from metarl.errors import UserError
from metarl.learners import build_meta_learner
from metarl.outer import build_outer_step, checkpoint_state
from metarl.protocol import MetaStep, Params, Split, UpdatesAcrossRanks, task_rng
from metarl.run import Checkpoint, RunDir, check_shapes
from metarl.tensorboard_log import ScalarLog
from metarl.tensorboard_log import enabled as tensorboard_enabled


class TrainingInterrupted(Exception):
    """Raised after a stop was requested (Ctrl-C, SIGTERM) and the checkpoint was written."""

    def __init__(self, iteration: int, run_dir: Path, signum: int = signal.SIGINT) -> None:
        super().__init__(f"interrupted after iteration {iteration}")
        self.iteration = iteration
        self.run_dir = run_dir
        self.signum = int(signum)
        """The signal that asked for the stop; the CLI exits 128 + it, as a shell would."""


class TrainingDiverged(Exception):
    """Raised when an outer step left a non-finite loss or parameter; nothing non-finite was
    written over the last checkpoint, which stays the run's last finite state."""

    def __init__(self, iteration: int, what: str, run_dir: Path, checkpoint: int | None) -> None:
        kept = (
            f"the last finite checkpoint (iteration {checkpoint}) is kept in {run_dir}"
            if checkpoint is not None
            else f"no checkpoint had been written yet: lower them in {run_dir / 'config.toml'}, "
            f"then `metarl train --resume {run_dir}` starts the run over"
        )
        super().__init__(
            f"training diverged at iteration {iteration} (not finite: {what}); lower "
            f"train.inner_lr or train.meta_step; {kept}"
        )
        self.iteration = iteration
        self.checkpoint = checkpoint


class Callback(Protocol):
    """What `MetaTrainer.fit` tells as it trains (SB3's `BaseCallback`, without a base class:
    any object with these three methods). Only rank 0 hears them; the CLI's progress bar is
    one (`metarl.progress.ProgressCallback`). To stop early, call `trainer.request_stop()`
    from `on_iteration`: the iteration ends, a checkpoint is written and `fit` raises
    `TrainingInterrupted`.

    Examples:
        A callback that keeps every iteration's loss before adaptation:

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from metarl.config import with_overrides
        >>> from metarl.registry import resolve_recipe
        >>> from metarl.train import MetaTrainer
        >>> class Losses:
        ...     def __init__(self):
        ...         self.before = []
        ...     def on_start(self, trainer):
        ...         pass
        ...     def on_iteration(self, trainer, metrics):
        ...         self.before.append(metrics["loss_before"])
        ...     def on_end(self, trainer):
        ...         pass
        >>> losses = Losses()
        >>> recipe = with_overrides(resolve_recipe("sine"), "train", meta_iterations=3)
        >>> out = Path(tempfile.mkdtemp()) / "sine"
        >>> trainer = MetaTrainer.start(recipe, out, torch.device("cpu"), callbacks=[losses])
        >>> _ = trainer.fit(progress=False)
        >>> len(losses.before)
        3
    """

    def on_start(self, trainer: MetaTrainer) -> None:
        """Before the first iteration of this `fit` (also when a run is resumed).

        Args:
            trainer: the trainer (its `iteration` is where this `fit` starts).
        """
        ...

    def on_iteration(self, trainer: MetaTrainer, metrics: dict[str, float]) -> None:
        """After every meta-iteration, logged or not.

        Args:
            trainer: the trainer (its `iteration` counts this one).
            metrics: the iteration's metrics, by the names `metrics.jsonl` uses
                (`loss_before` and the algorithm's loss after adapting, or the returns for
                RL; `iteration`, `elapsed_s`, ...).
        """
        ...

    def on_end(self, trainer: MetaTrainer) -> None:
        """After the last iteration, once the final checkpoint is written (not after a stop
        or a divergence, which raise).

        Args:
            trainer: the trainer.
        """
        ...


@dataclass
class MetaTrainer:
    """Runs (or continues) a run directory's meta-training: what `metarl train` does.

    Build one with `start` (a new run directory) or `resume` (an existing one), then `fit`.

    Examples:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from metarl.config import with_overrides
        >>> from metarl.registry import resolve_recipe
        >>> from metarl.train import MetaTrainer
        >>> recipe = with_overrides(resolve_recipe("sine"), "train", meta_iterations=3)
        >>> out = Path(tempfile.mkdtemp()) / "sine"
        >>> trainer = MetaTrainer.start(recipe, out, torch.device("cpu"))
        >>> model = trainer.fit(progress=False)
        >>> trainer.iteration, [(out / f).is_file() for f in ("config.toml", "checkpoint.pt")]
        (3, [True, True])
    """

    run: RunDir
    """The run directory (recipe, metrics, checkpoint)."""
    recipe: Recipe
    """What is trained."""
    device: torch.device
    """Where the model and the inner loop run."""
    callbacks: Sequence[Callback] = ()
    """Told of the start, every iteration's metrics and the end (`Callback`)."""
    world: World = field(default_factory=World)
    """This process's rank among those sharing the meta-batch (one process: rank 0 of 1)."""
    iteration: int = 0
    """Meta-iterations completed so far."""
    history: list[dict[str, float]] = field(default_factory=list)
    _stop_signal: int | None = None
    """The signal that asked for a stop after the current iteration (None: none asked)."""
    _stop_agreed: bool = False
    """Some rank had a stop request when the last meta-iteration's deltas were summed."""
    diverged: str | None = None
    """What was not finite after the last outer step (a loss, a parameter), or None."""
    checkpoint_iteration: int | None = None
    """The iteration of the checkpoint on disk (None before the first one)."""
    train_s: float = 0.0
    """Seconds of training so far, every session of a resumed run included (`elapsed_s` in
    the metrics counts this session's only); logged as `train_s`, kept in the checkpoint."""
    _saved_at: float = field(default_factory=time.monotonic)
    """When the last checkpoint was written (or training started): for checkpoint_seconds."""

    def __post_init__(self) -> None:
        if self.world.size > self.recipe.train.meta_batch:
            raise UserError(
                f"WORLD_SIZE={self.world.size}: more ranks than train.meta_batch = "
                f"{self.recipe.train.meta_batch} tasks; use at most that many ranks"
            )
        self.meta = build_meta_learner(self.recipe, self.device)
        if isinstance(self.meta, UpdatesAcrossRanks):
            self.meta.join_ranks(self.world.all_reduce_sum)
        self.model = self.meta.model
        self.names = [n for n, _ in self.model.named_parameters()]
        # refused before a run is created
        self.tensorboard = tensorboard_enabled(self.recipe, self.run.path)
        self.outer = build_outer_step(self.recipe, self.meta)
        """The recipe's `train.outer_optimizer`, with its state (checkpointed)."""

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        recipe: Recipe,
        out: Path,
        device: torch.device,
        callbacks: Sequence[Callback] = (),
        world: World | None = None,
    ) -> MetaTrainer:
        """A new run in `out`, created by rank 0 once every rank has checked it is free and
        built its model and learner (so a bad task or learner setting leaves no directory).

        Args:
            recipe: What to train (`metarl.registry.resolve_recipe`, `metarl.config`).
            out: The run directory to create; it must not exist or must be empty.
            device: Where the model and the inner loop run.
            callbacks: Told of the start, every iteration's metrics and the end.
            world: This process's rank among those sharing the meta-batch (default: alone).

        Returns:
            The trainer, at iteration 0; the directory holds the recipe as `config.toml`.

        Raises:
            UserError: `out` holds files, or the task or learner cannot be built.
        """
        world = world or World()
        RunDir.check_new(out)
        trainer = cls(RunDir(out), recipe, device, callbacks, world)
        # what the numbers depend on beyond the recipe (Meta-World's simulator versions): into
        # the run's [task], so reopening the run checks it
        trainer.recipe.task.update(trainer.meta.run_record())
        world.barrier()
        if world.is_main:
            RunDir.create(out, trainer.recipe)
            trainer.run.lock()
        world.barrier()
        return trainer

    @classmethod
    def resume(
        cls,
        path: Path,
        device: torch.device,
        callbacks: Sequence[Callback] = (),
        world: World | None = None,
        meta_iterations: int | None = None,
    ) -> MetaTrainer:
        """Continue the run in `path` from its last checkpoint (or from scratch if it has none),
        with any number of ranks; `meta_iterations` extends (or shortens, down to the
        iterations done) the run's plan, written to its config.toml. An annealed outer step
        then follows the new plan's schedule from the iteration reached.

        Args:
            path: A run directory written by `start` (or `metarl train`).
            device: Where to continue.
            callbacks: As for `start`.
            world: As for `start`.
            meta_iterations: A new total number of meta-iterations (None keeps the recipe's).

        Returns:
            The trainer, at the checkpoint's iteration with its weights, outer-optimizer
            state and random state, so the run continues as if it had not stopped.

        Raises:
            UserError: No run there, a damaged checkpoint, a `config.toml` edited since the
                checkpoint, or `meta_iterations` below the iterations done.
        """
        world = world or World()
        run = RunDir.open(path)
        if world.is_main:  # before anything is read: a second resume must not truncate;
            run.lock(record=False)  # nothing written until the run is found good
        try:
            recipe = run.recipe()
            planned = recipe.train.meta_iterations
            if meta_iterations is not None:
                recipe = with_overrides(recipe, "train", meta_iterations=meta_iterations)
            trainer = cls(run, recipe, device, callbacks, world)
            if run.checkpoint_path.exists():
                # the whole checkpoint is checked (structure, then shapes) before any of it is
                # used; metrics.jsonl is truncated only after it has all been loaded
                ckpt = run.load_checkpoint(device)
                if run.edited_since(ckpt):
                    raise UserError(
                        f"{run.config_path} was edited after the checkpoint was written; "
                        "restore it or start a new run with the edited recipe"
                    )
                outer = checkpoint_state(ckpt.optimizer, ckpt.learner)
                check_shapes(ckpt, trainer.model, trainer.outer.state_dict(), run.checkpoint_path)
                try:
                    trainer.model.load_state_dict(ckpt.model)
                    trainer.outer.load_state_dict(outer)
                    torch.set_rng_state(ckpt.rng["torch"])
                    # The learner's state for its own slots (rank 0's in the checkpoint) is
                    # restarted under several ranks (that resume is then not bitwise exact);
                    # the rest (Meta-SGD's rates, RL²'s Adam) every rank loads.
                    learner = ckpt.learner
                    if world.size > 1:
                        local = trainer.meta.rank_local_state
                        learner = {k: v for k, v in learner.items() if k not in local}
                    trainer.meta.load_state_dict(learner)
                except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
                    first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
                    raise UserError(
                        f"{run.checkpoint_path}: damaged checkpoint ({type(e).__name__}: {first}); "
                        "restore it or start a new run"
                    ) from None
                trainer.iteration = ckpt.iteration
                trainer.checkpoint_iteration = ckpt.iteration
                trainer.train_s = ckpt.train_s
            if recipe.train.meta_iterations < trainer.iteration:
                raise UserError(
                    f"--meta-iterations {recipe.train.meta_iterations}: the run has done "
                    f"{trainer.iteration} iterations; give at least that many"
                )
            world.barrier()  # every rank has read the checkpoint before rank 0 touches the files
            if world.is_main:
                run.record_holder()
                if recipe.train.meta_iterations != planned:
                    run.write_recipe(recipe)
                run.truncate_metrics(trainer.iteration)
        except BaseException:
            run.unlock()
            raise
        return trainer

    # -- the loop -------------------------------------------------------------------------
    def phi(self) -> Params:
        return {n: p.detach() for n, p in self.model.named_parameters()}

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Finish the current iteration, write a checkpoint, raise `TrainingInterrupted`
        (what Ctrl-C and SIGTERM do; a callback may call it too).

        Args:
            signum: the signal the stop is reported as (the exit status is 128 + it).
        """
        self._stop_signal = signum

    def step(self) -> dict[str, float]:
        """One meta-iteration: sample, adapt this rank's share, meta-gradient, outer step.

        Returns:
            The iteration's metrics by name (losses or returns before and after adapting,
            the outer step size as `meta_step`, ...), as `metrics.jsonl` logs them.
        """
        t = self.recipe.train
        rng = task_rng(t.seed, Split.TRAIN, self.iteration)
        tasks = self.meta.dist.sample(t.meta_batch, rng, Split.TRAIN)
        slots = self.world.slots(t.meta_batch)
        phi = self.phi()
        adaptation = self.meta.adapt(phi, tasks, rng, slots)
        # the sum of the per-task deltas of this rank's slots; the mean is over the meta-batch
        local = algorithms.meta_delta(t.algorithm, self.meta, phi, adaptation)
        local_sum = local.gradient
        metrics = {**adaptation.metrics, **local.metrics}
        # The stop request, a non-finite loss and this rank's metrics ride along in the same
        # collective: one all-reduce per iteration, every rank agrees on the flags, and the
        # metrics come back as the whole meta-batch's (MetricsLayout; one rank: untouched).
        bad_losses = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        local_sum[_FLAGS] = torch.tensor(
            [float(self._stop_signal is not None), float(bool(bad_losses))], device=self.device
        )
        share = len(range(t.meta_batch)[slots])
        layout = MetricsLayout.of(
            metrics, self.meta.metrics_across_ranks, share, self.world, self.device
        )
        if layout is not None:
            local_sum[_METRICS] = layout.values
        total = self.world.all_reduce_sum(local_sum)
        stop_votes, bad_votes = total.pop(_FLAGS).tolist()
        if layout is not None:
            metrics = layout.combined(total.pop(_METRICS), metrics)
        self._stop_agreed = stop_votes > 0
        delta = {k: v / t.meta_batch for k, v in total.items()}
        lr = algorithms.linear_schedule(
            t.meta_step, t.meta_step_final, self.iteration, t.meta_iterations
        )
        step = MetaStep(delta, self.world.all_reduce_sum, t.meta_batch, lr, local.objective)
        metrics.update(self.outer.step(step))
        self.iteration += 1
        metrics["meta_step"] = lr
        bad_params = self.non_finite_parameters()
        if bad_losses or bad_votes > 0 or bad_params:
            names = bad_losses or (["the loss on another rank"] if bad_votes > 0 else [])
            self.diverged = ", ".join(names + bad_params[:3])
        return metrics

    def non_finite_parameters(self) -> list[str]:
        """Names of the parameters holding a nan or inf (one device sync)."""
        params = list(self.model.parameters())
        finite = torch.stack([torch.isfinite(p.detach()).all() for p in params]).tolist()
        return [f"parameter {n}" for n, ok in zip(self.names, finite, strict=True) if not ok]

    def fit(self, progress: bool | None = None) -> torch.nn.Module:
        """Train to `meta_iterations`, writing metrics and checkpoints.

        Args:
            progress: Show a progress bar (rate, ETA, loss) on stderr: True always, False
                never, None (default) when stderr is a terminal and no callback shows one
                already.

        Returns:
            The meta-trained model (phi).

        Raises:
            TrainingInterrupted: Ctrl-C or `request_stop`; a checkpoint was written first.
            TrainingDiverged: A loss or a parameter became non-finite; the last finite
                checkpoint is kept.
        """
        t = self.recipe.train
        main = self.world.is_main  # rank 0 alone writes files and reports progress
        callbacks = list(self.callbacks) if main else []
        own_bar = None
        if main and _wants_bar(progress, callbacks):
            from rich.console import Console

            from metarl.progress import ProgressCallback

            own_bar = ProgressCallback(Console(stderr=True))
            callbacks.append(own_bar)
        for cb in callbacks:
            cb.on_start(self)
        started = time.perf_counter()
        trained_before = self.train_s
        self._saved_at = time.monotonic()
        first = self.iteration
        # events past the checkpoint (an interrupted session's) are purged: no step twice
        scalars = ScalarLog(self.run.path, first + 1) if main and self.tensorboard else None
        if main:
            self.run.lock()  # released when fit returns or fails: resume may follow
        # however the loop ends (finished, interrupted or failed), in reverse order: stop the
        # bar fit added, release the run's lock, close the event files, restore the signals
        with ExitStack() as teardown:
            teardown.enter_context(_stop_on_signals(self))
            if scalars is not None:
                teardown.callback(scalars.close)
            if main:
                teardown.callback(self.run.unlock)
            if own_bar is not None:
                teardown.callback(own_bar.close)
            while self.iteration < t.meta_iterations:
                metrics = self.step()
                done = self.iteration
                elapsed = time.perf_counter() - started
                metrics["iteration"] = done
                metrics["elapsed_s"] = elapsed
                self.train_s = trained_before + elapsed
                metrics["train_s"] = self.train_s
                metrics["tasks_per_s"] = (done - first) * t.meta_batch / max(elapsed, 1e-9)
                if (rss := peak_rss_mib()) is not None:
                    metrics["peak_rss_mib"] = rss
                if self.diverged is not None:  # log the bad row, keep the last finite checkpoint
                    if main:
                        self.run.append_metrics(metrics)
                    self.world.barrier()
                    raise TrainingDiverged(
                        done, self.diverged, self.run.path, self.checkpoint_iteration
                    )
                for cb in callbacks:
                    cb.on_iteration(self, metrics)
                if done % t.log_every == 0 or done == t.meta_iterations:
                    self.history.append(metrics)
                    if main:
                        self.run.append_metrics(metrics)
                    if scalars is not None:
                        scalars.add_row(metrics)
                last = done == t.meta_iterations
                # every rank stops after the same iteration (one process: as soon as asked)
                stop = self._stop_agreed if self.world.size > 1 else self._stop_signal is not None
                due = done % t.checkpoint_every == 0 or last or stop
                if main and (due or time.monotonic() - self._saved_at >= t.checkpoint_seconds):
                    self.save()
                if stop:
                    self.world.barrier()
                    raise TrainingInterrupted(
                        done, self.run.path, self._stop_signal or signal.SIGINT
                    )
        self.world.barrier()  # the final checkpoint is on disk before any rank returns
        for cb in callbacks:
            cb.on_end(self)
        return self.model

    def save(self) -> None:
        """Write the checkpoint (rank 0). Refuses non-finite weights, so whatever is on disk
        is the last finite state."""
        bad = self.non_finite_parameters()
        if bad:
            raise TrainingDiverged(self.iteration, bad[0], self.run.path, self.checkpoint_iteration)
        self.run.save_checkpoint(
            Checkpoint(
                iteration=self.iteration,
                model={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                optimizer=self.outer.state_dict(),
                rng={"torch": torch.get_rng_state(), "task_streams": "seed+iteration"},
                config=self.recipe.to_dict(),
                learner=_cpu(self.meta.state_dict()),
                train_s=self.train_s,
            )
        )
        self.checkpoint_iteration = self.iteration
        self._saved_at = time.monotonic()


_FLAGS = "__stop_requested_and_non_finite_loss__"
_METRICS = "__metrics_of_the_rank_share__"


def _wants_bar(progress: bool | None, callbacks: Sequence[Callback]) -> bool:
    """Whether `fit` adds a progress bar of its own (see `fit`)."""
    if progress is not None:
        return progress
    from metarl.progress import ProgressCallback

    shown = any(isinstance(cb, ProgressCallback) for cb in callbacks)
    return not shown and sys.stderr.isatty()


def _cpu(value: Any) -> Any:
    """`value` with every tensor (in nested dicts) copied to the CPU, for a checkpoint."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    return value


def peak_rss_mib() -> float | None:
    """This process's peak resident memory so far, in MiB (`getrusage`'s `ru_maxrss`: KiB on
    Linux, bytes on macOS), or None where the OS has no `resource` module (Windows). Logged
    with each iteration's metrics (`peak_rss_mib`): what a run's memory needs to be budgeted
    from, this session's (a resumed run starts a new process)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Signals that stop training after the current iteration with a checkpoint: Ctrl-C, and the
SIGTERM a batch scheduler (SLURM, Kubernetes) or `kill` sends before it kills."""


@contextmanager
def _stop_on_signals(trainer: MetaTrainer) -> Iterator[None]:
    """Ctrl-C or SIGTERM asks the loop to stop after the current iteration instead of killing
    it mid-update (the same signal again stops at once: its previous action is restored)."""
    try:
        previous: dict[int, Any] = {int(sig): signal.getsignal(sig) for sig in STOP_SIGNALS}

        def handler(signum: int, frame: Any) -> None:
            signal.signal(signum, previous[signum])
            trainer.request_stop(signum)

        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)
