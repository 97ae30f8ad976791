"""The README's Python example runs as written (so the docs cannot rot).

It trains the full default sine recipe and evaluates it on 1000 held-out tasks, so it is also
the check of the recipe's quality targets: MSE <= 0.10 after 10 steps, <= 0.66 after 1."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_sine_example_meets_the_quality_targets(tmp_path, monkeypatch, capsys):
    (block,) = [b for b in python_blocks() if "MetaTrainer" in b]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out
    curve = eval(printed.strip())  # {0: ..., 1: ..., 10: ...}
    assert set(curve) == {0, 1, 10}
    assert curve[10] <= 0.10
    assert curve[1] <= 0.66
    assert curve[0] > 2.0  # zero-shot prediction is impossible: the gain is adaptation
    assert (tmp_path / "runs" / "sine-py" / "checkpoint.pt").is_file()
