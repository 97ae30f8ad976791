"""The one table of what combines (`metarl.combinations.SUPPORTED`): every row is reached by
a choice and builds its learner's class, what no row takes is refused in one line naming the
value, what is taken beside the other choices, and what the value runs with; and the docs'
table is the one generated from it."""

from __future__ import annotations

import pkgutil
import re
from pathlib import Path

import pytest

from metarl.combinations import (
    DEFAULT_BACKEND,
    DEFAULT_INNER,
    SUPPORTED,
    Choice,
    Combination,
    markdown_table,
    supported,
)
from metarl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def first_choice(row: Combination, **change: object) -> Choice:
    """The choice of the row's first values (its least inner steps), with `change` applied."""
    values = {
        "kind": row.kind,
        "algorithm": row.algorithms[0],
        "outer": row.outer[0],
        "backend": row.backend,
        "inner": row.inner[0] if row.inner else None,
        "inner_steps": row.inner_steps[0],
        "every_step": row.every_step,
    }
    return Choice(**{**values, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "row", SUPPORTED, ids=lambda r: f"{r.kind}-{r.algorithms[0].value}-{r.outer[0].value}"
)
def test_every_row_is_the_one_its_choice_finds_and_names_a_learner(row):
    assert supported(first_choice(row)) == row
    assert callable(pkgutil.resolve_name(row.learner).from_recipe)


def test_the_defaults_are_the_batched_engine_and_ppo():
    choice = first_choice(SUPPORTED[1], backend=None, inner=None)
    row = supported(choice)
    assert row.backend == DEFAULT_BACKEND == "batched" and DEFAULT_INNER in row.inner


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"outer": "trpo"},
            'train.outer_optimizer = "trpo": use outer_optimizer = "sgd" or "adam" with RL '
            'tasks, train.algorithm = "reptile"; outer_optimizer = "trpo" runs with '
            'algorithm = "maml", or with algorithm = "metasgd"',
        ),
        (
            {"algorithm": "maml", "outer": "promp", "inner": "vpg", "inner_steps": 2},
            "train.inner_steps = 2: use inner_steps = 0 or 1 with RL tasks, train.algorithm = "
            '"maml", train.outer_optimizer = "promp", learner.backend = "batched", '
            'learner.inner = "vpg" (ProMP\'s outer objective is written for one '
            'policy-gradient step); inner_steps = 2 runs with outer_optimizer = "sgd" or '
            '"adam" or "trpo"',
        ),
        (
            {"algorithm": "maml", "backend": "sb3"},
            'learner.backend = "sb3": use backend = "batched" with RL tasks, train.algorithm '
            '= "maml", train.outer_optimizer = "sgd" (second-order MAML-RL differentiates '
            'through its policy-gradient step); backend = "sb3" runs with algorithm = '
            '"reptile" or "fomaml"',
        ),
    ],
    ids=["trpo-first-order", "promp-two-steps", "maml-sb3"],
)
def test_a_combination_no_row_takes_is_refused_in_one_line(change, message):
    from metarl.combinations import Inner
    from metarl.config import Algorithm, OuterOptimizerName

    typed = {
        "algorithm": Algorithm,
        "outer": OuterOptimizerName,
        "inner": Inner,
    }
    change = {k: typed[k](v) if k in typed else v for k, v in change.items()}
    with pytest.raises(ConfigError) as err:
        supported(first_choice(SUPPORTED[1], **change))
    assert str(err.value) == message


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_the_docs_table_of_combinations_is_the_generated_one(page):
    text = (ROOT / page).read_text()
    found = re.search(r"<!-- combinations -->\n(.*?)<!-- /combinations -->", text, re.S)
    assert found is not None, page
    assert found[1] == markdown_table()
    assert len(found[1].splitlines()) == 2 + len(SUPPORTED)
