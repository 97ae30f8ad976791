"""How long `metarl demo` takes to answer: adaptation + prediction time (what the page shows)
and the whole HTTP round trip (PNG decoding included), for N = 2..5 classes and a few step
counts, median of `--repeats` requests, one torch thread as `metarl demo` runs.

    python scripts/benchmarks/bench_demo.py                 # the shipped model, steps 10, 50, 100
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import statistics
import threading
import time

import numpy as np
import torch
from PIL import Image, ImageDraw

from metarl.demo import make_server
from metarl.demo.drawings import CANVAS, PEN


def scribble(rng: np.random.Generator) -> str:
    """A random three-stroke drawing as the page's canvas sends it."""
    image = Image.new("RGBA", (CANVAS, CANVAS), "white")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        points = [tuple(p) for p in rng.uniform(30, CANVAS - 30, (4, 2))]
        draw.line(points, fill="black", width=PEN, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", default="10,50,100")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    server = make_server("127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    rng = np.random.default_rng(0)
    drawings = [scribble(rng) for _ in range(6)]
    print("| N | steps | adaptation + prediction ms (median) | HTTP round trip ms (median) |")
    print("|---|---|---|---|")
    for steps in (int(s) for s in args.steps.split(",")):
        for n in range(2, 6):
            body = json.dumps({"support": drawings[:n], "query": drawings[5], "steps": steps})
            inner, outer = [], []
            for _ in range(args.repeats + 1):  # the first is a warm-up
                conn = http.client.HTTPConnection(str(host), port, timeout=120)
                start = time.perf_counter()
                conn.request("POST", "/api/classify", body, {"Content-Type": "application/json"})
                answer = json.loads(conn.getresponse().read())
                outer.append(time.perf_counter() - start)
                inner.append(answer["seconds"])
                conn.close()
            a, b = statistics.median(inner[1:]) * 1e3, statistics.median(outer[1:]) * 1e3
            print(f"| {n} | {steps} | {a:.0f} | {b:.0f} |")
    server.shutdown()


if __name__ == "__main__":
    main()
