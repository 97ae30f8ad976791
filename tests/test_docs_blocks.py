"""Every fenced `bash` and `python` block of the docs (README.md, docs/**/*.md) runs as a user
would run it: from an empty folder outside the checkout, with the installed `metarl` on PATH,
the blocks of one page in page order in one folder (a later block reads what an earlier one
wrote).

A block that cannot run in seconds here (an install, a server, a training of minutes, a GPU,
a download, `torchrun`) says so in the page, on the line before it:
`<!-- no-test: why -->`. A block a user saves to a file (a recipe) says where:
`<!-- file: NAME -->`, and is written there before the page's next blocks run. A new block
with neither is run, so one that fails or takes too long fails here, naming it.

A page whose runnable blocks repeat the start of a page already run (the home page copies the
README's tour) is not run twice: the same commands from the same empty folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN = ("bash", "python")
LABELS = (*RUN, "toml", "text", "")  # a fence's language: ```sh would escape this test
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
NO_TEST = re.compile(r"^\s*<!--\s*no-test:\s*(.*?)\s*-->\s*$")
SAVE_AS = re.compile(r"^\s*<!--\s*file:\s*(\S+)\s*-->\s*$")
BLOCK_SECONDS = 90  # one block; the docs' runnable blocks take 1-15 s each on a loaded core


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # the opening fence's, 1-based
    lang: str
    text: str
    no_test: str | None  # the reason it is not run
    file: str | None  # where a user saves it

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def page_blocks(page: Path) -> list[Block]:
    """The page's fenced blocks with the marker on the last non-blank line before each."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, lang = opened.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        text = "\n".join(ln[len(indent) :] for ln in lines[i + 1 : end]) + "\n"
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        no_test, save_as = NO_TEST.match(before), SAVE_AS.match(before)
        found.append(
            Block(
                page,
                i + 1,
                lang,
                text,
                no_test.group(1) if no_test else None,
                save_as.group(1) if save_as else None,
            )
        )
        i = end + 1
    return found


ALL = [b for page in PAGES for b in page_blocks(page)]


def test_every_block_is_labelled_and_every_marker_stands_before_a_block():
    labels = {f"{b}: ```{b.lang}" for b in ALL if b.lang not in LABELS}
    assert not labels, f"label these bash, python, toml or text: {sorted(labels)}"
    reasonless = [str(b) for b in ALL if b.no_test == ""]
    assert not reasonless, f"say why these are not run: {reasonless}"
    marked = sum(1 for page in PAGES for ln in page.read_text().splitlines() if NO_TEST.match(ln))
    saved = sum(1 for page in PAGES for ln in page.read_text().splitlines() if SAVE_AS.match(ln))
    assert marked == sum(1 for b in ALL if b.no_test is not None), "a no-test marker on no block"
    assert saved == sum(1 for b in ALL if b.file is not None), "a file marker on no block"
    assert not [str(b) for b in ALL if b.file and b.lang in RUN and b.no_test is None]


def _installed_env() -> dict[str, str]:
    """The user's environment, with the interpreter's `bin` first on PATH (its `metarl` and
    `python`) and one thread, as on a shared machine (docs/troubleshooting.md)."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    env.update({"METARL_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    return env


def _run(block: Block, cwd: Path, env: dict[str, str]) -> str | None:
    """Runs one block in `cwd`; None when it succeeded, else what went wrong."""
    command = (
        ["bash", "-eo", "pipefail", "-c", block.text]
        if block.lang == "bash"
        else [sys.executable, "-c", block.text]
    )
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_SECONDS
        )
    except subprocess.TimeoutExpired:
        return f"took over {BLOCK_SECONDS} s: mark it <!-- no-test: why --> if that is expected"
    if done.returncode != 0:
        return f"exit {done.returncode}:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return None


def test_every_docs_block_runs_from_an_empty_folder_with_the_installed_metarl(tmp_path, capsys):
    env = _installed_env()
    metarl = Path(sys.executable).parent / "metarl"
    assert metarl.exists(), f"no installed metarl beside {sys.executable}: pip install -e ."
    ran: dict[tuple[str, ...], Path] = {}  # a page's runnable blocks so far -> the page run
    counts = {"ran": 0, "passed": 0, "repeated": 0, "marked": 0, "files": 0}
    failures: list[str] = []
    timings: list[tuple[float, str]] = []
    for page in PAGES:
        blocks = page_blocks(page)
        runnable = [b for b in blocks if (b.lang in RUN and b.no_test is None) or b.file]
        counts["marked"] += sum(1 for b in blocks if b.lang in RUN and b.no_test is not None)
        if not any(b.lang in RUN for b in runnable):
            continue
        key = tuple(f"{b.file}\n{b.text}" for b in runnable)
        earlier = [p for k, p in ran.items() if k[: len(key)] == key]
        if earlier:
            counts["repeated"] += sum(1 for b in runnable if b.lang in RUN and not b.file)
            continue
        ran[key] = page
        cwd = tmp_path / re.sub(r"\W", "-", str(page.relative_to(ROOT)))
        cwd.mkdir()
        for block in runnable:
            if block.file:
                (cwd / block.file).write_text(block.text)
                counts["files"] += 1
                continue
            counts["ran"] += 1
            start = time.perf_counter()
            failed = _run(block, cwd, env)
            timings.append((time.perf_counter() - start, str(block)))
            if failed is None:
                counts["passed"] += 1
            else:
                failures.append(f"{block} ({block.lang}) {failed}")
    slowest = ", ".join(f"{name} {t:.1f} s" for t, name in sorted(timings, reverse=True)[:40])
    summary = (
        f"docs blocks: {counts['ran']} ran, {counts['passed']} passed, {counts['repeated']} "
        f"repeat a page already run, {counts['marked']} marked no-test, {counts['files']} "
        f"saved as files; {sum(t for t, _ in timings):.0f} s in all (slowest: {slowest})"
    )
    with capsys.disabled():  # the count, in every run's output
        print(f"\n{summary}")
    assert not failures, summary + "\n\n" + "\n\n".join(failures)
    assert counts["ran"] >= 10, summary  # the parser still finds the blocks
