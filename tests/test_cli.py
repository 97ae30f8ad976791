"""The command line as a user meets it: exit codes, one-line errors, JSON on stdout."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from metarl.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = invoke(
        "train", "sine", "--out", str(out), "--meta-iterations", "20", "--meta-batch", "4", "-q"
    )
    assert result.exit_code == 0, result.output
    return out


def test_train_writes_a_run(trained_run):
    assert (trained_run / "config.toml").is_file()
    assert (trained_run / "checkpoint.pt").is_file()
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 20


def test_eval_json_is_one_object_with_the_curve(trained_run):
    result = invoke("eval", str(trained_run), "--tasks", "50", "--steps", "0,1,5", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metric"] == "mse" and payload["n_tasks"] == 50
    assert payload["steps"] == [0, 1, 5]
    assert [c["step"] for c in payload["curve"]] == [0, 1, 5]
    assert payload["mean"][2] < payload["mean"][0]  # adaptation helps
    assert all(c > 0 for c in payload["ci95"])
    assert payload["iteration"] == 20  # the checkpoint evaluated (a run may still be training)
    assert payload["interval"] == "normal"
    assert len(payload["per_task"]) == 3 and len(payload["per_task"][0]) == 50


def test_eval_plot_writes_pngs(trained_run, tmp_path):
    png = tmp_path / "curve.png"
    result = invoke("eval", str(trained_run), "--tasks", "20", "--plot", str(png))
    assert result.exit_code == 0, result.output
    for path in (png, tmp_path / "curve-fits.png"):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_of_a_finished_run_is_a_no_op(trained_run):
    result = invoke("train", "--resume", str(trained_run), "-q")
    assert result.exit_code == 0, result.output
    # the whole run's training time, none of it in this session
    assert re.search(
        r"done: 20 meta-iterations in \d+\.\d s \(0\.0 s in this session\)", result.output
    )


# Bad invocations: tests/test_bad_input.py (one table).


def test_malformed_recipe_file_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[task]\nname = "sine"\n[train]\nmeta_batch = [')
    result = invoke("train", str(bad), "--out", str(tmp_path / "run"))
    assert result.exit_code == 2
    assert "bad.toml: malformed TOML" in result.stderr


def test_tasks_list_and_show():
    result = invoke("tasks", "list")
    assert result.exit_code == 0 and "sine" in result.stdout
    shown = invoke("tasks", "show", "sine", "--toml")
    assert shown.exit_code == 0
    assert 'name = "sine"' in shown.stdout and "meta_batch" in shown.stdout


def test_tasks_show_says_where_each_value_comes_from(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    mine = tmp_path / "mine.toml"
    mine.write_text('[task]\nname = "sine"\nphase = [0.0, 3.14]\n[train]\nmeta_batch = 7\n')
    shown = invoke("tasks", "show", str(mine), "--set", "train.inner_lr=0.05")
    assert shown.exit_code == 0, shown.output
    rows = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if "│" in line}
    assert "file" in rows["train.meta_batch"] and "7" in rows["train.meta_batch"]
    assert "│ default" in rows["train.inner_steps"]
    assert "command line" in rows["train.inner_lr"] and "0.05" in rows["train.inner_lr"]
    assert "default of SineDistribution" in rows["task.amplitude"]
    assert "default of SineDistribution" in rows["model.hidden"]
    # a value reads as the recipe writes it, the outer step's name included
    assert rows["train.outer_optimizer"].split("│")[2].strip() == "'sgd'"
    assert rows["train.algorithm"].split("│")[2].strip() == "'reptile'"


def test_eval_transductive_flag(trained_run):
    """The sine MLP has no batch statistics, so both evaluation modes give the same curve."""
    payloads = []
    for flag in ("--transductive", "--no-transductive"):
        result = invoke("eval", str(trained_run), "--tasks", "20", "--steps", "0,3", "--json", flag)
        assert result.exit_code == 0, result.output
        payloads.append(json.loads(result.stdout))
    assert [p["transductive"] for p in payloads] == [True, False]
    for a, b in zip(payloads[0]["mean"], payloads[1]["mean"], strict=True):
        assert a == pytest.approx(b, rel=1e-5)


def test_amp_is_recorded_in_the_run_and_refused_for_rl(tmp_path):
    out = tmp_path / "amp"
    result = invoke("train", "sine", "--out", str(out), "--meta-iterations", "2", "--amp", "-q")
    assert result.exit_code == 0, result.output
    assert "amp = true" in (out / "config.toml").read_text()
    rl = invoke("train", "navigation2d", "--out", str(tmp_path / "rl"), "--amp", "-q")
    assert rl.exit_code == 2
    assert "train.amp = true" in rl.output and "amp = false" in rl.output
    assert not (tmp_path / "rl").exists()


def test_train_into_a_log_file_prints_plain_progress_lines(tmp_path, monkeypatch):
    """A live bar draws nothing into a file (`nohup metarl train ... > log`): there, a plain
    line at the set interval and at the end, with the rate, the ETA and the loss."""
    import re

    from metarl import progress

    monkeypatch.setattr(progress, "LOG_LINE_SECONDS", 0.0)  # a line every iteration
    out = tmp_path / "run"
    result = invoke("train", "sine", "--meta-iterations", "4", "--out", str(out))
    assert result.exit_code == 0, result.output
    lines = [x for x in result.stderr.splitlines() if x.startswith("meta-train")]
    assert [x.split(",")[0] for x in lines] == [f"meta-train {i}/4" for i in range(1, 5)]
    assert re.fullmatch(r"meta-train 4/4, [\d.]+ (it/s|s/it), eta 0m00s, loss [\d.]+", lines[-1])


def test_a_long_operation_into_a_log_file_prints_plain_lines(monkeypatch):
    """progress_bar in a log file (a live bar draws nothing there): a plain line per task at
    the set interval, with done/total, the rate and the ETA."""
    import io
    import re

    from rich.console import Console

    from metarl import progress

    monkeypatch.setattr(progress, "LOG_LINE_SECONDS", 0.0)
    log = io.StringIO()
    with progress.progress_bar("decoding", Console(file=log), unit="images") as bar:
        task = bar.add_task("decode", total=3)
        for _ in range(3):
            bar.advance(task)
    lines = log.getvalue().splitlines()
    assert [x.split(" images")[0] for x in lines] == [f"decode: {i}/3" for i in (1, 2, 3)]
    assert re.fullmatch(r"decode: 3/3 images, [\d.,]+ images/s, eta 0m00s", lines[-1])
    quiet = io.StringIO()
    with progress.progress_bar("decoding", Console(file=quiet), enabled=False) as bar:
        bar.advance(bar.add_task("decode", total=3))
    assert quiet.getvalue() == ""
