"""A run directory: `config.toml` (the recipe, so a run is itself a recipe), `metrics.jsonl`
(one JSON object per logged iteration) and `checkpoint.pt`.

Checkpoints are written to a temporary file and renamed, so a crash leaves the previous
checkpoint intact, and are read with `torch.load(weights_only=True)`, so a checkpoint from
elsewhere cannot run code.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import platform
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import metarl
from metarl.atomic import atomic_write_bytes
from metarl.config import Recipe, forget_recorded_defaults, recipe_from_dict
from metarl.errors import UserError, utf8_name
from metarl.jsonio import dumps as dumps_json
from metarl.tomlio import dumps_toml, read_toml

if TYPE_CHECKING:  # imported where tensors are read or written: `metarl runs` needs none
    import torch

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
LOCK = ".lock"
"""Held (flock) by the process training the run; holds its pid. The kernel drops the lock
when that process dies, so a stale file is simply taken over."""


@dataclass
class Checkpoint:
    iteration: int
    """Meta-iterations completed."""
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    config: dict[str, Any]
    learner: dict[str, Any] = field(default_factory=dict)
    """The meta-learner's training state beyond the weights (carried inner moments)."""
    train_s: float = 0.0
    """Seconds of training up to `iteration`, over every session of a resumed run (0 in
    checkpoints written before it was recorded)."""


class RunDir:
    """Paths and file I/O of one run: `config.toml` (the recipe), `checkpoint.pt` and
    `metrics.jsonl`.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from metarl.registry import resolve_recipe
        >>> from metarl.run import RunDir
        >>> run = RunDir.create(Path(tempfile.mkdtemp()) / "run", resolve_recipe("sine"))
        >>> run.append_metrics({"iteration": 1, "loss_before": 2.5})
        >>> RunDir.open(run.path).recipe().task_name, run.read_metrics()
        ('sine', [{'iteration': 1, 'loss_before': 2.5}])
    """

    _lock_fd: int | None = None
    """The held lock file's descriptor (None: not held; also what `__del__` reads of an
    object whose `__init__` did not finish)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock_created = False
        """This process created the lock file (removed again if never recorded in)."""
        self._recorded = False
        """This process's pid is written in the held lock file."""

    # -- the lock: one process trains a run at a time -------------------------------------
    def lock(self, *, record: bool = True) -> None:
        """Hold the run's lock until `unlock` (or this process ends); refuse, naming the
        holder's pid, when another process holds it. Holding it already is fine.

        `record=False` takes the lock without writing: a command that may still be refused
        (a resume whose checkpoint is damaged) then leaves the run byte for byte as it was;
        `record_holder` writes this process's pid once it is accepted.

        Args:
            record: write this process's pid into `.lock` now (False: later, with
                `record_holder`).

        Raises:
            UserError: another live process holds the lock (its pid named).
        """
        if self._lock_fd is not None:
            if record:
                self.record_holder()
            return
        path = self.path / LOCK
        self._lock_created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # the kernel's table first: a holder still checking a resume has not written yet
            written = os.pread(fd, 32, 0).decode(errors="replace").strip()
            holder = str(self.holder() or written or "unknown")
            os.close(fd)
            raise UserError(
                f"{self.path} is being trained by another process (pid {holder}); wait for it "
                "to finish or stop it (Ctrl-C writes a checkpoint), then resume"
            ) from None
        self._lock_fd = fd
        self._recorded = False
        if record:
            self.record_holder()

    def record_holder(self) -> None:
        """Write this process's pid into the held lock file (for `metarl runs` and a second
        trainer's refusal to name)."""
        if self._lock_fd is None or self._recorded:
            return
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        self._recorded = True

    def holder(self) -> int | None:
        """The pid of the process holding this run's lock, from the kernel's table of locks
        (Linux's /proc/locks: reading it takes no lock, so a trainer starting meanwhile is
        not disturbed); None if none holds it or the table cannot be read."""
        try:
            st = os.stat(self.path / LOCK)
            with open("/proc/locks") as f:
                table = f.read()
        except OSError:
            return None
        device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        for line in table.splitlines():
            fields = line.split()
            if "FLOCK" in fields and device in fields and "->" not in fields:
                with contextlib.suppress(ValueError, IndexError):
                    return int(fields[fields.index(device) - 1])
        return None

    def unlock(self) -> None:
        if self._lock_fd is not None:
            if self._lock_created and not self._recorded:  # refused: leave no trace
                (self.path / LOCK).unlink(missing_ok=True)
            os.close(self._lock_fd)  # closing the file drops the flock
            self._lock_fd = None

    def __del__(self) -> None:
        if self._lock_fd is not None:
            self.unlock()

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def check_new(cls, path: Path) -> None:
        """Refuse a path that already holds a run, holds anything else (training would append
        to its files, and a resume truncate them), or cannot be created."""
        check_length(path, "--out")
        run = cls(path)
        if run.config_path.exists() or run.checkpoint_path.exists():
            raise UserError(
                f"{path} already holds a run; continue it with `metarl train --resume {path}` "
                "or choose another --out"
            )
        if path.exists() and not path.is_dir():
            raise UserError(f"--out {path}: exists and is not a directory")
        if path.is_dir() and any(path.iterdir()):
            held = ", ".join(sorted(p.name for p in path.iterdir())[:3])
            raise UserError(
                f"--out {path}: a directory that is not a metarl run (holds {held}); "
                "give a new or empty directory"
            )
        check_writable(path, "--out")

    @classmethod
    def create(cls, path: Path, recipe: Recipe) -> RunDir:
        """A new run directory holding `recipe` as its `config.toml`.

        Args:
            path: A new or empty directory.
            recipe: The run's recipe.

        Returns:
            The run.

        Raises:
            UserError: `path` holds a run or other files, or cannot be written.
        """
        cls.check_new(path)
        run = cls(path)
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run.config_path, dumps_toml(recipe.to_dict()).encode())
        except OSError as e:
            if created:  # nothing of it is left: the same --out works again
                run.discard_unstarted()
            raise UserError(f"--out {path}: cannot be written ({e.strerror})") from None
        return run

    def discard_unstarted(self) -> None:
        """Remove a run that failed before its first checkpoint: its config.toml,
        metrics.jsonl and TensorBoard event files, then the directory if nothing else is left,
        so the same --out works again. A run with a checkpoint is never touched."""
        if self.checkpoint_path.exists():
            return
        self.unlock()
        stale = (self.config_path, self.metrics_path, self.path / LOCK)
        for path in (*stale, *self.path.glob("events.out.tfevents.*")):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: leave it
            self.path.rmdir()

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run.

        Args:
            path: A run directory (one holding `config.toml`).

        Returns:
            The run, not locked: reading it needs no lock.

        Raises:
            UserError: `path` is a file, does not exist or has no `config.toml`.
        """
        run = cls(path)
        if path.is_file():
            raise UserError(f"run directory {str(path)!r} is a file, not a run directory")
        if not path.is_dir():
            raise UserError(f"run directory {str(path)!r} does not exist")
        if not run.config_path.is_file():
            raise UserError(f"{path} is not a run directory: it has no {CONFIG}")
        return run

    def recipe(self) -> Recipe:
        """The run's recipe (`config.toml`), as the current parser reads it."""
        data = forget_recorded_defaults(read_toml(self.config_path))
        return recipe_from_dict(data, source=str(self.config_path))

    # -- metrics --------------------------------------------------------------------------
    def append_metrics(self, row: dict[str, Any]) -> None:
        """Append one row (an iteration's metrics) to `metrics.jsonl`.

        Args:
            row: metric name -> value (JSON-serializable).
        """
        try:
            with open(self.metrics_path, "a") as f:
                f.write(dumps_json(row) + "\n")
        except OSError as e:  # a full disk fails the write, which names no file
            raise type(e)(e.errno, e.strerror, str(self.metrics_path)) from None

    def read_metrics(self) -> list[dict[str, Any]]:
        """The logged rows, up to the first line that is not one (a line cut short by a
        crash, or damage: everything before it is good)."""
        return self.read_metrics_checked()[0]

    def read_metrics_checked(self) -> tuple[list[dict[str, Any]], bool]:
        """The logged rows, and whether the file is damaged beyond a last line cut short by
        a crash (binary junk, a complete line that is not a JSON object)."""
        if not self.metrics_path.exists():
            return [], False
        data = self.metrics_path.read_bytes()
        rows: list[dict[str, Any]] = []
        lines = data.split(b"\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode())
            except (UnicodeDecodeError, json.JSONDecodeError):
                row = None
            if not isinstance(row, dict):
                cut_short = i == len(lines) - 1  # no newline after it: the write was cut
                return rows, not cut_short or not _is_text(line)
            rows.append(row)
        return rows, False

    def truncate_metrics(self, iteration: int) -> None:
        """Drop rows past `iteration` (logged after the checkpoint a resume starts from).

        Args:
            iteration: the last iteration whose rows are kept.
        """
        rows = [r for r in self.read_metrics() if r.get("iteration", 0) <= iteration]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.metrics_path, text.encode())

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, ckpt: Checkpoint) -> None:
        """Write `checkpoint.pt` atomically (a temporary file, then a rename: a crash leaves
        the previous one), with the metarl, torch and Python versions that wrote it.

        Args:
            ckpt: the weights, outer-step state, iteration, RNG states and config.
        """
        import torch

        payload = {
            "format": CHECKPOINT_FORMAT,
            "metarl_version": metarl.__version__,
            "torch_version": str(torch.__version__),
            "python": platform.python_version(),
            "iteration": ckpt.iteration,
            "model": ckpt.model,
            "optimizer": ckpt.optimizer,
            "rng": ckpt.rng,
            "learner": ckpt.learner,
            "train_s": ckpt.train_s,
            # JSON keeps the checkpoint loadable with weights_only=True whatever the config holds
            "config": json.dumps(ckpt.config),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(self.checkpoint_path, buffer.getvalue())

    def load_checkpoint(
        self, map_location: torch.device | str = "cpu", *, lazy: bool = False
    ) -> Checkpoint:
        """The checkpoint, its weights and optimizer state on `map_location`. The RNG state
        stays a CPU ByteTensor whatever the device: `torch.set_rng_state` takes nothing else
        (loading it onto a GPU was what broke resuming there). `lazy` memory-maps the file so
        tensors are read only when touched (to look at its iteration and config).

        Args:
            map_location: where the weights and optimizer state go.
            lazy: memory-map the file instead of reading it whole.

        Returns:
            The checkpoint.

        Raises:
            UserError: no checkpoint, or one that is damaged or of another structure (named).
        """
        import torch

        path = self.checkpoint_path
        if not path.is_file():
            raise UserError(f"{self.path} has no {CHECKPOINT} yet (was the run started?)")
        try:
            with warnings.catch_warnings():  # the refusal below is the whole message
                warnings.simplefilter("ignore")
                # torch memory-maps only a UTF-8 name; another is read whole
                mmap = lazy and utf8_name(path)
                source = path if mmap else io.BytesIO(path.read_bytes())
                payload = torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as e:  # torch raises several types for a damaged or foreign file
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"{path}: not a readable metarl checkpoint ({first_line[:160]}); it is damaged "
                "or was not written by metarl"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{path}: not a metarl checkpoint of format {CHECKPOINT_FORMAT}")
        config = check_payload(payload, path)
        return Checkpoint(
            iteration=payload["iteration"],
            model=_to_device(payload["model"], map_location),
            optimizer=_to_device(payload["optimizer"], map_location),
            learner=_to_device(payload.get("learner", {}), map_location),
            rng=payload["rng"],
            config=config,
            train_s=float(payload.get("train_s", 0.0)),
        )

    def peek_checkpoint(self) -> tuple[int, dict[str, Any]]:
        """The checkpoint's iteration and config, checked as `load_checkpoint` checks them,
        read without torch where the file allows (`metarl.peek`), else with it."""
        from metarl.peek import NotPlain, plain_payload

        path = self.checkpoint_path
        try:
            payload = plain_payload(path)
        except NotPlain:
            ckpt = self.load_checkpoint(lazy=True)
            return ckpt.iteration, ckpt.config
        except Exception:  # a damaged file fails in many ways, as under torch.load
            raise UserError(f"{path}: not a readable metarl checkpoint") from None
        if payload.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{path}: not a metarl checkpoint of format {CHECKPOINT_FORMAT}")
        iteration = payload.get("iteration")
        try:
            config = json.loads(payload["config"])
        except (KeyError, TypeError, ValueError):
            config = None
        if type(iteration) is not int or iteration < 0 or not isinstance(config, dict):
            raise UserError(f"{path}: damaged checkpoint (iteration or config)")
        recipe_from_dict(forget_recorded_defaults(config), source=f"{path} (its config)")
        return iteration, config

    def edited_since(self, ckpt: Checkpoint) -> bool:
        """`config.toml` no longer says what the checkpoint was trained with (a resume would
        silently change the recipe mid-run, so it is refused). Both go through the same
        defaults: a field added since the run began is no edit. The plan's length,
        `train.meta_iterations`, is not what was trained: a run is extended by changing it
        (`metarl train --resume RUN --meta-iterations N`, which writes config.toml before the
        next checkpoint does).

        Args:
            ckpt: the checkpoint a resume would start from.

        Returns:
            True when `config.toml` differs from the checkpoint's config in anything but
            `train.meta_iterations`.
        """
        return self.config_edited(ckpt.config)

    def config_edited(self, checkpoint_config: dict[str, Any]) -> bool:
        """`edited_since` for a checkpoint's config alone.

        Args:
            checkpoint_config: a checkpoint's config (the recipe as a dict).

        Returns:
            Whether `config.toml` differs from it (see `edited_since`).
        """
        config = forget_recorded_defaults(checkpoint_config)
        saved = recipe_from_dict(config, source=str(self.checkpoint_path)).to_dict()
        now = self.recipe().to_dict()
        for recipe in (saved, now):
            recipe["train"].pop("meta_iterations", None)
        return saved != now

    def write_recipe(self, recipe: Recipe) -> None:
        """Replace config.toml (atomically): a resume that extends the run's plan.

        Args:
            recipe: the recipe to write.
        """
        try:
            atomic_write_bytes(self.config_path, dumps_toml(recipe.to_dict()).encode())
        except OSError as e:
            raise UserError(f"{self.config_path}: cannot be written ({e.strerror})") from None


def _is_text(line: bytes) -> bool:
    try:
        return line.decode().isprintable()
    except UnicodeDecodeError:
        return False


def check_payload(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """Check a loaded checkpoint's structure as a whole, before any of it is used (a resume
    truncates metrics.jsonl to the checkpoint's iteration: a bad iteration must not get that
    far); returns its config. Shapes are checked against the model by `check_shapes`.

    Args:
        payload: what `torch.load` read.
        path: the checkpoint's path (for the message).

    Returns:
        The checkpoint's config.

    Raises:
        UserError: a missing or malformed part, naming it and the file.
    """

    import torch

    def bad(what: str) -> UserError:
        return UserError(f"{path}: damaged checkpoint ({what}); restore it or start a new run")

    missing = [k for k in ("iteration", "model", "optimizer", "rng", "config") if k not in payload]
    if missing:
        raise bad(f"no {', '.join(missing)}")
    iteration = payload["iteration"]
    if type(iteration) is not int or iteration < 0:
        raise bad(f"iteration = {iteration!r}, expected an integer >= 0")
    model = payload["model"]
    if not (
        isinstance(model, dict)
        and model
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items())
    ):
        raise bad("model is not a dict of named tensors")
    optimizer = payload["optimizer"]
    if not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
    ):
        raise bad("optimizer is not an optimizer state dict")
    rng = payload["rng"]
    if not (
        isinstance(rng, dict)
        and isinstance(rng.get("torch"), torch.Tensor)
        and rng["torch"].dtype == torch.uint8
    ):
        raise bad("rng has no torch generator state")
    if not isinstance(payload.get("learner", {}), dict):
        raise bad("learner is not a dict")
    try:
        config = json.loads(payload["config"])
    except (TypeError, ValueError):
        raise bad("config is not a JSON text") from None
    if not isinstance(config, dict):
        raise bad("config is not a JSON object")
    # a UserError naming the key
    recipe_from_dict(forget_recorded_defaults(config), source=f"{path} (its config)")
    return config


def check_shapes(
    ckpt: Checkpoint, model: torch.nn.Module, outer: dict[str, Any], path: Path
) -> None:
    """Refuse a checkpoint whose weights or outer-step state do not fit `model` and the run's
    outer step (`outer`: its `state_dict()`, torch's optimizer layout over the model's
    parameters; names, shapes, parameter groups), before anything is loaded:
    `load_state_dict` would fail half-way, with a traceback.

    Args:
        ckpt: the loaded checkpoint.
        model: the model the run builds.
        outer: the outer step's `state_dict()`.
        path: the checkpoint's path (for the message).

    Raises:
        UserError: a weight or optimizer state that does not fit, naming it.
    """
    import torch

    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ckpt.model.items()}
    if mine != theirs:
        name = sorted(set(mine.items()) ^ set(theirs.items()))[0][0]
        raise UserError(
            f"{path}: its weights do not fit the run's model ({name}: "
            f"{theirs.get(name, 'missing')} in the checkpoint, {mine.get(name, 'absent')} in "
            "the model); restore it or start a new run"
        )
    shapes = {i: tuple(p.shape) for i, p in enumerate(model.parameters())}
    expected = [len(g["params"]) for g in outer["param_groups"]]
    groups = ckpt.optimizer["param_groups"]
    found = [
        len(g["params"]) if isinstance(g, dict) and isinstance(g.get("params"), list) else -1
        for g in groups
    ]
    states = ckpt.optimizer["state"]
    if found != expected or not all(k in shapes and isinstance(v, dict) for k, v in states.items()):
        raise UserError(f"{path}: its optimizer state does not fit the run's model")
    for index, state in states.items():
        for key, value in state.items():
            bad = isinstance(value, torch.Tensor) and value.dim() > 0
            if bad and tuple(value.shape) != shapes[index]:
                raise UserError(
                    f"{path}: its optimizer state {key!r} of parameter {index} has shape "
                    f"{tuple(value.shape)}; the model's is {shapes[index]}"
                )


def _to_device(value: Any, device: torch.device | str) -> Any:
    """`value` with every tensor (in nested dicts and lists) moved to `device`."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to_device(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def check_length(path: Path, what: str) -> None:
    """Refuse a path with a name longer than the file system takes, or longer as a whole.

    Args:
        path: the path to check.
        what: how the message names it (`--out`).

    Raises:
        UserError: a name or the whole path too long, with the limit.
    """
    too_long = next((p for p in path.parts if len(os.fsencode(p)) > NAME_MAX), None)
    if too_long is not None:
        raise UserError(
            f"{what} {path}: the name {too_long[:40]}... is {len(os.fsencode(too_long))} bytes; "
            f"a file name is limited to {NAME_MAX}"
        )
    if len(os.fsencode(str(path.absolute()))) >= PATH_MAX:
        raise UserError(f"{what} {path}: the path is longer than {PATH_MAX - 1} bytes")


def check_writable(path: Path, what: str) -> None:
    """Refuse a file or directory path that cannot be created: every name in it must fit the
    file system's limit, and its nearest existing ancestor must be a directory where a file
    can be created (tried, so a read-only mount or /proc is refused as such, even for root).
    Checked before long work, not after it.

    Args:
        path: the file or directory to be created.
        what: how the message names it (`--out`, `--plot`).

    Raises:
        UserError: it cannot be created, and why.
    """
    check_length(path, what)
    ancestor = path
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if ancestor != path and not ancestor.is_dir():
        raise UserError(f"{what} {path}: cannot be created, {ancestor} is not a directory")
    if ancestor.is_dir():
        try:
            tempfile.TemporaryFile(dir=ancestor).close()
        except OSError as e:
            raise UserError(
                f"{what} {path}: cannot be created, no file can be made in {ancestor} "
                f"({e.strerror})"
            ) from None


NAME_MAX = 255
"""Bytes in one file name (ext4, xfs, btrfs, tmpfs)."""
PATH_MAX = 4096
"""Bytes in a path, with its terminating NUL (Linux)."""
