"""Every edge a user touches (issue 23), by kind, several instances each, through the real
CLI: an operating-system error on a path the user gave, a malformed checkpoint (on --resume
and on eval), a recipe entry point that cannot be used, a shipped-model name that is a path,
a list of steps with a hole, an export target that cannot be written. Each answers exit code
2 with exactly one line on stderr naming the value, no traceback, and nothing written or
lost (the run a damaged checkpoint sits in is byte-for-byte the same afterwards).

Then the storage kinds: a run directory's lock, a full disk (a real, tiny tmpfs where this
process may mount one), an evaluation of a run it cannot write to, a listing with a damaged
run, a run that diverges at its first iteration; files get the mode the umask gives.

Placeholders in the arguments: RUN (a trained sine run), OUT (a fresh path checked not to be
created afterwards), FILE (a regular file), DIR (a directory), LONG (a 300-byte name), DEEP (a
path over PATH_MAX), UNREADABLE.toml (a recipe that cannot be read, even by root), X.toml (a
directory named like a recipe), DIR.zip (a directory named like a zip), CKPT-<damage> (a copy
of RUN whose checkpoint has that damage), EP-<n> (a recipe whose env entry point is number n
of ENTRY_POINTS).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import metarl
from metarl.cli import DIVERGED, app
from metarl.config import Algorithm
from metarl.run import LOCK, RunDir
from tests.refusals import assert_refused_in_one_line, substitute

runner = CliRunner()

LONG = "n" * 300
DEEP = "/".join(["d" * 200] * 22)  # 4,400 bytes: over PATH_MAX, every name within NAME_MAX
NOT_UTF8 = os.fsdecode(b"runs/tb\xff\xfename")  # as Python hands such an argv over
FOREIGN_PID = "4242\n"
"""What the lock file of a copied run holds: another machine's trainer, long gone."""


def _damage(payload: dict[str, Any], how: str) -> None:
    """Damage a loaded checkpoint payload in place, one way per name."""
    first = next(iter(payload["model"]))
    if how == "no-model":
        del payload["model"]
    elif how == "iteration-negative":
        payload["iteration"] = -5
    elif how == "iteration-string":
        payload["iteration"] = "3"
    elif how == "weight-shape":
        payload["model"][first] = torch.zeros(3)
    elif how == "weight-missing":
        del payload["model"][first]
    elif how == "model-not-tensors":
        payload["model"] = {first: "weights"}
    elif how == "config-not-json":
        payload["config"] = "{not json"
    elif how == "config-bad-key":
        payload["config"] = json.dumps({"task": {"name": "sine"}, "train": {"bogus": 1}})
    elif how == "rng-missing":
        payload["rng"] = {}
    elif how == "adam-moment-shape":
        state = payload["optimizer"]["state"]
        state[0]["exp_avg"] = torch.zeros(7, 7)
    elif how == "param-groups":
        payload["optimizer"]["param_groups"] = []
    else:
        raise AssertionError(how)


CHECKPOINT_DAMAGE = {
    # damage -> the fragment the one line must hold
    "no-model": "no model",
    "iteration-negative": "iteration = -5",
    "iteration-string": "iteration = '3'",
    "weight-shape": "checkpoint.pt",
    "weight-missing": "checkpoint.pt",
    "model-not-tensors": "model is not a dict of named tensors",
    "config-not-json": "config is not a JSON text",
    "config-bad-key": "unknown key 'bogus'",
    "rng-missing": "rng has no torch generator state",
    "adam-moment-shape": "'exp_avg' of parameter 0 has shape (7, 7)",
    "param-groups": "optimizer state does not fit",
}
# what eval reads (the weights and the config): the optimizer's damage does not stop it
EVAL_DAMAGE = [d for d in CHECKPOINT_DAMAGE if d not in ("adam-moment-shape", "param-groups")]

ENTRY_POINTS = [
    ("nope_metarl_missing.mod:Env", "no module named 'nope_metarl_missing'"),
    ("metarl.distributions.sine:NoSuchEnv", "cannot be imported, not found"),
    ("boom_on_import:Env", "importing it raised RuntimeError: boom at import"),
    ("builtins:dict", "is the class dict, not a gymnasium.Env"),
    ("metarl.distributions.sine:__doc__", "is a str, not an env class"),
]

# kind -> (arguments, fragment of the one line)
CASES: list[tuple[str, list[str], str]] = [
    # an operating-system error on a path the user gave
    ("os-path", ["train", "sine", "--out", LONG, "-q"], "is 300 bytes"),
    ("os-path", ["train", "sine", "--out", f"/tmp/{DEEP}", "-q"], "longer than 4095 bytes"),
    ("os-path", ["train", f"{LONG}.toml"], "File name too long"),
    ("os-path", ["train", "UNREADABLE.toml", "--out", "OUT"], "unreadable.toml: Permission"),
    ("os-path", ["train", "X.toml", "--out", "OUT"], "is a directory"),
    ("os-path", ["train", "--resume", LONG], "File name too long"),
    ("os-path", ["eval", LONG], "File name too long"),
    ("os-path", ["eval", "RUN", "--plot", f"{LONG}.png"], "--plot"),
    ("os-path", ["eval", "RUN", "--plot", "/proc/metarl-x/y.png"], "--plot /proc/metarl-x"),
    ("os-path", ["eval", "RUN", "--plot", "FILE/y.png"], "is not a directory"),
    ("os-path", ["runs", LONG], "File name too long"),
    ("os-path", ["data", "verify", "omniglot", "--data-dir", LONG], "File name too long"),
    ("os-path", ["data", "import", "omniglot", "UNREADABLE-DATA"], "background.zip: Permission"),
    # TensorBoard writes UTF-8 names only: asked for, a name of other bytes is refused first
    ("os-path", ["train", "sine", "--out", NOT_UTF8, "--tensorboard", "-q"], "not a UTF-8 name"),
    # a rate refused names the table and key that hold it
    ("key", ["train", "LR-eval-0.toml", "--out", "OUT"], "eval.inner_lr = 0.0: must be > 0"),
    ("key", ["train", "LR-eval--0.5.toml", "--out", "OUT"], "eval.inner_lr = -0.5: must be"),
    ("key", ["train", "LR-train-0.toml", "--out", "OUT"], "train.inner_lr = 0.0: must be > 0"),
    ("key", ["train", "sine", "--inner-lr", "0", "--out", "OUT"], "train.inner_lr = 0.0"),
    # the names of shipped models are names, not paths
    ("name", ["eval", "--init", "pretrained:../x"], "'../x': expected a name"),
    ("name", ["eval", "--init", "pretrained:/etc/passwd"], "'/etc/passwd'"),
    ("name", ["demo", "--model", "../weights/omniglot-5way-1shot", "--no-browser"], "'../"),
    ("name", ["demo", "--model", "a/b", "--no-browser"], "'a/b': expected a name"),
    ("name", ["eval", "pretrained:omniglot-5way-1shot"], "--init pretrained:omniglot"),
    # steps with a hole
    ("steps", ["eval", "RUN", "--steps", "1,,2"], "--steps '1,,2'"),
    ("steps", ["eval", "RUN", "--steps", "1,"], "--steps '1,'"),
    ("steps", ["eval", "RUN", "--steps", ","], "--steps ','"),
    # export targets
    ("export", ["export", "RUN", "--out", "DIR.zip"], "is a directory"),
    ("export", ["export", "RUN", "--out", "FILE/x.zip"], "is not a directory"),
    ("export", ["export", "RUN", "--out", "/proc/metarl-x/x.zip"], "--out /proc/metarl-x"),
    ("export", ["export", "RUN", "--out", f"{LONG}.zip"], "is 304 bytes"),
]
CASES += [
    ("checkpoint", ["train", "--resume", f"CKPT-{d}"], m) for d, m in CHECKPOINT_DAMAGE.items()
]
CASES += [("checkpoint", ["eval", f"CKPT-{d}"], CHECKPOINT_DAMAGE[d]) for d in EVAL_DAMAGE]
CASES += [
    ("entry-point", ["train", f"EP-{i}", "--out", "OUT", "-q"], m)
    for i, (_, m) in enumerate(ENTRY_POINTS)
]


def _digest(folder: Path) -> dict[str, str]:
    """Every file under `folder` by its sha256 (to show nothing was changed or lost)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("edges")
    run = root / "run"
    result = runner.invoke(app, ["train", "sine", "--out", str(run), "--meta-iterations", "2"])
    assert result.exit_code == 0, result.output
    found: dict[str, Path] = {"RUN": run}
    good = torch.load(run / "checkpoint.pt", weights_only=True)
    for damage in CHECKPOINT_DAMAGE:
        copy = root / f"ckpt-{damage}"
        shutil.copytree(run, copy)
        payload = torch.load(run / "checkpoint.pt", weights_only=True)
        _damage(payload, damage)
        torch.save(payload, copy / "checkpoint.pt")
        # a refused resume writes nothing, its pid in the lock file included (this process
        # trained RUN: its own pid there would hide a rewrite)
        if damage == "no-model":
            (copy / LOCK).unlink()  # nor creates one
        else:
            (copy / LOCK).write_text(FOREIGN_PID)
        found[f"CKPT-{damage}"] = copy
    assert good["iteration"] == 2
    (root / "file").write_text("not a run")
    found["FILE"] = root / "file"
    (root / "dir.zip").mkdir()
    found["DIR.zip"] = root / "dir.zip"
    (root / "x.toml").mkdir()
    found["X.toml"] = root / "x.toml"
    # unreadable whoever reads it, root included: a file of the kernel's that refuses reads
    (root / "unreadable.toml").symlink_to("/proc/1/mem")
    found["UNREADABLE.toml"] = root / "unreadable.toml"
    data = root / "unreadable-data"
    data.mkdir()
    (data / "images_background.zip").symlink_to("/proc/1/mem")
    (data / "images_evaluation.zip").symlink_to("/proc/1/mem")
    found["UNREADABLE-DATA"] = data
    modules = root / "modules"
    modules.mkdir()
    (modules / "boom_on_import.py").write_text('raise RuntimeError("boom at import")\n')
    for i, (entry_point, _) in enumerate(ENTRY_POINTS):
        recipe = root / f"ep-{i}.toml"
        recipe.write_text(
            textwrap.dedent(
                f"""\
                [task]
                name = "env-family"
                family = "EdgeCase{i}"
                entry_point = "{entry_point}"
                params = {{ goal = {{ uniform = [0.0, 1.0] }} }}
                """
            )
        )
        found[f"EP-{i}"] = recipe
    for table, rate in (("eval", 0), ("eval", -0.5), ("train", 0)):
        recipe = root / f"lr-{table}-{rate}.toml"
        recipe.write_text(f'[task]\nname = "sine"\n[{table}]\ninner_lr = {rate}\n')
        found[f"LR-{table}-{rate}.toml"] = recipe
    found["modules"] = modules
    return found


@pytest.mark.parametrize(
    "kind,args,message", CASES, ids=[f"{k}: {' '.join(a)[:50]}" for k, a, _ in CASES]
)
def test_edge_exits_2_with_one_line_naming_the_value(
    paths, tmp_path, monkeypatch, kind, args, message
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(paths["modules"]))
    before = {k: _digest(p) for k, p in paths.items() if k.startswith("CKPT-") or k == "RUN"}
    result = runner.invoke(app, substitute(args, paths, tmp_path / "out"))
    assert_refused_in_one_line(result, message, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # nothing written where the command ran
    after = {k: _digest(p) for k, p in paths.items() if k.startswith("CKPT-") or k == "RUN"}
    assert after == before  # nothing lost: metrics.jsonl and checkpoints as they were


def test_the_table_covers_each_kind_with_several_instances():
    kinds: dict[str, int] = {}
    for kind, _, _ in CASES:
        kinds[kind] = kinds.get(kind, 0) + 1
    assert all(n >= 3 for n in kinds.values()), kinds


# --- runs that share storage ----------------------------------------------------------------


def _metarl(*args: str, cwd: Path | None = None, **kwargs: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "metarl", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        **kwargs,
    )


HOLD_LOCK = """
import sys, time
from pathlib import Path
from metarl.run import RunDir
run = RunDir(Path(sys.argv[1]))
run.lock()
print("locked", flush=True)
time.sleep(60)
"""


def test_a_second_resume_of_a_run_in_use_is_refused_naming_the_holder(paths, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(paths["RUN"], run)
    metrics = (run / "metrics.jsonl").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = runner.invoke(app, ["train", "--resume", str(run)])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"(pid {holder.pid})" in lines[0], result.stderr
        assert (run / "metrics.jsonl").read_bytes() == metrics  # not truncated
        listed = runner.invoke(app, ["runs", str(tmp_path), "--json"])
        assert json.loads(listed.stdout)[0]["state"] == f"no: being trained (pid {holder.pid})"
    finally:
        holder.kill()
        holder.wait()
    # the holder died: its lock (the file still names its pid) is taken over
    assert (run / LOCK).read_text().strip() == str(holder.pid)
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["runs", str(tmp_path), "--json"])
    assert json.loads(listed.stdout)[0]["state"] == "finished"


def test_the_lock_is_released_when_training_ends(tmp_path):
    run = tmp_path / "run"
    args = ["train", "sine", "--out", str(run), "--meta-iterations", "1", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    again = RunDir(run)
    again.lock()  # the same process may lock it again: nothing held it after fit
    again.unlock()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mount tiny real tmpfs file systems (root, on Linux); skip where that is not allowed."""
    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
            capture_output=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
        mounted.append(where)
        return where

    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path, leave_kib: int) -> None:
    """Fill the file system of `folder` until about `leave_kib` KiB are free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    (folder / "filler").write_bytes(b"\0" * max(0, free - leave_kib * 1024))


def test_a_full_disk_at_start_up_is_one_line_and_leaves_nothing(tmpfs):
    disk = tmpfs(256)
    _fill(disk, 0)
    out = disk / "run"
    result = runner.invoke(app, ["train", "sine", "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
    assert str(out) in lines[0]
    assert not out.exists()


def test_a_full_disk_at_the_first_metrics_row_is_one_line_naming_the_file(tmpfs, tmp_path):
    disk = tmpfs(256)
    recipe = tmp_path / "sine.toml"
    recipe.write_text('[task]\nname = "sine"\n[train]\nmeta_iterations = 3\nlog_every = 1\n')
    _fill(disk, 8)  # the config and the lock fit, the first metrics row does not
    out = disk / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "-q", "--no-tensorboard"])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error")]
    assert errors == [
        f"error: {out / 'metrics.jsonl'}: No space left on device (free some space, or write "
        "somewhere else)"
    ], result.stderr
    assert not out.exists()  # a start that failed leaves nothing: the same --out works again


def test_a_full_disk_at_a_checkpoint_keeps_the_last_good_one(tmpfs, tmp_path):
    disk = tmpfs(512)
    recipe = tmp_path / "sine.toml"
    recipe.write_text('[task]\nname = "sine"\n[train]\nmeta_iterations = 3\ncheckpoint_every = 1\n')
    # room for the config, the lock and checkpoint 1 (~26 KB: 7 pages), not for checkpoint
    # 2 written beside it
    _fill(disk, 48)
    out = disk / "run"
    result = runner.invoke(app, ["train", str(recipe), "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error")]
    assert len(errors) == 1, result.stderr
    assert f"{out / 'checkpoint.pt'}: No space left on device" in errors[0]
    assert "the last checkpoint (iteration 1) is kept" in errors[0]
    assert "Traceback" not in result.output
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == 1
    assert not list(out.glob(".*.part"))  # no half-written file left behind
    (disk / "filler").unlink()
    resumed = runner.invoke(app, ["train", "--resume", str(out), "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == 3


def test_eval_of_a_run_it_cannot_write_to_still_evaluates(paths, tmpfs):
    disk = tmpfs(1024)
    run = disk / "run"
    shutil.copytree(paths["RUN"], run)
    shutil.rmtree(run / "eval-meta", ignore_errors=True)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    result = runner.invoke(app, ["eval", str(run), "--tasks", "3", "--steps", "0,1", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n_tasks"] == 3 and len(payload["mean"]) == 2
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: TensorBoard curves not written"), notes
    assert "Read-only file system" in notes[0]


def test_runs_lists_a_damaged_run_beside_the_others(paths, tmp_path):
    folder = tmp_path / "runs"
    for name in ("a", "junk", "z"):
        shutil.copytree(paths["RUN"], folder / name)
    (folder / "junk" / "metrics.jsonl").write_bytes(bytes(range(256)) * 8)
    result = runner.invoke(app, ["runs", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    listed = {r["name"]: r for r in json.loads(result.stdout)}
    assert sorted(listed) == ["a", "junk", "z"]
    assert listed["junk"]["state"].startswith("no: damaged metrics.jsonl")
    assert listed["a"]["state"] == listed["z"]["state"] == "finished"
    table = runner.invoke(app, ["runs", str(folder)])
    assert table.exit_code == 0 and "damaged" in table.stdout


def test_runs_plot_draws_the_readable_runs_and_refuses_other_files(paths, tmp_path):
    """`metarl runs FOLDER --plot F.png`: the training curves of the runs that have metrics
    (a damaged one beside them is skipped, still listed); a name that is not a .png, or a
    folder without logged metrics, is a one-line error and writes nothing."""
    folder = tmp_path / "runs"
    for name in ("a", "junk"):
        shutil.copytree(paths["RUN"], folder / name)
    (folder / "junk" / "metrics.jsonl").write_bytes(bytes(range(256)) * 8)
    png = tmp_path / "curves.png"
    result = runner.invoke(app, ["runs", str(folder), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
    one = tmp_path / "one.png"  # FOLDER is itself the run (it found no metrics there before)
    result = runner.invoke(app, ["runs", str(folder / "a"), "--plot", str(one)])
    assert result.exit_code == 0, result.output
    assert one.read_bytes().startswith(b"\x89PNG") and one.stat().st_size > 10_000
    bad = runner.invoke(app, ["runs", str(folder), "--plot", str(tmp_path / "curves.txt")])
    assert bad.exit_code == 2 and bad.stderr.count("\n") == 1
    assert "expected a .png file name" in bad.stderr and not (tmp_path / "curves.txt").exists()
    empty = tmp_path / "empty"
    shutil.copytree(paths["RUN"], empty / "fresh")
    (empty / "fresh" / "metrics.jsonl").write_text("")
    none = runner.invoke(app, ["runs", str(empty), "--plot", str(tmp_path / "none.png")])
    assert none.exit_code == 2 and "no run under" in none.stderr
    assert not (tmp_path / "none.png").exists()


def test_a_run_that_diverges_at_its_first_iteration_is_restartable(tmp_path):
    """Nothing to resume from (no checkpoint), so the message says how to start it over:
    lower the rate in its config.toml and resume, which starts from scratch."""
    out = tmp_path / "run"
    args = ["train", "sine", "--inner-lr", "1e6", "--meta-iterations", "2", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == DIVERGED, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert f"then `metarl train --resume {out}` starts the run over" in last
    config = out / "config.toml"
    config.write_text(config.read_text().replace("inner_lr = 1000000.0", "inner_lr = 0.03"))
    resumed = runner.invoke(app, ["train", "--resume", str(out), "-q"])
    assert resumed.exit_code == 0, resumed.output
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [2]  # the diverged row is gone
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == 2


# --- files a user shares ---------------------------------------------------------------------


def test_written_files_get_the_mode_the_umask_gives(paths, tmp_path):
    previous = os.umask(0o022)
    try:
        out = tmp_path / "run"
        args = ["train", "sine", "--out", str(out), "--meta-iterations", "1", "-q"]
        assert runner.invoke(app, args).exit_code == 0
        plot = tmp_path / "curve.png"
        args = ["eval", str(out), "--tasks", "2", "--steps", "0,1", "--plot", str(plot)]
        assert runner.invoke(app, args).exit_code == 0
        os.umask(0o077)
        private = tmp_path / "private"
        args = ["train", "sine", "--out", str(private), "--meta-iterations", "1", "-q"]
        assert runner.invoke(app, args).exit_code == 0
    finally:
        os.umask(previous)
    for path in (out / "checkpoint.pt", out / "config.toml", plot, tmp_path / "curve-fits.png"):
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert (private / "checkpoint.pt").stat().st_mode & 0o777 == 0o600


# --- the data root and the cache -------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "eval"])
def test_data_dir_is_where_train_and_eval_read(tmp_path, command):
    empty = tmp_path / "empty"
    empty.mkdir()
    if command == "train":
        args = ["train", "omniglot-5way-1shot", "--data-dir", str(empty), "--out", "OUT"]
    else:
        args = ["eval", "--init", "pretrained:omniglot-5way-1shot", "--data-dir", str(empty)]
    result = runner.invoke(app, args, env={"METARL_DATA": str(tmp_path / "elsewhere")})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"no Omniglot data in {empty / 'omniglot'}" in lines[0], lines


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((5, 20, 14, 14), np.uint8),  # another image size
        np.zeros((5, 20, 784), np.uint8),  # flattened
        np.zeros((5, 20, 28, 28), np.float32),  # another type
        np.zeros((4, 20, 28, 28), np.uint8),  # another number of characters
    ],
    ids=["14x14", "flat", "float32", "characters"],
)
def test_an_omniglot_cache_of_the_wrong_shape_is_rebuilt(tmp_path, bad):
    from metarl.data.omniglot import import_, load
    from tests.test_omniglot import SMALL, fake_omniglot

    root = tmp_path / "root"
    import_(fake_omniglot(tmp_path / "src"), root, SMALL)
    good = np.array(load(root, SMALL, progress=False).images)
    np.save(root / "omniglot" / "omniglot28.npy", bad)
    again = load(root, SMALL, progress=False)
    np.testing.assert_array_equal(again.images, good)


# --- progress ---------------------------------------------------------------------------------


def test_evaluation_reports_progress_in_tasks(paths):
    from metarl.evaluate import compare_runs

    calls: list[tuple[str, float, float]] = []
    compare_runs(
        [paths["RUN"]],
        torch.device("cpu"),
        tasks=6,
        steps=[0, 3],
        progress=lambda label, done, total: calls.append((label, done, total)),
    )
    assert calls and all(label == "run (meta)" and total == 6 for label, _, total in calls)
    done = [d for _, d, _ in calls]
    assert done == sorted(done) and done[-1] == 6


def test_fit_shows_progress_when_asked_and_not_by_default(tmp_path, capsys):
    from metarl.registry import resolve_recipe
    from metarl.train import MetaTrainer

    recipe = resolve_recipe("sine")
    recipe.train.meta_iterations = 2
    MetaTrainer.start(recipe, tmp_path / "quiet", torch.device("cpu")).fit()
    assert capsys.readouterr().err == ""  # not a terminal: no bar by default
    MetaTrainer.start(recipe, tmp_path / "shown", torch.device("cpu")).fit(progress=True)
    err = capsys.readouterr().err
    assert "meta-train" in err and "2/2" in err and "it/s" in err


# --- a plot hidden by its baseline ----------------------------------------------------------


def _curve(values: list[list[float]], metric: str = "mse") -> Any:
    from metarl.curves import Curve

    return Curve.from_values(metric, [0, 10, 32], np.array(values, dtype=float))


def test_diverged_tasks_are_counted_per_step():
    rng = np.random.default_rng(0)
    before = rng.uniform(1, 5, 50)
    after = before / 2
    blown = after.copy()
    blown[:3] = before[:3] * 100  # three tasks blow up past 10x their loss before adaptation
    blown[3] = np.nan  # one is not finite
    curve = _curve([before, after, blown])
    assert curve.diverged() == [0, 0, 4]
    payload = curve.to_json()
    assert payload["diverged"] == [0, 0, 4] and payload["curve"][2]["diverged"] == 4
    accuracy = _curve([before / 10, after / 10, after / 10], "accuracy")
    assert accuracy.diverged() == [0, 0, 0]  # a rate does not diverge by growing


def test_a_diverging_baseline_does_not_set_the_axis(tmp_path):
    from metarl.plots import _limits, plot_curves

    rng = np.random.default_rng(1)
    before = rng.uniform(3, 6, 200)
    run = _curve([before, before / 4, before / 5])
    blown = before.copy()
    blown[:4] = 40_000.0  # a mean of ~800 with a CI band of +-1,200 (the figure)
    random = _curve([before, before * 0.9, blown])
    items = [("meta-trained", run), ("random init (no meta-training)", random)]
    low, high = _limits(items, log=True)
    run_top = max(m + c for m, c in zip(run.mean, run.ci95, strict=True))
    assert run_top < high <= 3 * run_top < random.mean[2]
    assert 0 < low < min(run.mean)
    path = plot_curves(items, tmp_path / "curves.png", title="sine: run, held-out tasks")
    assert path.stat().st_size > 10_000


def test_eval_reports_diverged_tasks_in_the_table_and_the_json(paths):
    result = runner.invoke(
        app, ["eval", str(paths["RUN"]), "--init", "random", "--tasks", "200", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert len(payload["diverged"]) == len(payload["steps"])
    assert payload["diverged"][-1] > 0  # the random init under lr 0.03 at 32 steps
    table = runner.invoke(app, ["eval", str(paths["RUN"]), "--init", "random", "--tasks", "200"])
    assert "diverged" in table.stdout and f"{payload['diverged'][-1]}/200" in table.stdout


# --- the demo server under hostile or heavy use -----------------------------------------------


@pytest.mark.parametrize(
    "body,message",
    [
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (b'{"steps": ' + b"9" * 100_000 + b"}", "not valid JSON"),
        (b'{"support": [' + b"1" * 5_000 + b"]}", "not valid JSON"),
    ],
    ids=["deep-array", "deep-object", "100000-digits", "5000-digits"],
)
def test_malformed_bodies_are_a_clients_error(body, message):
    from http import HTTPStatus

    from metarl.demo.server import BadRequest, parse_classify

    with pytest.raises(BadRequest, match=message) as info:
        parse_classify(body, 5)
    assert info.value.status == HTTPStatus.BAD_REQUEST


def _ctrl_c_by_default() -> None:
    """The child takes SIGINT's default action whatever this process inherited: a shell
    without job control (``cmd &`` in a script, as CI scripts run) starts its background
    commands with SIGINT ignored, Python then installs no KeyboardInterrupt handler, and
    the demo would rightly ignore the test's Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _demo() -> tuple[subprocess.Popen, str, int]:
    import re

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    demo = subprocess.Popen(
        [sys.executable, "-m", "metarl", "demo", "--no-browser"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=_ctrl_c_by_default,
    )
    assert demo.stderr is not None
    found = re.search(r"http://([\d.]+):(\d+)/", demo.stderr.readline())
    assert found is not None
    return demo, found.group(1), int(found.group(2))


def _post(host: str, port: int, body: bytes) -> int:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        conn.request("POST", "/api/classify", body)
        return conn.getresponse().status
    finally:
        conn.close()


def test_the_demo_serves_a_burst_and_stops_on_ctrl_c_while_adapting():
    """200 concurrent requests (150 pages, 50 classifications) all answered, clients that
    reset their connection leave no traceback, and Ctrl-C with adaptations in flight ends
    the server at once (exit 0, no abort)."""
    import http.client
    import signal
    import socket
    import struct
    import threading
    import time

    from tests.test_demo import SHAPES, canvas

    demo, host, port = _demo()
    try:
        support = [canvas(SHAPES[k]) for k in SHAPES]
        quick = json.dumps({"support": support, "query": support[0], "steps": 1}).encode()
        assert _post(host, port, b"[" * 100_000) == 400
        results: list[object] = []

        def one(i: int) -> None:
            try:
                if i % 4 == 0:
                    results.append(_post(host, port, quick))
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=120)
                    conn.request("GET", "/")
                    results.append(conn.getresponse().status)
                    conn.close()
            except OSError as e:
                results.append(type(e).__name__)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert results == [200] * 200
        for _ in range(10):  # clients that go away with a reset mid-answer
            s = socket.create_connection((host, port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        slow = json.dumps({"support": support, "query": support[0], "steps": 200}).encode()

        def in_flight() -> None:
            with contextlib.suppress(OSError, http.client.HTTPException):  # the server ends
                _post(host, port, slow)

        for _ in range(3):
            threading.Thread(target=in_flight, daemon=True).start()
        time.sleep(1.0)
        started = time.monotonic()
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        demo.kill()
        demo.wait()
    assert demo.stderr is not None
    log = demo.stderr.read()
    assert demo.returncode == 0, log
    assert "Traceback" not in log and "Error" not in log, log
    assert log.strip().splitlines() == ["metarl demo: stopped"]


# --- 80 columns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["train"], ["eval"], ["demo"], ["runs"], ["export"], ["data", "fetch"]]
)
def test_help_fits_80_columns_without_cutting_flags(command):
    result = runner.invoke(app, [*command, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.output
    if command == ["train"]:
        assert "--tensorboard / --no-tensorboard" in result.output
        every = "|".join(a.value for a in Algorithm)  # each algorithm, none cut
        assert f"<{every}>" in result.output
        assert len(lines) < 50


# --- any byte in a name, Ctrl-C at any moment -------------------------------------------------


def test_a_run_named_with_bytes_that_are_not_utf8_trains_evaluates_lists_and_plots(tmp_path):
    """Every writer takes the name: TensorBoard (which encodes paths as UTF-8) is left out
    with a one-line note, torch's memory-mapped read of the checkpoint falls back to a whole
    read, and plots show the bytes as U+FFFD."""
    run = tmp_path / NOT_UTF8
    trained = _metarl("train", "sine", "--out", str(run), "--meta-iterations", "2", "-q")
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr
    notes = [ln for ln in trained.stderr.splitlines() if ln.startswith("note")]
    assert notes == [
        "note: no TensorBoard event files: the run directory's name is not UTF-8, which "
        "TensorBoard cannot write into (metrics.jsonl has every row)"
    ]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["iteration"] == 2
    assert not list(run.glob("events.out.tfevents.*"))
    plot = tmp_path / os.fsdecode(b"curve\xff.png")
    args = ["--tasks", "2", "--steps", "0,1", "--plot", str(plot), "--json"]
    evaluated = _metarl("eval", str(run), *args)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["n_tasks"] == 2
    assert "Traceback" not in evaluated.stderr
    assert plot.read_bytes().startswith(b"\x89PNG")
    listed = _metarl("runs", str(run.parent), "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["state"] == "finished"


START_DELAYS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
"""Seconds after the start: the package, `metarl.cli` and typer's parsing (~0.35 s quiet), then
torch's import."""


def _ctrl_c_at(command: list[str], delay: float, cwd: Path) -> tuple[int, str] | None:
    """Start `command`, send SIGINT `delay` s later: its exit code and stderr. A Ctrl-C that
    lands while Python itself starts (its `site`, `runpy`, the console script's `import re`,
    finding the package: ~20 ms on a quiet machine, over 0.1 s on an overloaded 2-core one)
    is Python's: no code of metarl's has run, and the process dies of the signal or prints a
    traceback that names no file of the package. Such a draw is repeated, up to five times;
    None where all five were."""
    import signal
    import time

    package = str(Path(metarl.__file__).parent) + os.sep
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    for _ in range(5):
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
            preexec_fn=_ctrl_c_by_default,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        pythons = (proc.returncode == -signal.SIGINT and not stderr) or (
            "KeyboardInterrupt" in stderr and package not in stderr
        )
        if not pythons:
            return proc.returncode, stderr
    return None


@pytest.mark.parametrize("how", ["console-script", "python-m"])
def test_ctrl_c_while_the_command_line_starts_is_one_line_and_130(tmp_path, how):
    """Ctrl-C while the package imports (before `cli.main` could catch anything: Python
    printed a KeyboardInterrupt traceback) or while typer parses the line (it turned the
    interrupt into a silent exit 130): exit 130 and the one line "interrupted", whenever it
    comes after Python's own start-up (metarl/startup.py)."""
    script = Path(sys.executable).parent / "metarl"
    assert script.exists(), f"no installed metarl beside {sys.executable}"
    command = [str(script)] if how == "console-script" else [sys.executable, "-m", "metarl"]
    args = ["train", "sine", "--out", "run", "--meta-iterations", "100000", "--threads", "1"]
    drawn = {delay: _ctrl_c_at([*command, *args], delay, tmp_path) for delay in START_DELAYS}
    reached = {d: o for d, o in drawn.items() if o is not None}
    assert len(reached) >= len(START_DELAYS) - 2, f"Python's own start-up outlasted {drawn}"
    wrong = {d: o for d, o in reached.items() if o != (130, "interrupted\n")}
    assert not wrong, wrong
    assert not (tmp_path / "run").exists()  # stopped before training started


def test_a_program_that_imports_metarl_keeps_its_ctrl_c():
    """Only the command line's process exits quietly on Ctrl-C; `import metarl` in a user's
    program (here `python -c`) leaves SIGINT raising KeyboardInterrupt."""
    code = "import metarl, signal; print(signal.getsignal(2) is signal.default_int_handler)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "True", done.stderr


def _interrupt_twice_after_the_checkpoint(tmp_path: Path, delay: float) -> tuple[int, str]:
    """Train, Ctrl-C once (a checkpoint is written and said), then Ctrl-C twice more `delay`
    seconds after that line, as an impatient user does: the exit code and stderr."""
    import signal
    import time

    out = tmp_path / f"run-{delay}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    args = ["train", "sine", "--meta-iterations", "100000", "--out", str(out), "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "metarl", *args, "--threads", "1"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        preexec_fn=_ctrl_c_by_default,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()  # the run directory's line: training starts
        assert first.startswith("run directory"), first
        deadline = time.monotonic() + 60
        while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stopped = proc.stderr.readline()
        assert "checkpoint written" in stopped, stopped
        time.sleep(delay)
        for _ in range(2):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            time.sleep(0.005)
        rest = proc.stderr.read()
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, first + stopped + rest


@pytest.mark.parametrize("delay", [0.0, 0.02, 0.05, 0.1, 0.2])
def test_ctrl_c_again_after_the_checkpoint_line_ends_quietly_with_130(tmp_path, delay):
    """The command has said what it did; Ctrl-C while it exits (its atexit callbacks, torch's
    finalizers: the interpreter then printed `Exception ignored in atexit callback ...
    KeyboardInterrupt`) ends it at once, exit 130, nothing more on stderr. (Late in the
    interpreter's exit it restores SIGINT's default action: the process then dies of the
    signal, which a shell reports as 130 too.)"""
    import signal

    code, stderr = _interrupt_twice_after_the_checkpoint(tmp_path, delay)
    assert code in (130, -signal.SIGINT), stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 2 and "checkpoint written" in lines[1], stderr


def test_the_docs_say_what_a_run_that_diverges_first_leaves():
    """docs/cli.md once said such a run leaves no directory; it keeps it, and says how to
    start over (`test_a_run_that_diverges_at_its_first_iteration_is_restartable`)."""
    page = " ".join((Path(__file__).parents[1] / "docs" / "cli.md").read_text().split())
    assert "A run that diverges before its first checkpoint keeps its directory" in page
    assert "then `metarl train --resume RUN` starts the run from scratch" in page


# --- defaults that learn ----------------------------------------------------------------------


def test_imaml_learns_with_its_default_lambda(tmp_path):
    """sine-imaml without its `imaml_lambda` line (so with the default): after 300
    meta-iterations one step of adaptation halves the error (at the old default 1.0 it
    went from 4.66 to 4.42; at 10, 4.67 to 1.23: docs/results.md)."""
    from metarl.registry import catalog_recipes

    text = catalog_recipes()["sine-imaml"].read_text()
    recipe = tmp_path / "imaml-default.toml"
    recipe.write_text("\n".join(ln for ln in text.splitlines() if "imaml_lambda" not in ln))
    run = tmp_path / "run"
    args = ["train", str(recipe), "--out", str(run), "--meta-iterations", "300", "-q"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["eval", str(run), "--tasks", "100", "--steps", "0,1", "--json"])
    assert result.exit_code == 0, result.output
    before, after = json.loads(result.stdout)["mean"]
    assert after < 0.5 * before, (before, after)


def test_an_algorithm_flag_on_a_recipe_made_for_another_names_the_one_made_for_it(tmp_path):
    """`metarl train sine --algorithm imaml` keeps sine's Reptile settings (its init got
    worse to adapt from); a note names the catalog's recipe for iMAML and what it changes."""
    out = tmp_path / "run"
    args = ["train", "sine", "--algorithm", "imaml", "--meta-iterations", "1", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    notes = [ln for ln in result.stderr.splitlines() if ln.startswith("note")]
    assert len(notes) == 1, result.stderr
    assert "sine's settings were chosen for reptile" in notes[0]
    assert "the recipe made for imaml is `metarl train sine-imaml`" in notes[0]
    assert "inner_steps = 20, inner_lr = 0.02" in notes[0]
    own = ["train", "sine-imaml", "--meta-iterations", "1", "--out", str(tmp_path / "own")]
    assert "note" not in runner.invoke(app, own).stderr
