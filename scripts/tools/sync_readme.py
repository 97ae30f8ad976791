"""Copy the README's shared blocks into the docs' home page, or check that they are copies.

The README (read on GitHub) and `docs/index.md` (the site's home) show the same tour, "what
runs on what" table and headline results. The README is the one source: each shared part sits
between `<!-- shared: NAME -->` and `<!-- /shared: NAME -->` in both files, and this script
rewrites the home page's copy from the README's, with the README's `docs/` link prefix dropped
(the home page sits in docs/). `tests/test_docs.py` runs the check, so an edit to one copy
alone fails the tests.

    python scripts/tools/sync_readme.py           # rewrite docs/index.md's shared blocks
    python scripts/tools/sync_readme.py --check   # exit 1, naming the blocks that drifted
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
HOME = ROOT / "docs" / "index.md"
BLOCK = re.compile(
    r"<!-- shared: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /shared: (?P=name) -->", re.S
)


def blocks(text: str) -> dict[str, str]:
    """The shared blocks of a page, by name."""
    return {m["name"]: m["body"] for m in BLOCK.finditer(text)}


def for_home(body: str) -> str:
    """A README block as the home page shows it: links relative to docs/."""
    return body.replace("](docs/", "](")


def synced(readme: str, home: str) -> str:
    """`home` with every shared block replaced by the README's."""
    source = blocks(readme)
    missing = sorted(set(source) ^ set(blocks(home)))
    if missing:
        raise SystemExit(f"shared blocks in one file only: {', '.join(missing)}")

    def replace(m: re.Match[str]) -> str:
        body = for_home(source[m["name"]])
        return f"<!-- shared: {m['name']} -->\n{body}<!-- /shared: {m['name']} -->"

    return BLOCK.sub(replace, home)


def drift(readme: str, home: str) -> list[str]:
    """Names of the blocks whose home-page copy differs from the README's."""
    source, copy = blocks(readme), blocks(home)
    names = sorted(set(source) | set(copy))
    return [n for n in names if for_home(source.get(n, "")) != copy.get(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on drift")
    args = parser.parse_args(argv)
    readme, home = README.read_text(), HOME.read_text()
    if args.check:
        drifted = drift(readme, home)
        if drifted:
            print(f"docs/index.md differs from README.md in: {', '.join(drifted)}")
            return 1
        return 0
    HOME.write_text(synced(readme, home))
    return 0


if __name__ == "__main__":
    sys.exit(main())
