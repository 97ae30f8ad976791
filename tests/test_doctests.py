"""The API reference's examples run: doctest over the public docstrings of the modules users
touch, and every name the README and the docs pages use exists and has a page.

The examples are cheap on purpose (CPU, no datasets, a few meta-iterations of sine at most),
so this file runs in seconds.
"""

from __future__ import annotations

import doctest
import importlib
import re
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

MODULES = (
    "metarl",
    "metarl.config",
    "metarl.registry",
    "metarl.protocol",
    "metarl.envs",
    "metarl.envs.distribution",
    "metarl.distributions.sine",
    "metarl.train",
    "metarl.run",
    "metarl.evaluate",
    "metarl.curves",
    "metarl.distributed",
    "metarl.algorithms",
    "metarl.rl.settings",
    "metarl.models",
    "metarl.losses",
    "metarl.export",
    "metarl.zoo",
    "metarl.plots",
    "metarl.learners",
    "metarl.learners.supervised",
    "metarl.learners.inner_loop",
    "metarl.learners.second_order",
    "metarl.learners.rl_core",
    "metarl.learners.batched_rl",
    "metarl.learners.sb3_ppo",
    "metarl.learners.maml_rl",
    "metarl.learners.rl2",
    "metarl.functional",
    "metarl.outer_registry",
)
"""The modules whose docstring examples run (the API pages of docs/api/ render them)."""

WITH_EXAMPLES = (
    "metarl.register_task",
    "metarl.make_distribution",
    "metarl.pretrained",
    "metarl.config.load_recipe_file",
    "metarl.config.recipe_from_dict",
    "metarl.config.with_overrides",
    "metarl.registry.resolve_recipe",
    "metarl.train.MetaTrainer",
    "metarl.evaluate.evaluate_run",
    "metarl.protocol.task_rng",
    "metarl.distributions.sine.SineDistribution",
    "metarl.envs.distribution.EnvFamilyDistribution",
    "metarl.plots.plot_curves",
    "metarl.learners.build_meta_learner",
    "metarl.learners.supervised.SupervisedMetaLearner",
    "metarl.learners.inner_loop.InnerLoop",
    "metarl.learners.second_order.unrolled_meta_gradient",
    "metarl.learners.rl_core.RLMetaLearnerBase",
    "metarl.learners.rl_core.RolloutSchedule",
    "metarl.learners.rl_core.with_env_steps",
    "metarl.learners.sb3_ppo.SB3MetaLearner",
    "metarl.learners.maml_rl.MAMLRLMetaLearner",
    "metarl.learners.rl2.RL2MetaLearner",
    "metarl.functional.adapt",
    "metarl.train.Callback",
    "metarl.functional.maml",
)
"""What a new user reaches for first: each has an example."""

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _resolve(dotted: str) -> object:
    """The object a dotted name names (a module, or an attribute of one, nested)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.fixture
def restored_registry():
    """Examples register tasks (`register_task`): the registry is put back afterwards, so
    other tests see the built-in tasks only."""
    from metarl import registry

    saved = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name, restored_registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing an example writes lands in the checkout,
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # nor stays behind in /tmp
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = [t for t in finder.find(module, name) if t.examples]
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"


def test_every_module_with_examples_is_run():
    """A module whose docstrings hold examples (`>>> `) is in MODULES, so they run."""
    package = ROOT / "metarl"
    with_examples = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in package.rglob("*.py")
        if ">>> " in path.read_text()
    }
    assert sorted(with_examples - set(MODULES)) == []


@pytest.mark.parametrize("dotted", WITH_EXAMPLES)
def test_the_first_names_a_user_meets_have_examples(dotted):
    doc = _resolve(dotted).__doc__ or ""
    assert "Examples:" in doc and ">>> " in doc, f"{dotted}: no Examples section"
    module = dotted.rsplit(".", 1)[0] if dotted.count(".") > 1 else "metarl"
    assert any(module == m or module.startswith(m + ".") for m in MODULES)


DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
DOTTED = re.compile(r"(?<![\w/.-])(metarl(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
NOT_OBJECTS = {"metarl.tasks"}
"""Dotted names in the docs that are not Python objects: the plugins' entry-point group."""
IMPORT = re.compile(r"^from (metarl[\w.]*) import ([\w, ]+)$", re.M)


def _names_the_docs_use() -> set[str]:
    names: set[str] = set()
    for page in DOC_PAGES:
        text = page.read_text()
        names.update(m for m in DOTTED.findall(text) if m not in NOT_OBJECTS)
        for module, imported in IMPORT.findall(text):
            names.update(f"{module}.{n.strip()}" for n in imported.split(",") if n.strip())
    return names


def _api_modules() -> set[str]:
    pages = (ROOT / "docs" / "api").glob("*.md")
    return {m for page in pages for m in re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M)}


def test_every_name_the_docs_use_exists_and_is_documented():
    names = _names_the_docs_use()
    assert "metarl.config.load_recipe_file" in names  # the README's
    rendered = _api_modules()
    missing, undocumented, no_page = [], [], []
    for dotted in sorted(names):
        try:
            obj = _resolve(dotted)
        except (ModuleNotFoundError, AttributeError):
            missing.append(dotted)
            continue
        if callable(obj) and not (getattr(obj, "__doc__", None) or "").strip():
            undocumented.append(dotted)
        module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
        # a function or class is on its module's page; a module named in prose on its own
        if callable(obj) and module.startswith("metarl") and module not in rendered:
            no_page.append(f"{dotted} ({module})")
    assert missing == [], f"the docs name what does not exist: {missing}"
    assert undocumented == [], f"the docs name what has no docstring: {undocumented}"
    assert no_page == [], f"the docs name what no API page renders: {no_page}"
