"""Drive `metarl demo` in a real headless browser: draw symbols with pointer events, read the
probabilities the page shows, and save a screenshot (the README's `docs/demo.png`) and the
network's 28x28 view of the drawings next to Omniglot test images (`docs/demo-inputs.png`).

Needs Debian's `chromium` and `chromium-driver` and `pip install selenium`; the test suite's
browser test (`tests/test_demo_browser.py`) uses the same functions.

    python scripts/tools/demo_screenshot.py --out docs/demo.png --inputs docs/demo-inputs.png
"""

from __future__ import annotations

import argparse
import math
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

Stroke = list[tuple[float, float]]

# symbols in canvas pixels (210 x 210), a few strokes each, loosely like Omniglot characters
SYMBOLS: dict[str, list[Stroke]] = {
    "phi": [
        [
            (105 + 55 * math.cos(t / 12 * math.pi), 105 + 45 * math.sin(t / 12 * math.pi))
            for t in range(25)
        ],
        [(105, 30), (105, 185)],
    ],
    "zigzag": [[(45, 60), (165, 60), (50, 150), (165, 150)], [(105, 30), (105, 185)]],
    "arrow": [[(40, 150), (105, 50), (170, 150)], [(70, 110), (140, 110)]],
    "hook": [[(60, 40), (60, 160), (150, 160), (150, 90)], [(100, 40), (170, 40)]],
    "stair": [[(40, 170), (40, 120), (90, 120), (90, 70), (140, 70), (140, 30)]],
}


def jittered(strokes: list[Stroke], dx: float, dy: float, scale: float) -> list[Stroke]:
    """The same symbol drawn again, a little shifted and smaller, as a second attempt is."""
    return [
        [(105 + scale * (x - 105) + dx, 105 + scale * (y - 105) + dy) for x, y in s]
        for s in strokes
    ]


@contextmanager
def demo_server(**options: Any) -> Iterator[Any]:
    """`metarl demo`'s server on 127.0.0.1 and a free port, serving in a thread."""
    from metarl.demo import make_server

    server = make_server("127.0.0.1", 0, **options)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def browser_available() -> str | None:
    """None if the headless browser can run here, else what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return f"{program} is not installed (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1320, height: int = 660) -> Iterator[Any]:
    """Debian's chromium, headless, driven by its own chromedriver (nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    service = Service(executable_path=shutil.which("chromedriver") or "chromedriver")
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def draw(driver: Any, canvas: Any, strokes: list[Stroke], pieces: int = 6) -> None:
    """Draw `strokes` (canvas pixels) on `canvas` with real pointer events: press, move in
    small steps along each segment, release."""
    from selenium.webdriver.common.action_chains import ActionChains

    from metarl.demo.drawings import CANVAS

    scale = canvas.size["width"] / CANVAS  # CSS pixels per canvas pixel
    half = canvas.size["width"] / 2.0
    for stroke in strokes:
        chain = ActionChains(driver, duration=10)
        x0, y0 = stroke[0]
        chain.move_to_element_with_offset(canvas, int(x0 * scale - half), int(y0 * scale - half))
        chain.click_and_hold()
        at = (round(x0 * scale), round(y0 * scale))
        for (xa, ya), (xb, yb) in zip(stroke, stroke[1:], strict=False):
            for k in range(1, pieces + 1):
                x = round((xa + (xb - xa) * k / pieces) * scale)
                y = round((ya + (yb - ya) * k / pieces) * scale)
                chain.move_by_offset(x - at[0], y - at[1])
                at = (x, y)
        chain.release()
        chain.perform()


def wait_for_probabilities(driver: Any, after: int, timeout: float = 120) -> list[float]:
    """The probabilities the page shows once it has had more than `after` answers and has no
    request in flight or queued, read in one go."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = driver.execute_script(
            "const s = document.getElementById('status');"
            "if (document.body.dataset.busy !== '0' || Number(s.dataset.answers || 0) <= "
            "arguments[0]) return null;"
            "return Array.from(document.querySelectorAll('.pct'))"
            ".filter(e => e.dataset.p !== undefined).map(e => Number(e.dataset.p));",
            after,
        )
        if shown:
            return [float(v) for v in shown]
        time.sleep(0.2)
    status = driver.find_element("id", "status").text
    raise TimeoutError(f"no probabilities shown after {timeout} s: {status}")


def session(driver: Any, url: str, names: list[str], query: list[Stroke]) -> list[float]:
    """Open the page, choose N = len(names), draw the symbols and the query, and return the
    probabilities shown after the query's last stroke."""
    driver.get(url)
    deadline = time.monotonic() + 30
    while not driver.find_elements("id", f"ways-{len(names)}"):
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not load its model info")
        time.sleep(0.1)
    driver.find_element("id", f"ways-{len(names)}").click()
    canvases = driver.find_elements("css selector", "#classes canvas")
    for canvas, name in zip(canvases, names, strict=False):
        draw(driver, canvas, SYMBOLS[name])
    query_canvas = driver.find_element("id", "query")
    draw(driver, query_canvas, query[:-1])
    before = driver.find_element("id", "status").get_attribute("data-answers")
    draw(driver, query_canvas, query[-1:])
    return wait_for_probabilities(driver, int(before or 0))


def canvas_inputs(driver: Any, count: int) -> list[Any]:
    """What the network sees of the first `count` class canvases: 28x28 arrays through the
    server's own decoding."""
    from metarl.demo.drawings import decode

    urls = driver.execute_script(
        "return Array.from(document.querySelectorAll('#classes canvas'))"
        ".slice(0, arguments[0]).map(c => c.toDataURL('image/png'))"
        ".concat([document.getElementById('query').toDataURL('image/png')]);",
        count,
    )
    return [decode(u, f"canvas {i}") for i, u in enumerate(urls)]


def plot_inputs(drawn: list[Any], path: Path) -> None:
    """Omniglot test images (top) and the browser's drawings (bottom), both as the network's
    28x28 input, to compare stroke width and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from metarl.data.omniglot import load
    from metarl.protocol import Split
    from metarl.registry import make_distribution

    dist: Any = make_distribution("omniglot")
    test = dist.classes[Split.TEST][:, 0]
    images = np.asarray(load(progress=False).images)
    omniglot = [images[int(c), 0] for c in test[: len(drawn)]]
    fig, axes = plt.subplots(2, len(drawn), figsize=(1.6 * len(drawn), 4.0))
    for j, (a, b) in enumerate(zip(omniglot, drawn, strict=True)):
        for row, img in ((0, a), (1, b)):
            axes[row, j].imshow(img, cmap="gray", vmin=0, vmax=255)
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
        axes[0, j].set_title(f"ink {np.mean(a) / 255:.2f}", fontsize=8)
        axes[1, j].set_title(f"ink {np.mean(b) / 255:.2f}", fontsize=8)
    axes[0, 0].set_ylabel("Omniglot test", fontsize=9)
    axes[1, 0].set_ylabel("drawn in chromium", fontsize=9)
    fig.suptitle("28x28 network inputs (strokes bright); 'ink' = mean brightness", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    p.add_argument("--inputs", type=Path, default=None, help="Also save the 28x28 comparison.")
    args = p.parse_args()
    missing = browser_available()
    if missing:
        raise SystemExit(f"no headless browser: {missing}")
    torch.set_num_threads(1)  # as `metarl demo` does
    names = ["phi", "zigzag", "arrow", "hook", "stair"]
    query = jittered(SYMBOLS["phi"], dx=8, dy=-6, scale=0.85)
    with demo_server() as server, chromium() as driver:
        probabilities = session(driver, server.url, names, query)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        time.sleep(0.5)  # the bars' width transition (0.15 s) has ended
        driver.save_screenshot(str(args.out))
        if args.inputs is not None:
            plot_inputs(canvas_inputs(driver, len(names)), args.inputs)
    shown = zip(names, probabilities, strict=True)
    print("probabilities:", ", ".join(f"{n} {100 * v:.1f}%" for n, v in shown))
    print(f"wrote {args.out}" + (f" and {args.inputs}" if args.inputs else ""))


if __name__ == "__main__":
    main()
