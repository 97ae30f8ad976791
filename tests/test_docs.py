"""The examples of docs/custom-tasks.md run as written; every script is named in the docs."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from metarl.cli import app
from metarl.registry import _REGISTRY

DOC = Path(__file__).resolve().parent.parent / "docs" / "custom-tasks.md"


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def train_and_eval(recipe: Path, run: Path, *eval_args: str) -> str:
    """`metarl train RECIPE --out RUN`, then `metarl eval RUN ... --json`; its stdout."""
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(recipe), "--out", str(run), "-q"])
    assert trained.exit_code == 0, trained.output
    evaluated = runner.invoke(app, ["eval", str(run), *eval_args, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    return evaluated.stdout


def test_the_toml_variant_trains_and_evaluates(tmp_path):
    recipe = tmp_path / "my-sine.toml"
    recipe.write_text(blocks("toml")[0])
    out = train_and_eval(recipe, tmp_path / "run", "--tasks", "100", "--steps", "0,1,10")
    assert '"steps": [0, 1, 10]' in out


def test_the_python_class_is_registered_trained_and_evaluated(tmp_path, monkeypatch, capsys):
    code = blocks("python")[0]
    assert len(re.search(r"@dataclass.*?build_model.*?\n\n", code, flags=re.S)[0].splitlines()) < 40
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    finally:
        _REGISTRY.pop("lines", None)
    before, after = eval(capsys.readouterr().out)
    assert after < before
    assert (tmp_path / "runs" / "lines" / "checkpoint.pt").is_file()


def test_a_custom_gymnasium_env_meta_trains_through_the_rl_protocol(tmp_path, monkeypatch, capsys):
    code = blocks("python")[1]
    assert "class Corridors" in code and "make_env" in code
    monkeypatch.chdir(tmp_path)
    try:
        exec(compile(code, str(DOC), "exec"), {"__name__": "__main__"})
    finally:
        _REGISTRY.pop("corridors", None)
    before, after = eval(capsys.readouterr().out)
    assert after > before  # three PPO updates move toward the target
    assert (tmp_path / "runs" / "corridors" / "checkpoint.pt").is_file()


def test_a_twelve_line_toml_meta_trains_on_a_gymnasium_env(tmp_path):
    example = DOC.parent / "examples" / "heavy-pendulum.toml"
    assert example.read_text() in DOC.read_text()  # the docs show the tested file
    assert len(example.read_text().splitlines()) <= 12
    out = train_and_eval(example, tmp_path / "run", "--tasks", "3", "--steps", "0,1")
    assert '"metric": "return"' in out


def test_an_unknown_env_attribute_is_named(tmp_path):
    bad = tmp_path / "bad.toml"
    text = (DOC.parent / "examples" / "heavy-pendulum.toml").read_text()
    bad.write_text(text.replace("l = {", "length = {").replace("HeavyPendulum", "BadPendulum"))
    result = CliRunner().invoke(app, ["train", str(bad), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "length" in result.stderr


def test_every_script_is_named_on_a_docs_page():
    """Each benchmark and tool under scripts/ is named (by its path) on the page whose table
    or picture it produces."""
    root = DOC.parent.parent
    pages = "\n".join(p.read_text() for p in DOC.parent.glob("*.md"))
    scripts = sorted(root.glob("scripts/*/*.py"))
    assert scripts
    unnamed = [s.relative_to(root).as_posix() for s in scripts]
    unnamed = [s for s in unnamed if s not in pages and not s.endswith("__init__.py")]
    assert not unnamed, f"scripts not named in docs/*.md: {unnamed}"


def headline_rows(page: Path, link_prefix: str) -> list[str]:
    """The rows of `page`'s headline-results table, links made relative to docs/."""
    lines = page.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| sine, default recipe"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return [line.replace(f"]({link_prefix}results.md", "](results.md") for line in lines[start:end]]


def test_the_readme_and_the_docs_home_show_the_same_headline_results():
    """The docs' home page repeats the README's headline table; one edited without the other
    left the home page two results behind once."""
    root = DOC.parent.parent
    assert headline_rows(root / "README.md", "docs/") == headline_rows(DOC.parent / "index.md", "")
