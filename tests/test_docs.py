"""The examples of docs/custom-tasks.md run as written; every script is named in the docs."""

from __future__ import annotations

import importlib.util
import json
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
    pages = "\n".join(p.read_text() for p in DOC.parent.rglob("*.md"))
    scripts = sorted(root.glob("scripts/*/*.py"))
    assert scripts
    unnamed = [s.relative_to(root).as_posix() for s in scripts]
    unnamed = [s for s in unnamed if s not in pages and not s.endswith("__init__.py")]
    assert not unnamed, f"scripts not named in docs/*.md: {unnamed}"


def load_script(path: Path):  # noqa: ANN201 - a module loaded from a file
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_home_copies_the_readmes_shared_blocks():
    """The home page repeats the README's intro, tour, "what runs on what", headline results
    and list of pages, the results summary its headline results (one edited without the
    other left the home page two results and a benchmark behind once):
    `scripts/tools/sync_readme.py` copies them; drift fails here."""
    root = DOC.parent.parent
    sync = load_script(root / "scripts" / "tools" / "sync_readme.py")
    readme, home = (root / "README.md").read_text(), (DOC.parent / "index.md").read_text()
    shared = {"intro", "tour", "what-runs", "headline", "pages"}
    assert set(sync.blocks(readme)) == shared == set(sync.blocks(home))
    assert sync.drift(readme, home) == []
    edited = readme.replace("| Reptile (`reptile`) | `sine` |", "| Reptile (`reptile`) | `sin` |")
    assert sync.drift(edited, home) == ["what-runs"]
    results = (DOC.parent / "results.md").read_text()  # the summary repeats the headline
    assert set(sync.blocks(results)) == {"headline"} and sync.drift(readme, results) == []


def test_every_recipe_the_tables_name_is_in_the_catalog():
    """Each `name` in a cell of "what runs on what" is a catalog recipe (`-push-maml` style
    cells abbreviate the name before them)."""
    root = DOC.parent.parent
    text = (root / "README.md").read_text()
    table = text[text.index("## What runs on what") : text.index("<!-- combinations -->")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "`" in line]
    cells = [cell for row in rows for cell in row.split("|")[2:]]
    names = [n for cell in cells for n in re.findall(r"`([\w-]+)`", cell)]
    recipes = [n for n in names if not n.startswith("-") and n not in {"reptile"}]
    assert len(recipes) > 20
    missing = [n for n in recipes if not (root / "tasks" / f"{n}.toml").is_file()]
    assert not missing, missing


def test_the_shipped_weights_name_a_script_that_exists():
    root = DOC.parent.parent
    info = json.loads((root / "metarl" / "weights" / "omniglot-5way-1shot.json").read_text())
    script = info["command"].split()[1]
    assert (root / script).is_file(), script
