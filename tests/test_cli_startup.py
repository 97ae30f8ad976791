"""The quick commands answer without importing torch, and Ctrl-C while a command imports it
is one line and exit code 130 (the times: scripts/benchmarks/bench_cli_startup.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}


def imported(*args: str, cwd: Path) -> set[str]:
    """The modules `python -m metarl ARGS` imports (`-X importtime` lists each one)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "metarl", *args],
        capture_output=True,
        text=True,
        env=env(),
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.split("|")[-1].strip() for line in lines}


@pytest.mark.parametrize(
    "args",
    [["--help"], ["--version"], ["tasks", "list"], ["runs", "RUNS"]],
    ids=["help", "version", "tasks-list", "runs"],
)
def test_the_quick_commands_do_not_import_torch(args, tmp_path):
    argv = [str(tmp_path) if a == "RUNS" else a for a in args]
    modules = imported(*argv, cwd=tmp_path)
    assert "metarl.cli" in modules  # the listing really ran through the command line
    assert "torch" not in modules


def test_runs_reads_a_real_checkpoint_without_torch(tmp_path):
    """`runs` says where a trained run stands (its checkpoint read without torch)."""
    trained = subprocess.run(
        [sys.executable, "-m", "metarl", "train", "sine", "--meta-iterations", "3"]
        + ["--meta-batch", "2", "--out", "runs/a", "--threads", "1", "-q"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert "torch" not in imported("runs", cwd=tmp_path)
    listed = subprocess.run(
        [sys.executable, "-m", "metarl", "runs", "--json"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
    )
    assert '"iteration": 3' in listed.stdout and '"state": "finished"' in listed.stdout


def torch_is_loading(pid: int) -> bool:
    """Whether the process has mapped libtorch: torch's import is under way (it takes a
    second or more after that)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see torch load")
def test_ctrl_c_while_torch_imports_is_one_line_and_exit_130(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "metarl", "train", "sine", "--out", "run", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 60
    while not torch_is_loading(process.pid) and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("interrupted"), stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists() or "checkpoint written" in stderr


def test_runs_never_runs_code_from_a_checkpoint(tmp_path):
    """A checkpoint that names another global (here one that would write a file) is not
    unpickled by the torch-free reader: `torch.load(weights_only=True)` refuses it, `runs`
    lists the run as unreadable and nothing of the file runs."""
    import pickle
    import zipfile

    run = tmp_path / "runs" / "a"
    trained = subprocess.run(
        [sys.executable, "-m", "metarl", "train", "sine", "--meta-iterations", "2"]
        + ["--meta-batch", "2", "--out", str(run), "--threads", "1", "-q"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # noqa: ANN204 - pickle's protocol
            return (Path.touch, (marker,))

    with zipfile.ZipFile(run / "checkpoint.pt", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"format": 1, "x": Payload()}))
    listed = subprocess.run(
        [sys.executable, "-m", "metarl", "runs", "--json"],
        capture_output=True,
        text=True,
        env=env(),
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert '"state": "no: unreadable checkpoint"' in listed.stdout
    assert not marker.exists()
