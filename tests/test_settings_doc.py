"""The settings reference (docs/settings.md) is generated from the recipe's dataclasses."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _tool() -> ModuleType:
    path = ROOT / "scripts" / "tools" / "settings_reference.py"
    spec = importlib.util.spec_from_file_location("settings_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("settings_reference", module)
    spec.loader.exec_module(module)
    return module


def test_the_committed_settings_page_is_the_generated_one():
    tool = _tool()
    assert (ROOT / "docs" / "settings.md").read_text() == tool.render(), (
        "docs/settings.md drifted: run python scripts/tools/settings_reference.py"
    )
    assert tool.main(["--check"]) == 0


def test_every_setting_has_a_meaning_and_every_key_a_row():
    tool = _tool()
    assert tool.missing_meanings() == []
    page = (ROOT / "docs" / "settings.md").read_text()
    from metarl.config import EvalConfig, SupervisedEval, SupervisedSettings, TrainConfig
    from metarl.rl.rl2_settings import RL2Settings
    from metarl.rl.settings import BatchedSettings

    for section, classes in {
        "train": (TrainConfig, SupervisedSettings),
        "eval": (EvalConfig, SupervisedEval),
        "learner": (BatchedSettings, RL2Settings),
    }.items():
        for cls in classes:
            for f in dataclasses.fields(cls):
                assert f"| `{section}.{f.name}` |" in page, f"{section}.{f.name} has no row"


def test_the_allowed_values_are_what_the_validators_accept():
    """Spot checks of the probed bounds against the refusals the code makes."""
    page = (ROOT / "docs" / "settings.md").read_text()
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in page.splitlines()}
    assert rows["train.meta_iterations"][3] == "≥ 1, ≤ 100,000,000"
    assert rows["train.inner_steps"][3] == "≥ 0, ≤ 100,000"
    assert rows["train.inner_beta1"][3] == "≥ 0, < 1"
    assert rows["learner.trpo_fisher_fraction"][3] == "> 0, ≤ 1"
    assert rows["eval.steps"][3] == "non-empty, each ≥ 0, ≤ 100,000"
    assert rows["eval.split"][3] == "`train`, `val`, `test`"
    assert rows["train.seed"][2] == "`0`"


def test_a_setting_changed_in_code_shows_as_drift(monkeypatch):
    tool = _tool()
    from metarl.config import TrainConfig

    field = TrainConfig.__dataclass_fields__["meta_batch"]
    monkeypatch.setattr(field, "default", 6)
    assert tool.main(["--check"]) == 1
