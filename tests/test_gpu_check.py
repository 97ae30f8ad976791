"""scripts/tools/gpu_check.py: its logic runs here with the CPU in the GPU's place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "tools" / "gpu_check.py"
ENV = {**os.environ, "PYTHONPATH": str(SCRIPT.parent.parent)}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_says_so_and_exits_0():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    assert "no CUDA device here" in done.stdout


def test_dry_run_trains_resumes_and_prints_the_table():
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--device",
            "cpu",
            "--only",
            "sine",
            "--sine-iterations",
            "6",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("| sine |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "0.00e+00"  # cpu against cpu: identical weights
    assert cells[5] == "yes" and cells[6] == "ok"  # the resumed run equals the straight one
    assert "1/1 checks passed" in done.stdout
