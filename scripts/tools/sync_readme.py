"""Copy the README's shared blocks into the docs pages that repeat them, or check them.

The README (read on GitHub) and `docs/index.md` (the site's home) show the same intro, tour,
"what runs on what" table, headline results and list of pages; the results summary
(`docs/results.md`) shows the headline results too. The README is the one source: each shared
part sits between `<!-- shared: NAME -->` and `<!-- /shared: NAME -->` in the README and in
each copy, and this script rewrites the copies from the README's, with the README's `docs/`
link prefix dropped (both pages sit in docs/). `tests/test_docs.py` runs the check, so an edit
to one copy alone fails the tests. The table of supported combinations inside "what runs on
what" (between `<!-- combinations -->` markers) is itself generated, from the table the
library checks (`metarl.combinations.markdown_table`): it is rewritten in the README first.

    python scripts/tools/sync_readme.py           # rewrite the copies
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
COPIES = (HOME, ROOT / "docs" / "results.md")
"""The pages holding copies: the home page all of the README's blocks, the others some."""
COMBINATIONS = re.compile(r"(<!-- combinations -->\n).*?(<!-- /combinations -->)", re.S)
"""Where the README holds the generated table of supported combinations."""
BLOCK = re.compile(
    r"<!-- shared: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /shared: (?P=name) -->", re.S
)


def with_combinations(readme: str) -> str:
    """The README with its table of combinations generated from `metarl.combinations`."""
    sys.path.insert(0, str(ROOT))
    from metarl.combinations import markdown_table

    return COMBINATIONS.sub(lambda m: m[1] + markdown_table() + m[2], readme)


def blocks(text: str) -> dict[str, str]:
    """The shared blocks of a page, by name."""
    return {m["name"]: m["body"] for m in BLOCK.finditer(text)}


def for_home(body: str) -> str:
    """A README block as the home page shows it: links relative to docs/."""
    return body.replace("](docs/", "](")


def synced(readme: str, home: str) -> str:
    """`home` (a page holding copies) with every shared block replaced by the README's."""
    source = blocks(readme)
    missing = sorted(set(blocks(home)) - set(source))
    if missing:
        raise SystemExit(f"shared blocks the README lacks: {', '.join(missing)}")

    def replace(m: re.Match[str]) -> str:
        body = for_home(source[m["name"]])
        return f"<!-- shared: {m['name']} -->\n{body}<!-- /shared: {m['name']} -->"

    return BLOCK.sub(replace, home)


def drift(readme: str, page: str) -> list[str]:
    """Names of the blocks whose copy in `page` differs from the README's."""
    source, copy = blocks(readme), blocks(page)
    return [n for n in sorted(copy) if for_home(source.get(n, "")) != copy[n]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on drift")
    args = parser.parse_args(argv)
    readme = README.read_text()
    failed = False
    generated = with_combinations(readme)
    if generated != readme:
        if args.check:
            print("README.md's table of combinations differs from metarl.combinations")
            failed = True
        else:
            README.write_text(generated)
            readme = generated
    for page in COPIES:
        text = page.read_text()
        if not args.check:
            page.write_text(synced(readme, text))
            continue
        left_out = sorted(set(blocks(readme)) - set(blocks(text))) if page == HOME else []
        drifted = drift(readme, text) + left_out
        if drifted:
            print(f"{page.relative_to(ROOT)} differs from README.md in: {', '.join(drifted)}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
