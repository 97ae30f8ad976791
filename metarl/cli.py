"""The `metarl` command line: thin typer commands that build a config and call the library.

Diagnostics and progress go to stderr, results to stdout. Exit codes: 0 success, 2 bad input
(one line naming the value and what is accepted, no traceback), 1 internal failure, 3 when
numbers went non-finite (`train`: a loss or weight became nan/inf, the run stopped and its last
finite checkpoint is kept; `eval`: an adapted metric is not finite), 130 when interrupted
(after the checkpoint is written), 143 when training was stopped by SIGTERM (the same way).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click.exceptions import (  # typer >= 0.29 vendors click; no public alias
    ClickException,
    NoArgsIsHelpError,
    UsageError,
)
from typer.core import TyperGroup

from metarl.allocator import keep_freed_memory
from metarl.config import (
    MAX_STEPS,
    MAX_TASKS,
    Algorithm,
    OptimizerName,
    with_overrides,
)
from metarl.errors import UserError, os_error_message, utf8_name
from metarl.jsonio import all_finite
from metarl.jsonio import dumps as dumps_json
from metarl.outer_registry import names as outer_step_names
from metarl.progress import ProgressCallback, progress_bar
from metarl.startup import hand_over

if TYPE_CHECKING:  # torch is imported by the commands that use it: `metarl --help`,
    # `--version`, `tasks list` and `runs` answer without waiting for it
    # (scripts/benchmarks/bench_cli_startup.py)
    import torch

    from metarl.curves import Curve
    from metarl.distributed import World


class OneLineErrors(TyperGroup):
    """Every usage error (a bad option value, an unknown option) as one line on stderr with
    exit code 2, instead of typer's usage panel."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        try:
            value = super().main(*args, **{**kwargs, "standalone_mode": False})
        except NoArgsIsHelpError as e:  # `metarl` alone: the help text, as before
            e.show()
            sys.exit(e.exit_code)
        except ClickException as e:
            err.print(f"[bold red]error:[/] {escape(_usage_message(e))}", **ONE_LINE)
            sys.exit(2 if isinstance(e, UsageError) else 1)
        if not standalone_mode:
            return value
        sys.exit(value if isinstance(value, int) else 0)  # an Exit's code, else success


ONE_LINE: dict[str, Any] = {"highlight": False, "soft_wrap": True}


def _usage_message(e: ClickException) -> str:
    """typer's message, plus the value that was refused (typer's pydantic check keeps it only
    in the cause)."""
    message = e.format_message()
    errors = getattr(e.__cause__, "errors", None)
    if callable(errors):
        with contextlib.suppress(Exception):  # best effort: the message stands without it
            return f"{message} (got {errors()[0]['input']!r})"
    return message


app = typer.Typer(
    cls=OneLineErrors,
    name="metarl",
    help=(
        "Meta-learning for PyTorch: Reptile, first- and second-order MAML, Meta-SGD and iMAML "
        "over few-shot tasks and Gymnasium environment families."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # click's plain help: at 80 columns rich's option panels cut flags and wrap every
    # description into a narrow column
    rich_markup_mode=None,
)
tasks_app = typer.Typer(
    help="The task catalog and registered task distributions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(tasks_app, name="tasks")


def _print_version(value: bool) -> None:
    if value:
        from metarl import __version__

        out.print(f"metarl {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Meta-learning for PyTorch."""


envs_app = typer.Typer(
    help="The catalog of parametrized Gymnasium environment families.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(envs_app, name="envs")
data_app = typer.Typer(
    help="Datasets in the data root: download, import and verify (loaders never download).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(data_app, name="data")

DIVERGED = 3
"""Exit code of a run or evaluation whose numbers went non-finite."""

err = Console(stderr=True)
out = Console()

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F | None = None, *, imports_torch: bool = True) -> Any:
    """Turn a `UserError` into one line on stderr and exit code 2, and Ctrl-C outside the
    training loop (whose own handler writes a checkpoint) into one line and exit code 130.
    An `OSError` (on a path the user gave: a full disk, a read-only file system, a name too
    long, a folder where a file is expected) is one line naming the path, exit code 2.

    Args:
        fn: the command.
        imports_torch: whether the command needs torch. torch is then imported before Ctrl-C
            is handed to the command: a KeyboardInterrupt raised inside torch's C++ import
            can abort the process or be lost, while the start-up handler ends it with one
            line and 130. `False` for the commands that are fast because they never load it.
    """
    if fn is None:
        return functools.partial(user_errors, imports_torch=imports_torch)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            if imports_torch:
                import torch  # noqa: F401
            # Ctrl-C raises KeyboardInterrupt from here on, caught below or by the training
            # loop; until here (imports, typer's parsing, which would turn it into a silent
            # exit 130) it ended the process with one line (metarl/startup.py)
            hand_over()
            return fn(*args, **kwargs)
        except UserError as e:
            # escaped: messages name TOML tables ("[learner]"), which are not rich markup
            err.print(f"[bold red]error:[/] {escape(str(e))}", **ONE_LINE)
            raise typer.Exit(2) from None
        except OSError as e:  # on a path the user gave: a full disk, a name too long, ...
            err.print(f"[bold red]error:[/] {escape(os_error_message(e))}", **ONE_LINE)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted", **ONE_LINE)
            raise typer.Exit(130) from None

    return wrapper


def parse_steps(text: str) -> list[int]:
    try:
        steps = [int(s) for s in text.split(",")]  # an empty entry ("1,,2") is a typo
    except ValueError:
        raise UserError(
            f"--steps {text!r}: expected comma-separated integers, e.g. 0,1,10,32"
        ) from None
    if not steps or any(not 0 <= s <= MAX_STEPS for s in steps):
        raise UserError(
            f"--steps {text!r}: expected integers from 0 to {MAX_STEPS:,}, e.g. 0,1,10,32"
        )
    return steps


# --- commands ---------------------------------------------------------------------------

ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        envvar="METARL_THREADS",
        help="CPU threads for torch and MuJoCo's physics pool (env METARL_THREADS; default: "
        "torch's, one per core). "
        "Use 1 when other processes share the cores: idle torch threads spin and slow down.",
        show_default=False,
    ),
]


def set_threads(threads: int | None) -> None:
    """Apply --threads (refusing a count torch cannot use); `train` and `eval`, the commands
    that work on large tensors, also keep freed memory in the process (`metarl.allocator`).
    The demo does not: it serves many small requests from threads."""
    import torch

    keep_freed_memory()
    if threads is None:
        return
    if not 1 <= threads <= 1024:
        raise UserError(f"--threads {threads}: expected an integer from 1 to 1024")
    torch.set_num_threads(threads)


DataDirOpt = Annotated[
    Path | None,
    typer.Option(help="The data root (default: $METARL_DATA, else ~/.cache/metarl)."),
]


DeviceOpt = Annotated[
    str, typer.Option(help="auto, cpu, cuda or cuda:N (auto picks CUDA if present).")
]


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command()
@user_errors
def train(
    task: Annotated[
        str | None,
        typer.Argument(help="A catalog recipe name (see `metarl tasks list`) or a .toml path."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory (default runs/TASK-TIME).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run in this directory (with --meta-iterations N: train it to N)."
        ),
    ] = None,
    algorithm: Annotated[Algorithm | None, typer.Option(help="Meta-gradient.")] = None,
    meta_iterations: Annotated[int | None, typer.Option(help="Outer steps.")] = None,
    meta_batch: Annotated[int | None, typer.Option(help="Tasks per outer step.")] = None,
    inner_steps: Annotated[int | None, typer.Option(help="Inner steps per task.")] = None,
    inner_lr: Annotated[float | None, typer.Option(help="Inner learning rate.")] = None,
    inner_optimizer: Annotated[OptimizerName | None, typer.Option(help="Inner optimizer.")] = None,
    meta_step: Annotated[float | None, typer.Option(help="Outer step size at the start.")] = None,
    meta_step_final: Annotated[
        float | None, typer.Option(help="Outer step size at the end.")
    ] = None,
    outer_optimizer: Annotated[
        str | None,
        typer.Option(help=f"Outer step, a registered one: {', '.join(outer_step_names())}."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seeds the model and every task draw.")] = None,
    amp: Annotated[
        bool | None,
        typer.Option(help="bfloat16 autocast in the inner loop (conv nets on a GPU)."),
    ] = None,
    tensorboard: Annotated[
        bool | None,
        typer.Option(
            "--tensorboard/--no-tensorboard",
            help="TensorBoard event files in the run directory (default: the recipe's "
            "train.tensorboard, else when the tensorboard package is installed).",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
    dist_timeout: Annotated[
        float, typer.Option(help="Seconds a collective may wait under torchrun before failing.")
    ] = 300.0,
) -> None:
    """Meta-train a recipe into a run directory, or continue one with --resume.

    Under `torchrun --nproc-per-node N -m metarl train ...` the meta-batch is split across
    the N ranks; rank 0 writes the run and shows progress.
    """
    from metarl.data import root as data_root
    from metarl.distributed import shutdown, world_from_env
    from metarl.models import default_device

    overrides = dict(
        algorithm=algorithm,
        meta_iterations=meta_iterations,
        meta_batch=meta_batch,
        inner_steps=inner_steps,
        inner_lr=inner_lr,
        inner_optimizer=inner_optimizer,
        meta_step=meta_step,
        meta_step_final=meta_step_final,
        outer_optimizer=outer_optimizer,
        seed=seed,
        amp=amp,
        tensorboard=tensorboard,
    )
    set_threads(threads)
    if not (math.isfinite(dist_timeout) and dist_timeout > 0):
        raise UserError(f"--dist-timeout {dist_timeout}: expected a number of seconds > 0")
    world, dev = world_from_env(default_device(device), dist_timeout)
    try:
        with data_root.using(data_dir):
            _train(task, out, resume, overrides, dev, quiet or not world.is_main, world)
    finally:
        shutdown()


def _train(
    task: str | None,
    out: Path | None,
    resume: Path | None,
    overrides: dict[str, Any],
    dev: torch.device,
    quiet: bool,
    world: World,
) -> None:
    """`metarl train` once the process group (if any) is joined."""
    import torch

    from metarl.registry import algorithm_note, resolve_recipe
    from metarl.train import MetaTrainer, TrainingDiverged, TrainingInterrupted

    say = err.print if world.is_main else (lambda *a, **k: None)
    callback = ProgressCallback(err)
    callbacks = [] if quiet else [callback]
    if resume is not None:
        extend = overrides.pop("meta_iterations")
        if task is not None or out is not None or any(v is not None for v in overrides.values()):
            raise UserError(
                "--resume continues a run as configured: give no TASK, --out or training "
                "options with it (only --meta-iterations, to extend it)"
            )
        trainer = MetaTrainer.resume(resume, dev, callbacks, world, meta_iterations=extend)
        say(f"resuming {escape(str(resume))} at iteration {trainer.iteration}", **ONE_LINE)
    else:
        if task is None:
            raise UserError("give a TASK (e.g. `metarl train sine`) or --resume RUN_DIR")
        chosen = resolve_recipe(task)
        recipe = with_overrides(chosen, "train", **overrides)
        if (note := algorithm_note(chosen, recipe)) is not None:
            say(f"note: {escape(note)}", **ONE_LINE)
        if out is None and world.size > 1:
            raise UserError("under torchrun give --out RUN_DIR (every rank must name the same)")
        if out is None:
            out = Path("runs") / f"{Path(task).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        trainer = MetaTrainer.start(recipe, out, dev, callbacks, world)
        ranks = f", {world.size} ranks" if world.size > 1 else ""
        say(f"run directory: {escape(str(out))}  (device {dev}{ranks})", **ONE_LINE)
    if trainer.recipe.train.tensorboard is None and not utf8_name(trainer.run.path):
        say(
            "note: no TensorBoard event files: the run directory's name is not UTF-8, which "
            "TensorBoard cannot write into (metrics.jsonl has every row)",
            **ONE_LINE,
        )
    try:
        trainer.fit(progress=False)  # the CLI's own callback, or none with -q
    except TrainingInterrupted as e:
        _exit_quietly_on_ctrl_c()  # the checkpoint is written: another Ctrl-C just ends it
        callback.close()
        say(
            f"interrupted after iteration {e.iteration}; checkpoint written. "
            f"Continue with: metarl train --resume {escape(str(e.run_dir))}",
            **ONE_LINE,
        )
        raise typer.Exit(128 + e.signum) from None  # 130 for Ctrl-C, 143 for SIGTERM
    except TrainingDiverged as e:
        callback.close()
        say(f"[bold red]error:[/] {escape(str(e))}", **ONE_LINE)
        raise typer.Exit(DIVERGED) from None
    except BaseException as e:
        callback.close()
        if resume is None and world.is_main:  # a start that failed leaves no directory behind
            trainer.run.discard_unstarted()
        if isinstance(e, OSError):  # a full disk, a file system gone read-only
            kept = trainer.checkpoint_iteration
            raise UserError(
                os_error_message(e)
                + (
                    f"; the last checkpoint (iteration {kept}) is kept: "
                    f"`metarl train --resume {trainer.run.path}` continues from it"
                    if kept is not None and trainer.run.checkpoint_path.exists()
                    else ""
                )
            ) from None
        if isinstance(e, MemoryError | torch.OutOfMemoryError) or "can't allocate memory" in str(e):
            t, given = trainer.recipe.train, trainer.recipe.supervised.get("train", {})
            sizes = [f"{k} = {given[k]}" for k in ("support_shots", "inner_batch") if k in given]
            raise UserError(
                f"out of memory with train.meta_batch = {t.meta_batch}"
                f"{' (' + ', '.join(sizes) + ')' if sizes else ''} on {dev}: lower them"
            ) from None
        raise
    last = trainer.history[-1] if trainer.history else {}
    session = last.get("elapsed_s", 0.0)
    # train_s = the earlier sessions' seconds + this one's: exactly this one's in a fresh run
    earlier = f" ({session:.1f} s in this session)" if trainer.train_s > session else ""
    say(
        f"done: {trainer.iteration} meta-iterations in {trainer.train_s:.1f} s{earlier}. "
        f"Evaluate with: metarl eval {escape(str(trainer.run.path))}",
        **ONE_LINE,
    )


@app.command("export")
@user_errors
def export(
    run_dir: Annotated[Path, typer.Argument(help="An RL run directory written by `metarl train`.")],
    out: Annotated[Path, typer.Option(help="The SB3 zip to write, e.g. policy.zip.")],
) -> None:
    """Save an RL run's meta-trained policy as a stable-baselines3 PPO zip
    (`stable_baselines3.PPO.load(OUT)` reads it)."""
    from metarl.export import export_sb3

    err.print(f"wrote {export_sb3(run_dir, out)}", highlight=False)


def curve_table(curve: Curve, title: str) -> Table:
    """Mean, 95% CI and paired gain per number of steps."""
    table = Table(title=title)
    table.add_column("steps", justify="right")
    table.add_column(curve.metric, justify="right")
    table.add_column("95% CI", justify="right")
    # a gain is an improvement: for a loss (lower is better) the decrease, so that a better
    # adaptation reads as a positive number whatever the metric (`--json` keeps the signed
    # difference, metric after minus metric before)
    sign = -1.0 if curve.lower_is_better else 1.0
    drop = "decrease" if curve.lower_is_better else "gain"
    table.add_column(f"{drop} vs {curve.steps[0]} steps", justify="right")
    diverged = curve.diverged()
    if any(diverged):  # only where some task blew up: the usual table keeps its shape
        table.add_column("diverged", justify="right")
    binary, (lows, highs) = curve.binary, curve.bounds()
    for s, m, c, (g, gc), d, lo, hi in zip(
        curve.steps, curve.mean, curve.ci95, curve.gains(), diverged, lows, highs, strict=True
    ):
        extra = [f"{d}/{curve.n_tasks}"] if any(diverged) else []
        g = sign * g + 0.0  # + 0.0: no "-0.0000" at the first step
        if not math.isfinite(m):
            table.add_row(str(s), "not finite", "--", "--", *extra)
        elif binary:  # Wilson's interval: not symmetric about the rate
            table.add_row(
                str(s), f"{m:.4f}", f"[{lo:.3f}, {hi:.3f}]", f"{g:+.4f} ± {_num(gc)}", *extra
            )
        else:
            table.add_row(str(s), f"{m:.4f}", f"± {_num(c)}", f"{g:+.4f} ± {_num(gc)}", *extra)
    return table


def paired_table(paired: dict[str, list[tuple[float, float]]], curve: Curve) -> Table:
    """The first run minus each other curve, per task: mean ± 95% CI per number of steps."""
    table = Table(title=f"paired difference in {curve.metric} (per task, same tasks and seeds)")
    table.add_column("steps", justify="right")
    for label in paired:
        table.add_column(escape(label), justify="right")
    for row, step in enumerate(curve.steps):
        cells = []
        for diffs in paired.values():
            m, c = diffs[row]
            cells.append(f"{m:+.4f} ± {_num(c)}" if math.isfinite(m) else "not finite")
        table.add_row(str(step), *cells)
    return table


@app.command("eval")
@user_errors
def eval_(
    run_dirs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="A run directory written by `metarl train`; several (of one task) are "
            "compared on the same held-out tasks (none with --init pretrained:NAME).",
            show_default=False,
        ),
    ] = None,
    tasks: Annotated[
        int | None, typer.Option(help="Held-out tasks (default: the recipe's).")
    ] = None,
    steps: Annotated[str | None, typer.Option(help="Adaptation steps, comma-separated.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(help="Save the adaptation curves (and the baselines) as a PNG."),
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline/--no-baseline",
            help="With --plot: also evaluate the random init on the same tasks and draw it.",
        ),
    ] = True,
    transductive: Annotated[
        bool | None,
        typer.Option(
            "--transductive/--no-transductive",
            help="Classify the query set in one batch (BatchNorm uses its statistics), or each "
            "query example with the support set only (default: the recipe's eval.transductive).",
            show_default=False,
        ),
    ] = None,
    init: Annotated[
        str,
        typer.Option(
            help="Adapt from: meta (the run's weights), random (the recipe's seed init, "
            "no training), joint (the weights of --joint-run) or pretrained:NAME (a model "
            "shipped with metarl, e.g. pretrained:omniglot-5way-1shot; without RUN_DIR it is "
            "evaluated with its own recipe)."
        ),
    ] = "meta",
    joint_run: Annotated[
        Path | None,
        typer.Option(
            help="A run of the same recipe trained as a multi-task baseline: evaluated beside "
            "the run (or, with --init joint, instead of it)."
        ),
    ] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    data_dir: DataDirOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Adaptation curve on held-out tasks: the metric after each number of steps, with 95% CI,
    and the gain over the first step count (paired per task)."""
    from metarl import zoo
    from metarl.data import root as data_root
    from metarl.evaluate import compare_runs, plot_comparison
    from metarl.models import default_device
    from metarl.run import check_writable
    from metarl.tensorboard_log import log_evaluation

    set_threads(threads)
    if tasks is not None and not 1 <= tasks <= MAX_TASKS:
        raise UserError(f"--tasks {tasks}: expected an integer from 1 to {MAX_TASKS:,}")
    step_list = parse_steps(steps) if steps is not None else None
    if plot is not None and plot.suffix.lower() != ".png":
        raise UserError(f"--plot {plot}: expected a file name ending in .png")
    if plot is not None:  # before the evaluation, not after it
        check_writable(plot, "--plot")
    for r in run_dirs or []:
        if str(r).startswith(zoo.PREFIX) and not r.exists():
            raise UserError(
                f"{str(r)!r} is not a run directory; evaluate a shipped model with "
                f"`metarl eval --init {r}`"
            )
    # started with the first adapted task, so a refusal before it stays one line (in a log
    # file: a plain line a minute, LoggedProgress)
    shown = not quiet
    bar = progress_bar("{task.description}", err, enabled=shown, unit="tasks", bar_width=12)
    bars: dict[str, Any] = {}

    def report(label: str, done: float, total: float) -> None:
        if not bars:
            bar.start()
        if label not in bars:
            bars[label] = bar.add_task(escape(label), total=total)
        bar.update(bars[label], completed=done)

    with data_root.using(data_dir), _stopping(bar):
        comparison = compare_runs(
            list(run_dirs) if run_dirs else [None],
            default_device(device),
            tasks=tasks,
            steps=step_list,
            transductive=transductive,
            init=init,
            joint_run=joint_run,
            random_baseline=plot is not None and baseline,
            progress=report,
        )
    curve = comparison.runs[0].curve
    # (a CI is nan, not a failure, with one task; a diverging baseline is no failure either)
    finite = all(all_finite(e.curve.mean) for e in comparison.runs)
    if as_json:
        payload = {**comparison.to_json(), "finite": finite}
        sys.stdout.write(dumps_json(payload) + "\n")
    else:
        for e in comparison.runs + comparison.baselines:
            at = f", iteration {e.iteration}" if e.iteration is not None else ""
            title = escape(
                f"{e.source}{f' (init {e.init}{at})' if e.run_dir else ''}: "
                f"{e.recipe.task_name}, {e.curve.n_tasks} held-out tasks"
            )
            out.print(curve_table(e.curve, title + e.mode()))
            for other in e.others:
                out.print(curve_table(other, title))
        paired = comparison.paired()
        if paired:
            out.print(paired_table(paired, comparison.runs[0].curve))
    for e in comparison.runs + comparison.baselines:
        # TensorBoard, when the run writes it: an evaluation of a run it cannot write to
        # (a read-only mount, another user's folder) still evaluates
        try:
            log_evaluation(e)
        except OSError as x:
            err.print(
                f"note: TensorBoard curves not written into {escape(str(e.run_dir))} "
                f"({escape(x.strerror or type(x).__name__)}); the results above are complete",
                **ONE_LINE,
            )
            break
    if plot is not None:
        written = plot_comparison(comparison, plot)
        err.print("wrote " + ", ".join(str(p) for p in written), highlight=False)
    if not finite:
        bad = [str(s) for s, m in zip(curve.steps, curve.mean, strict=True) if not math.isfinite(m)]
        err.print(
            f"[bold red]error:[/] {escape(curve.metric)} is not finite after "
            f"{', '.join(bad) or 'some'} steps (adaptation diverged: lower eval.inner_lr)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(DIVERGED)


@contextlib.contextmanager
def _stopping(bar: Any) -> Any:
    try:
        yield
    finally:
        bar.stop()


def _num(value: float) -> str:
    """A CI cell: the number, or "--" where there is none (a single task has no CI)."""
    return f"{value:.4f}" if math.isfinite(value) else "--"


@app.command()
@user_errors
def demo(
    run: Annotated[
        Path | None,
        typer.Option(help="Use this meta-trained Omniglot run instead of the shipped model."),
    ] = None,
    model: Annotated[str, typer.Option(help="The shipped model to use.")] = "omniglot-5way-1shot",
    host: Annotated[
        str, typer.Option(help="Address to listen on (anything but loopback is reachable).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on; 0 picks a free one.")] = 0,
    device: DeviceOpt = "cpu",
    browser: Annotated[
        bool, typer.Option("--browser/--no-browser", help="Open the page in a web browser.")
    ] = True,
) -> None:
    """Draw it and see: a local page where you draw one symbol per class and one again, and a
    meta-trained Omniglot network adapted to your drawings classifies it (Ctrl-C stops)."""
    import webbrowser

    import torch

    from metarl.demo import is_loopback, make_server
    from metarl.models import default_device

    # one thread: adapting one small task gains nothing from a second, and OpenMP threads
    # spin-waiting on cores that other processes keep busy slow it down many times over
    torch.set_num_threads(1)
    server = make_server(host, port, run, model, default_device(device))
    if not is_loopback(host):
        err.print(
            f"[bold yellow]warning:[/] listening on {host}: other machines can reach the demo",
            highlight=False,
        )
    err.print(
        f"metarl demo: {server.info['model']} on {server.url}  (Ctrl-C stops)",
        highlight=False,
        soft_wrap=True,
    )
    if browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()
        err.print("metarl demo: stopped", highlight=False)
        # end now, as asked: the demo has nothing to save, and the interpreter's teardown
        # waits on (or, tearing torch down under them, aborts) request threads that are
        # still adapting, which on a loaded machine outlives Ctrl-C noticeably
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    finally:
        server.server_close()


@app.command("runs")
@user_errors(imports_torch=False)
def runs(
    folder: Annotated[Path, typer.Argument(help="A folder of run directories.")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list on stdout.")] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Also draw the runs' training curves (before and after adaptation, against "
            "env steps for RL) into this PNG.",
            metavar="<file.png>",
        ),
    ] = None,
) -> None:
    """Every run under FOLDER: task, iterations done / planned, the last logged metrics
    (before -> after adaptation) and whether `metarl train --resume` would continue it."""
    from metarl.listing import compact_table, show
    from metarl.run_status import scan_runs

    found = scan_runs(folder)
    if plot is not None:
        _plot_training(folder, {r.name: (r.task, r.path) for r in found if r.path}, plot)
    if as_json:
        sys.stdout.write(dumps_json([r.to_json() for r in found]) + "\n")
        return
    rows = [
        [r.name, r.task, r.algorithm, f"{r.iteration}/{r.planned}", r.state, r.last_text()]
        for r in found
    ]
    headers = ["run", "task", "algorithm", "done", "resume", "last metrics"]
    title = f"{len(found)} run{'' if len(found) == 1 else 's'} in {folder}"
    show(out, compact_table(title, headers, rows, free="last metrics", width=out.width))


def _plot_training(folder: Path, runs: dict[str, tuple[str, Path]], path: Path) -> None:
    """`metarl runs --plot`: every listed run's metrics.jsonl, a panel per task and metric
    (`runs`: name -> its task and directory; FOLDER may itself be the one run). A run that
    cannot be drawn is named in one line with why."""
    from metarl.plots import plot_training_curves, training_metric
    from metarl.run import RunDir

    if path.suffix.lower() != ".png":
        raise UserError(f"--plot {path}: expected a .png file name")
    rows, left_out = {}, []
    for name, (_, run_dir) in runs.items():
        try:
            metrics = RunDir.open(run_dir).read_metrics()
        except (UserError, OSError, ValueError):  # listed as unreadable
            left_out.append(f"{name} (unreadable)")
            continue
        if not metrics:
            left_out.append(f"{name} (no metrics yet)")
        elif training_metric(metrics) is None:
            left_out.append(f"{name} (logs no loss or return)")
        else:
            rows[name] = metrics
    if not rows:
        raise UserError(f"--plot {path}: no run under {folder} has logged metrics yet")
    tasks = {name: task for name, (task, _) in runs.items()}
    plot_training_curves(rows, path, title=f"training curves: {folder.resolve().name}", tasks=tasks)
    err.print(f"wrote {path}", highlight=False)
    if left_out:
        err.print(escape(f"note: not in the plot: {', '.join(left_out)}"), **ONE_LINE)


@tasks_app.command("list")
@user_errors(imports_torch=False)
def tasks_list() -> None:
    """The shipped recipes and the registered task distributions, one line each (the full
    description: `metarl tasks show NAME`)."""
    from metarl.listing import compact_table, show
    from metarl.registry import catalog_recipes, registered_tasks, resolve_recipe

    rows = []
    for name in catalog_recipes():
        r = resolve_recipe(name)
        t = r.train
        rows.append([name, r.task_name, t.algorithm.value, str(t.meta_iterations), r.description])
    headers = ["name", "task", "algorithm", "iters", "description"]
    title = "recipes (metarl train NAME; metarl tasks show NAME for all of it)"
    show(
        out,
        compact_table(title, headers, rows, free="description", width=out.width, optional=["task"]),
    )
    out.print()
    # the entry point only where it fits beside a readable description
    wide = out.width >= 120
    dists = [
        [s.name, s.description]
        + ([s.entry_point if isinstance(s.entry_point, str) else repr(s.entry_point)] * wide)
        for s in registered_tasks()
    ]
    headers = ["name", "description"] + ["entry point"] * wide
    title = "task distributions ([task] name = NAME)"
    show(out, compact_table(title, headers, dists, free="description", width=out.width))


@tasks_app.command("show")
@user_errors
def tasks_show(
    name: Annotated[str, typer.Argument(help="A catalog recipe name or a .toml path.")],
    as_toml: Annotated[bool, typer.Option("--toml", help="Print the recipe as TOML.")] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a field, e.g. --set train.meta_batch=64 (a TOML value)."
        ),
    ] = None,
) -> None:
    """The resolved recipe: every field, its value and where the value comes from (the
    catalog file, your file, the command line, or a default)."""
    from metarl.provenance import field_sources, resolve_with_sets
    from metarl.registry import check_option_names
    from metarl.tomlio import dumps_toml

    recipe, cli = resolve_with_sets(name, set_ or [])
    check_option_names(recipe)  # what `metarl train` refuses, `tasks show` refuses too
    if as_toml:
        sys.stdout.write(f"# {recipe.source}\n" + dumps_toml(recipe.to_dict()))
        return
    rows = [(f, repr(v), source) for f, v, source in field_sources(name, recipe, cli)]
    table = Table(title=escape(f"{name}: {recipe.description}"))
    # a key is never cut (it is what --set takes); values and sources wrap onto more lines
    table.add_column("field", no_wrap=True, min_width=max(len(r[0]) for r in rows))
    table.add_column("value", overflow="fold")
    table.add_column("from", overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)


@envs_app.command("list")
@user_errors
def envs_list() -> None:
    """Every registered environment family: its id, base env, task parameters and horizon."""
    import gymnasium

    from metarl.envs import registered_families
    from metarl.listing import base_name, compact_table, param_summary, show
    from metarl.registry import load_plugins

    load_plugins()
    wide = out.width >= 120  # the family file only where it fits beside the parameters
    rows = [
        [
            fam.env_id,
            base_name(fam),
            str(gymnasium.spec(fam.env_id).max_episode_steps),
            param_summary(fam.params),
        ]
        + [fam.source.name] * wide
        for fam in registered_families()
    ]
    headers = ["id", "base", "horizon", "task parameters"] + ["source"] * wide
    title = "environment families (gymnasium.make(ID); task distribution of the same name)"
    show(out, compact_table(title, headers, rows, free="task parameters", width=out.width))


DatasetArg = Annotated[str, typer.Argument(help="The dataset, e.g. omniglot.")]


def _report(name: str, found: dict[str, dict[str, int]]) -> None:
    """One line per verified file on stdout."""
    for path, counts in found.items():
        summary = ", ".join(f"{v} {k}" for k, v in counts.items())
        out.print(f"{name}: {path} OK ({summary})", highlight=False, soft_wrap=True)


@data_app.command("fetch")
@user_errors
def data_fetch(name: DatasetArg, data_dir: DataDirOpt = None) -> None:
    """Download a dataset's canonical files, check their checksums, verify the content."""
    from metarl.data import dataset_module

    _report(name, dataset_module(name).fetch(data_dir))


@data_app.command("import")
@user_errors
def data_import(
    name: DatasetArg,
    path: Annotated[Path, typer.Argument(help="A folder holding the dataset's files.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Copy dataset files you already have into the data root, then verify them."""
    from metarl.data import dataset_module

    _report(name, dataset_module(name).import_(path, data_dir))


@data_app.command("verify")
@user_errors
def data_verify(name: DatasetArg, data_dir: DataDirOpt = None) -> None:
    """Check the dataset files in the data root by content (exit 2 naming the bad file)."""
    from metarl.data import dataset_module

    _report(name, dataset_module(name).verify(data_dir))


def main() -> None:
    """Console-script entry point. Ctrl-C before a command's own handling (while the package
    imports: metarl/startup.py; while typer parses the line, or while a command imports
    torch) is one line and exit code 130, as within one;
    after the command has said what it did, Ctrl-C ends the process quietly with 130."""
    global _ending_is_ours
    _ending_is_ours = True
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted", **ONE_LINE)
        sys.exit(130)
    finally:
        _exit_quietly_on_ctrl_c()


_ending_is_ours = False
"""Whether this process is the CLI's own (`main`), not a program calling `app` (a test's
runner), whose Ctrl-C is left alone."""


def _exit_quietly_on_ctrl_c() -> None:
    """From here on Ctrl-C ends the process at once with exit code 130: the command has
    said what it did, and a KeyboardInterrupt raised in the interpreter's exit (its atexit
    callbacks, torch's finalizers) would print a traceback after that line."""
    if not _ending_is_ours:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say anyway
            stream.flush()
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))


if __name__ == "__main__":
    main()
