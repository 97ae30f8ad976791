"""The README's Python example runs as written (so the docs cannot rot), and its links land.

The example trains the full default sine recipe and evaluates it on 1000 held-out tasks, so it
is also the check of the recipe's quality targets: MSE <= 0.10 after 10 steps, <= 0.66 after 1.
The same block is on the docs site's home page and its "From Python" page; a test here keeps
the three copies equal, so running one runs them all."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from metarl.learners import build_meta_learner

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def trainer_block(page: Path) -> str:
    (block,) = [b for b in python_blocks(page) if "MetaTrainer.start" in b]
    return block


def test_the_sine_example_meets_the_quality_targets(tmp_path, monkeypatch, capsys):
    block = trainer_block(README)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out
    curve = eval(printed.strip())  # {0: ..., 1: ..., 10: ...}
    assert set(curve) == {0, 1, 10}
    assert curve[10] <= 0.10
    assert curve[1] <= 0.66
    assert curve[0] > 2.0  # zero-shot prediction is impossible: the gain is adaptation
    assert (tmp_path / "runs" / "sine-py" / "checkpoint.pt").is_file()


def test_the_docs_show_the_tested_example():
    assert trainer_block(DOCS / "python.md") == trainer_block(README)
    assert trainer_block(DOCS / "index.md") == trainer_block(README)


def test_one_meta_iteration_by_hand_moves_phi(tmp_path, monkeypatch):
    """docs/python.md's learner-contract example: one Reptile step on sine, by hand."""
    (block,) = [b for b in python_blocks(DOCS / "python.md") if "build_meta_learner" in b]
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(block, str(DOCS / "python.md"), "exec"), scope)
    stepped = dict(scope["meta"].model.named_parameters())  # type: ignore[attr-defined]
    fresh = build_meta_learner(scope["recipe"], torch.device("cpu")).model  # the seed's init
    assert any(not torch.equal(p, stepped[n]) for n, p in fresh.named_parameters())
    assert all(torch.isfinite(p).all() for p in stepped.values())


def slug(heading: str) -> str:
    """A heading's anchor, as GitHub and MkDocs' toc both write it for these pages."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_the_readme_links_land_on_pages_and_headings():
    """The README's relative links (read on GitHub, not built by MkDocs) name files that exist
    and headings those pages have."""
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert len(local) > 20
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path if path else README
        assert target.is_file(), link
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), link
