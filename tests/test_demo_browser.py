"""`metarl demo` in a real headless browser (Debian's chromium through selenium): the page
loads, pointer-event strokes draw on its canvases, and it shows the probabilities the server
computed. Skipped where chromium, chromedriver or selenium is missing (`.ci/run` installs
them where it can)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "tools" / "demo_screenshot.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_screenshot", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = load_script()


@pytest.fixture(scope="module")
def driver():
    missing = demo.browser_available()
    if missing:
        pytest.skip(f"no headless browser: {missing}")
    with demo.chromium() as d:
        yield d


def test_drawing_in_the_browser_shows_probabilities(driver):
    names = ["phi", "zigzag", "arrow"]
    query = demo.jittered(demo.SYMBOLS["zigzag"], dx=-6, dy=5, scale=0.9)
    with demo.demo_server() as server:
        steps = server.classifier.default_steps  # the shipped model's recipe's
        probabilities = demo.session(driver, server.url, names, query)
        status = driver.find_element("id", "status").text
        drawn = demo.canvas_inputs(driver, len(names))
    assert len(probabilities) == 3 and abs(sum(probabilities) - 1.0) < 1e-4
    assert f"3-way, {steps} adaptation steps in" in status
    # what the server saw is what was drawn: ink on every canvas, the query like class 2
    assert all(d.shape == (28, 28) and 0.03 < d.mean() / 255 < 0.2 for d in drawn)
    best = driver.find_element("css selector", ".card.best h2 span").text
    assert best == f"class {probabilities.index(max(probabilities)) + 1}"


def test_clear_all_empties_the_bars(driver):
    with demo.demo_server() as server:
        demo.session(driver, server.url, ["phi", "arrow"], demo.SYMBOLS["arrow"])
        driver.find_element("id", "clear-all").click()
        shown = [driver.find_element("id", f"prob-{i}").text for i in range(2)]
        status = driver.find_element("id", "status").text
    assert shown == ["", ""] and status.startswith("Draw a symbol in every class box")


def _idle(driver, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while driver.execute_script("return document.body.dataset.busy") != "0":
        assert time.monotonic() < deadline, "the page stayed busy"
        time.sleep(0.1)


@pytest.mark.parametrize("button", ["clear-all", "clear-query"])
def test_a_late_answer_after_clear_is_not_painted(driver, button):
    """Clear while a request is in flight: the answer that arrives after it is for drawings
    that are gone, so the bars stay empty."""
    with demo.demo_server() as server:
        demo.session(driver, server.url, ["phi", "arrow"], demo.SYMBOLS["arrow"])
        driver.execute_script(  # a slow request in flight, then Clear at once
            "const s = document.getElementById('steps'); s.value = 200;"
            "s.dispatchEvent(new Event('change'));"
            "document.getElementById(arguments[0]).click();",
            button,
        )
        _idle(driver)
        shown = [driver.find_element("id", f"prob-{i}").text for i in range(2)]
        best = driver.find_elements("css selector", ".card.best")
        status = driver.find_element("id", "status").text
    assert shown == ["", ""] and not best
    assert status.startswith("Draw a symbol in every class box")


@pytest.mark.parametrize("steps", ["999", "-1"])
def test_out_of_range_steps_show_the_error_and_no_old_bars(driver, steps):
    with demo.demo_server() as server:
        demo.session(driver, server.url, ["phi", "arrow"], demo.SYMBOLS["arrow"])
        driver.execute_script(
            "const s = document.getElementById('steps'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('change'));",
            steps,
        )
        _idle(driver)
        shown = [driver.find_element("id", f"prob-{i}").text for i in range(2)]
        status = driver.find_element("id", "status").text
    assert shown == ["", ""]
    assert status.startswith("error: steps: expected an integer 0 to 200"), status
