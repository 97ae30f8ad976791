"""Every bad invocation a user can make answers the same way: exit code 2, exactly one line on
stderr that names the value, no traceback, and nothing written. One table drives the test; the
README's reliability table counts its rows.

Placeholders in the arguments: RUN (a trained run), OUT (a fresh path the test then checks
was not created), FILE (a regular file), DIR (a directory), FOREIGN (a directory holding
someone else's notes.txt and metrics.jsonl), EDITED (a run whose config.toml describes another
network), PICKLE (a run whose checkpoint is a raw pickle), and TOML:<text> (a recipe file).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from metarl.cli import app
from tests.refusals import assert_refused_in_one_line, substitute

runner = CliRunner()

SINE_TOML = '[task]\nname = "sine"\n'
NAV_TOML = '[task]\nname = "navigation2d"\n'

# (arguments, environment, a fragment the one line must hold: the refused value)
BAD_INPUTS: list[tuple[list[str], dict[str, str], str]] = [
    # names and choices
    (["train", "sinus", "--out", "OUT"], {}, "unknown task 'sinus'"),
    (["train", "sine", "--device", "tpu", "--out", "OUT"], {}, "--device 'tpu'"),
    (["train", "sine", "--algorithm", "maml2", "--out", "OUT"], {}, "'maml2'"),
    (["train", "sine", "--inner-optimizer", "rmsprop", "--out", "OUT"], {}, "'rmsprop'"),
    (
        ["train", "sine", "--outer-optimizer", "lbfgs", "--out", "OUT"],
        {},
        "train.outer_optimizer = 'lbfgs': expected one of sgd, adam, trpo, promp",
    ),
    (["train", "sine", "--bogus", "--out", "OUT"], {}, "--bogus"),
    (["train", "sine", "--meta-batch", "abc", "--out", "OUT"], {}, "'abc'"),
    (["train", "sine", "--seed", "1.5", "--out", "OUT"], {}, "'1.5'"),
    (["train"], {}, "give a TASK"),
    (["tasks", "show", "nope"], {}, "unknown task 'nope'"),
    (["tasks", "show", "sine", "--set", "train.meta_batch"], {}, "--set 'train.meta_batch'"),
    (["tasks", "show", "sine", "--set", "train.bogus=1"], {}, "unknown key 'bogus'"),
    (["tasks", "show", "sine", "--set", "task.bogus=1"], {}, "[task] unknown key 'bogus'"),
    (["tasks", "show", "sine", "--set", "model.width=1"], {}, "[model] unknown key 'width'"),
    (["train", f"TOML:{SINE_TOML}bogus = 2\n", "--out", "OUT"], {}, "[task] unknown key"),
    (["train", f"TOML:{SINE_TOML}[model]\nwidth = 2\n", "--out", "OUT"], {}, "'width'"),
    (["eval", "RUN", "--init", "best"], {}, "--init 'best'"),
    (["data", "verify", "imagenet-22k"], {}, "'imagenet-22k'"),
    # numbers out of range
    (["train", "sine", "--inner-steps", "-2", "--out", "OUT"], {}, "train.inner_steps = -2"),
    (["train", "sine", "--seed", "-1", "--out", "OUT"], {}, "train.seed = -1"),
    (["train", "sine", "--seed", str(2**64), "--out", "OUT"], {}, f"train.seed = {2**64}"),
    (["train", "sine", "--meta-batch", "1000000000", "--out", "OUT"], {}, "= 1000000000"),
    (["train", "sine", "--meta-iterations", str(10**10), "--out", "OUT"], {}, str(10**10)),
    (["train", "sine", "--dist-timeout", "-1", "--out", "OUT"], {}, "--dist-timeout -1.0"),
    (["eval", "RUN", "--steps", "0,-1"], {}, "--steps '0,-1'"),
    (["train", "sine", "--threads", "0", "--out", "OUT"], {}, "--threads 0"),
    (["train", "sine", "--out", "OUT"], {"METARL_THREADS": "many"}, "'many'"),
    (["eval", "RUN", "--steps", "a,b"], {}, "--steps 'a,b'"),
    (["eval", "RUN", "--steps", "0,10000000"], {}, "--steps '0,10000000'"),
    (["eval", "RUN", "--tasks", "100000000"], {}, "--tasks 100000000"),
    # non-finite numbers, on the command line and in TOML
    (["train", "sine", "--inner-lr", "nan", "--out", "OUT"], {}, "train.inner_lr = nan"),
    (["train", "sine", "--inner-lr", "inf", "--out", "OUT"], {}, "train.inner_lr = inf"),
    (["train", "sine", "--meta-step", "nan", "--out", "OUT"], {}, "train.meta_step = nan"),
    (["train", "sine", "--meta-step-final", "-inf", "--out", "OUT"], {}, "= -inf"),
    (["train", "sine", "--dist-timeout", "nan", "--out", "OUT"], {}, "--dist-timeout nan"),
    (["train", f"TOML:{SINE_TOML}[train]\ninner_lr = nan\n", "--out", "OUT"], {}, "= nan"),
    (["train", f"TOML:{SINE_TOML}amplitude = [0.1, inf]\n", "--out", "OUT"], {}, "[1] = inf"),
    (["train", f"TOML:{SINE_TOML}[eval]\ninner_lr = -inf\n", "--out", "OUT"], {}, "= -inf"),
    (["train", f"TOML:{NAV_TOML}[learner]\ngamma = nan\n", "--out", "OUT"], {}, "gamma = nan"),
    # markup-like text survives ([train] is not eaten as a rich tag)
    (["train", f"TOML:{SINE_TOML}[train]\nbogus = 1\n", "--out", "OUT"], {}, "[train] unknown"),
    # paths
    (["eval", "/no/such/run"], {}, "run directory '/no/such/run' does not exist"),
    (["train", "--resume", "FILE"], {}, "is a file, not a run directory"),
    (["train", "DIR", "--out", "OUT"], {}, "is a directory; expected a .toml file"),
    (["train", "sine", "--out", "FILE/run"], {}, "is not a directory"),
    (["train", "sine", "--out", "/proc/metarl-test/run"], {}, "--out /proc/metarl-test/run"),
    (["train", "sine", "--out", "FOREIGN"], {}, "not a metarl run (holds metrics.jsonl"),
    (["eval", "RUN", "--plot", "FILE/curve.png"], {}, "--plot"),
    (["eval", "RUN", "--plot", "curve.svg"], {}, "--plot curve.svg"),
    (["eval", "EDITED"], {}, "describes another model"),
    (["train", "--resume", "PICKLE"], {}, "not a readable metarl checkpoint"),
    (["train", "--resume", "RUN", "--meta-batch", "3"], {}, "(only --meta-iterations, to"),
    (["train", "--resume", "RUN", "--meta-iterations", "1"], {}, "has done 2 iterations"),
    # the torchrun environment
    (["train", "sine", "--out", "OUT"], {"WORLD_SIZE": "2"}, "RANK is not"),
    (["train", "sine", "--out", "OUT"], {"WORLD_SIZE": "two"}, "WORLD_SIZE='two'"),
    (["train", "sine", "--out", "OUT"], {"WORLD_SIZE": "2", "RANK": "5"}, "RANK=5"),
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    result = runner.invoke(
        app, ["train", "sine", "--out", str(run), "--meta-iterations", "2", "-q"]
    )
    assert result.exit_code == 0, result.output
    edited = root / "edited"
    shutil.copytree(run, edited)
    config = edited / "config.toml"
    config.write_text(config.read_text().replace("hidden = [64, 64]", "hidden = [32, 32]"))
    pickled = root / "pickled"
    shutil.copytree(run, pickled)
    (pickled / "checkpoint.pt").write_bytes(pickle.dumps({"iteration": 1}))
    (root / "file").write_text("not a run")
    (root / "dir").mkdir()
    foreign = root / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    (foreign / "metrics.jsonl").write_text('{"mine": 1}\n')
    return {
        "RUN": run,
        "EDITED": edited,
        "PICKLE": pickled,
        "FILE": root / "file",
        "DIR": root / "dir",
        "FOREIGN": foreign,
    }


def _args(args: list[str], paths: dict[str, Path], tmp_path: Path) -> list[str]:
    """`TOML:text` becomes a recipe file holding text; the rest as `substitute` does."""
    recipe = tmp_path / "recipe.toml"
    for a in args:
        if a.startswith("TOML:"):
            recipe.write_text(a[len("TOML:") :])
    paths = {**paths, "TOML": recipe}
    return substitute(
        [("TOML" if a.startswith("TOML:") else a) for a in args], paths, tmp_path / "out"
    )


@pytest.mark.parametrize(
    "args,env,message", BAD_INPUTS, ids=[" ".join(a)[:60] for a, _, _ in BAD_INPUTS]
)
def test_bad_input_exits_2_with_one_line_naming_the_value(
    paths, tmp_path, monkeypatch, args, env, message
):
    monkeypatch.chdir(tmp_path)
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    foreign_metrics = (paths["FOREIGN"] / "metrics.jsonl").read_text()
    result = runner.invoke(app, _args(args, paths, tmp_path), env=env)
    assert_refused_in_one_line(result, message, tmp_path / "out")  # nothing half-written
    assert (paths["FOREIGN"] / "metrics.jsonl").read_text() == foreign_metrics


def test_a_failed_start_leaves_no_directory(tmp_path, monkeypatch):
    """A start that fails after the run directory was created (here: out of memory in the
    first iteration) removes it, so the same --out works again."""
    from metarl.train import MetaTrainer

    def no_memory(self):
        raise MemoryError

    monkeypatch.setattr(MetaTrainer, "step", no_memory)
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "sine", "--out", str(out), "-q"])
    assert result.exit_code == 2, result.output
    last = result.stderr.strip().splitlines()[-1]  # after "run directory: ..."
    assert last.startswith("error: out of memory with train.meta_batch = 32")
    assert not out.exists()


def test_ctrl_c_during_start_up_is_one_line_and_exit_130(tmp_path, monkeypatch):
    from metarl.train import MetaTrainer

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(MetaTrainer, "start", interrupted)
    result = runner.invoke(app, ["train", "sine", "--out", str(tmp_path / "run")])
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted"
    assert not (tmp_path / "run").exists()
