"""The wheel carries what a user needs: every module of `metarl/`, the catalogs (`tasks/`,
`envs/`), the shipped weights and the demo's page. (`.ci/check-install` installs that wheel
outside the checkout and runs the command; this test names what is missing.)"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    pytest.importorskip("hatchling", reason="the test extra installs hatchling")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + [str(ROOT), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("metarl_torch-*.whl")
    return zipfile.ZipFile(path)


@pytest.fixture(scope="module")
def wheel_members(wheel: zipfile.ZipFile) -> set[str]:
    return set(wheel.namelist())


def expected(folder: str, pattern: str, inside: str) -> set[str]:
    return {
        f"{inside}/{p.relative_to(ROOT / folder).as_posix()}"
        for p in (ROOT / folder).rglob(pattern)
    }


def test_every_module_is_in_the_wheel(wheel_members: set[str]) -> None:
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "metarl").rglob("*.py")}
    assert modules, "no modules found in the checkout"
    assert not modules - wheel_members, sorted(modules - wheel_members)


def test_catalogs_weights_and_demo_page_are_in_the_wheel(wheel_members: set[str]) -> None:
    wanted = expected("tasks", "*.toml", "metarl/catalog/tasks")
    wanted |= expected("envs", "*.toml", "metarl/catalog/envs")
    wanted |= expected("metarl/weights", "*", "metarl/weights")
    wanted |= {"metarl/demo/static/index.html", "metarl/py.typed"}
    assert len(wanted) > 30
    assert not wanted - wheel_members, sorted(wanted - wheel_members)


def test_the_wheel_declares_the_command(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [m for m in wheel.namelist() if m.endswith("entry_points.txt")]
    assert "metarl = metarl.cli:main" in wheel.read(entry_points).decode()


def test_the_editable_wheel_links_the_checkout_and_copies_nothing_into_the_package(
    tmp_path: Path,
) -> None:
    """The README's `pip install -e .`: the editable wheel holds a path file and metadata, no
    `metarl/...` member. (Hatchling's force-include copied the catalogs into a `metarl`
    folder in site-packages, which Python then imported as an empty namespace package
    whenever the checkout was not on the path: "No module named 'metarl.cli'".)"""
    pytest.importorskip("editables", reason="the test extra installs editables")
    build = "import sys, hatchling.build as b; print(b.build_editable(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", build, str(tmp_path)], cwd=ROOT, check=True)
    (path,) = tmp_path.glob("metarl_torch-*.whl")
    members = zipfile.ZipFile(path).namelist()
    assert [m for m in members if m.endswith(".pth")], members
    assert not [m for m in members if m.startswith("metarl/")], members
